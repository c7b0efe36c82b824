//! A reversible masker: the same settings, reasons, `app_version` encoding and dates as
//! sha256-masker, whose source files it compiles as its own, but each masked field goes
//! through the host's `seal` import instead of `pseudonymize`. The host encrypts the value
//! deterministically (AES-SIV) under the operator's active key, so equal values still give
//! equal tokens, and `masq reveal --key-file FILE` turns a token back for someone allowed to
//! see it. The policy holds no key and keeps no state between calls.

// The logic is sha256-masker's, not a copy of it: one fix reaches both policies.
#[path = "../../sha256-masker/src/packed.rs"]
pub mod packed;
#[path = "../../sha256-masker/src/settings.rs"]
mod settings;
#[path = "../../sha256-masker/src/transform.rs"]
mod transform;
#[path = "../../sha256-masker/src/version.rs"]
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
pub use transform::transform_batch;

/// The name `describe` reports and setting errors use.
pub const POLICY_NAME: &str = "seal-masker";

/// The `mask` setting's description: sha256-masker's names its pseudonym import.
const MASK_DESCRIPTION: &str = "Comma-separated source:target pairs. Each source field is \
    replaced by a token from the host's seal import (reversible with `masq reveal` and the key \
    file), written to target; the source field is not written.";

thread_local! {
    // The instance is fresh for every batch, so this lives for one `configure` + `transform`.
    static SETTINGS: RefCell<Settings> = RefCell::new(Settings::default());
}

// Natively (unit tests) only the logic is used; the exports exist only in the wasm build.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct SealMasker;

impl Guest for SealMasker {
    fn describe() -> PolicyInfo {
        let defaults = Settings::default();
        PolicyInfo {
            name: POLICY_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Replaces each masked field (default ip -> masked_ip, device_id -> \
                masked_device_id) with the host's sealed token (AES-SIV under the operator's \
                key; `masq reveal` turns it back), encodes app_version as \
                major*1000000 + minor*1000 + patch, sets create_date to the UTC date the \
                message was sent; other fields pass through. Needs --key-file."
                .into(),
            writes: defaults.writes(),
            settings: settings::DESCRIPTIONS
                .iter()
                .map(|(name, description, default)| Setting {
                    name: (*name).into(),
                    description: if *name == "mask" {
                        MASK_DESCRIPTION
                    } else {
                        description
                    }
                    .into(),
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
                masq::policy::seal::seal_packed(&values)
            })
        })
    }
}

#[cfg(target_arch = "wasm32")]
export!(SealMasker);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_itself_with_sha256_maskers_settings() {
        let info = SealMasker::describe();
        assert_eq!(info.name, "seal-masker");
        let names: Vec<&str> = info.settings.iter().map(|s| s.name.as_str()).collect();
        let shared: Vec<&str> = settings::DESCRIPTIONS.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(names, shared);
        assert!(
            info.settings[0].description.contains("seal import"),
            "{}",
            info.settings[0].description
        );
        assert_eq!(info.writes, Settings::default().writes());
    }

    #[test]
    fn setting_errors_name_this_policy() {
        let err = Settings::parse(&vec![("colour".to_string(), "red".to_string())]).unwrap_err();
        assert_eq!(
            err,
            "unknown setting 'colour': seal-masker takes mask, required, nullable, version-field, date-field"
        );
    }
}
