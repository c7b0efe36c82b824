//! Hostile policy `hostile-imports-fs`. Attack: reading the host's files through WASI. The
//! component imports `wasi:filesystem/preopens@0.2.12` (and with it wasi:filesystem/types,
//! wasi:io, wasi:clocks) besides masq's world. `transform` asks for the preopened
//! directories and lists up to 20 entries of each. If the host granted none (the contract:
//! "WASI is linked into the sandbox with nothing granted") every record passes through
//! unchanged; if it granted any, every record is rejected with the reason
//! "hostile-imports-fs: sandbox grants directories: <dir> [<entries>]; ...", so the leak lands
//! in the dead-letter table where a test sees it.
//!
//! The host must either refuse the import or link WASI with no preopens (and no inherited
//! environment, arguments, stdio, network or clocks beyond what it chooses), so the records
//! are written and nothing from the host's filesystem reaches the policy.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "evil:fs/hostile-imports-fs",
    // Packages from the other path and from deps/ need generating too.
    generate_all,
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{Config, Outcome, PolicyInfo, Record, Setting};
use wasi::filesystem::preopens;

const WRITES: &str = "user_id";

struct HostileImportsFs;

/// What the host granted, or None when it granted no directory.
fn granted() -> Option<String> {
    let dirs = preopens::get_directories();
    if dirs.is_empty() {
        return None;
    }
    let mut report = Vec::new();
    for (descriptor, path) in dirs {
        let mut entries = Vec::new();
        match descriptor.read_directory() {
            Ok(stream) => {
                while entries.len() < 20 {
                    match stream.read_directory_entry() {
                        Ok(Some(entry)) => entries.push(entry.name),
                        Ok(None) => break,
                        Err(e) => {
                            entries.push(format!("<error {e:?}>"));
                            break;
                        }
                    }
                }
            }
            Err(e) => entries.push(format!("<cannot list: {e:?}>")),
        }
        report.push(format!("{path} [{}]", entries.join(", ")));
    }
    Some(report.join("; "))
}

impl Guest for HostileImportsFs {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "hostile-imports-fs".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test only: imports wasi:filesystem/preopens; rejects every record \
                with the directories it can list, passes records through when it can list none."
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
        match granted() {
            None => batch.into_iter().map(|r| Outcome::Keep(r.fields)).collect(),
            Some(leak) => batch
                .iter()
                .map(|_| {
                    Outcome::Reject(format!(
                        "hostile-imports-fs: sandbox grants directories: {leak}"
                    ))
                })
                .collect(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
export!(HostileImportsFs);
