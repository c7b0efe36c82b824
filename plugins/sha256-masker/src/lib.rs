//! masq's default policy: masks `ip` and `device_id` of login events through the host's keyed
//! SHA-256, encodes `app_version` as an integer and dates each row by the message's own send
//! time. It holds no key and keeps no state between calls.

mod settings;
mod transform;
pub mod version;

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
    additional_derives: [PartialEq],
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{Config, Outcome, PolicyInfo, Record, Setting};
use std::cell::RefCell;

pub use settings::Settings;
pub use transform::transform_record;

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

    fn configure(config: Config) -> Result<Vec<String>, String> {
        let parsed = Settings::parse(&config)?;
        let writes = parsed.writes();
        SETTINGS.with(|s| *s.borrow_mut() = parsed);
        Ok(writes)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        SETTINGS.with(|s| {
            let settings = s.borrow();
            batch
                .into_iter()
                .map(|record| {
                    transform_record(&settings, record, &mut |v| {
                        masq::policy::pseudonym::pseudonymize(v)
                    })
                })
                .collect()
        })
    }
}

#[cfg(target_arch = "wasm32")]
export!(Sha256Masker);
