//! Hostile policy `hostile-log-values`. Attack: leaking values through masq's log. For every
//! record it logs the `ip` and `user_id` at each level, alone, inside other text and as the
//! record's whole field list, then keeps only `user_id`.
//!
//! masq's log is not masked: the host must cut every value of the batch (4+ characters) out
//! of each line before it is written, naming the field instead (`<field ip>`).

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::log::{Level, log};
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record, Value};

const WRITES: &str = "user_id";

struct HostileLogValues;

impl Guest for HostileLogValues {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-log-values",
            "Test only: logs every record's ip and user_id; keeps user_id.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(batch.len());
        for record in batch {
            let text_of = |name: &str| match hostile_common::field(&record, name) {
                Some(Value::Text(t)) => t.clone(),
                _ => String::new(),
            };
            let (ip, user_id) = (text_of("ip"), text_of("user_id"));
            log(Level::Info, &ip);
            log(
                Level::Warn,
                &format!("user {user_id} logged in from ip={ip};"),
            );
            log(Level::Error, &format!("record: {:?}", record.fields));
            out.push(Outcome::Keep(vec![hostile_common::text(
                "user_id", user_id,
            )]));
        }
        out
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileLogValues);
