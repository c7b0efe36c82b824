//! masq's default policy: masks `ip` and `device_id` of login events through the host's keyed
//! SHA-256, encodes `app_version` as an integer and dates each row by the message's own send
//! time. It holds no key and keeps no state between calls. Contract 0.2: a batch arrives as
//! columns, and each masked column goes to the host in one call.

pub mod packed;
mod settings;
mod transform;
pub mod version;

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    world: "policy-plugin",
    additional_derives: [PartialEq],
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{Batch, Config, Configured, PolicyInfo, Setting, Transformed};
use std::cell::RefCell;

pub use settings::Settings;
pub use transform::{from_cells, transform_batch};

/// The name `describe` reports and setting errors use.
pub const POLICY_NAME: &str = "sha256-masker";

thread_local! {
    // The instance is fresh for every batch, so this lives for one `configure` + `transform`.
    static SETTINGS: RefCell<Settings> = RefCell::new(Settings::default());
}

// Natively (unit tests, the native benchmark baseline) only the logic is used; the exports
// exist only in the wasm build, where their names are legal symbols.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Sha256Masker;

impl Guest for Sha256Masker {
    fn describe() -> PolicyInfo {
        let defaults = Settings::default();
        PolicyInfo {
            name: POLICY_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Replaces each masked field (default ip -> masked_ip, device_id -> \
                masked_device_id) with the host's keyed SHA-256 token, encodes app_version as \
                major*1000000 + minor*1000 + patch, sets create_date to the UTC date the \
                message was sent; other fields pass through."
                .into(),
            writes: defaults.writes(),
            settings: settings::DESCRIPTIONS
                .iter()
                .map(|(name, description, default)| Setting {
                    name: (*name).into(),
                    description: (*description).into(),
                    default_value: (*default).into(),
                })
                .collect(),
        }
    }

    fn configure(config: Config) -> Result<Configured, String> {
        let parsed = Settings::parse(&config)?;
        let configured = Configured {
            writes: parsed.writes(),
            pii: parsed.pii(),
        };
        SETTINGS.with(|s| *s.borrow_mut() = parsed);
        Ok(configured)
    }

    fn transform(batch: Batch) -> Transformed {
        SETTINGS.with(|s| {
            transform_batch(&s.borrow(), batch, &mut |values| {
                masq::policy::pseudonym::pseudonymize_packed(&values)
            })
        })
    }
}

#[cfg(target_arch = "wasm32")]
export!(Sha256Masker);
