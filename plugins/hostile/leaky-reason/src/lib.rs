//! Hostile policy `hostile-leaky-reason`. Attack: a policy that tries to smuggle PII out
//! through the one text masq stores in clear and logs, the reject reason. Every record is
//! rejected with a reason that quotes its `ip` and `device_id` (and the ip again inside other
//! text, and once as the whole reason when it has no device_id).
//!
//! The host must cut every value of the record (4 characters or more) out of the reason before
//! it stores or logs it, naming the field instead: the stored reason reads
//! `leaked ip=<field ip> device=<field device_id> ...`.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record, Value};

const WRITES: &str = "user_id";

struct HostileLeakyReason;

fn text(record: &Record, name: &str) -> String {
    match hostile_common::field(record, name) {
        Some(Value::Text(t)) => t.clone(),
        Some(Value::Integer(i)) => i.to_string(),
        _ => String::new(),
    }
}

impl Guest for HostileLeakyReason {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-leaky-reason",
            "Test only: rejects every record with a reason quoting its ip and device_id.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(|record| {
                let (ip, device) = (text(&record, "ip"), text(&record, "device_id"));
                Outcome::Reject(if device.is_empty() {
                    ip
                } else {
                    format!("leaked ip={ip} device={device} (again: [{ip}])")
                })
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileLeakyReason);
