//! A test policy that is slow on purpose, for the chaos test of a batch that outlives the
//! visibility timeout. Policies have no clock, so it burns a configurable number of loop
//! iterations per record (setting `spin`), then writes the login fields with `ip` and
//! `device_id` masked through the host, like sha256-masker but with nothing configurable.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{Config, Field, Outcome, PolicyInfo, Record, Setting, Value};
use std::cell::Cell;

const WRITES: [&str; 6] = [
    "user_id",
    "device_type",
    "masked_ip",
    "masked_device_id",
    "locale",
    "app_version",
];

thread_local! {
    // The instance is fresh for every batch: this lives for one `configure` + `transform`.
    static SPIN: Cell<u64> = const { Cell::new(0) };
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Slow;

impl Guest for Slow {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "slow".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Spins `spin` iterations per record, then masks ip and device_id; for chaos tests."
                    .into(),
            writes: WRITES.iter().map(|s| s.to_string()).collect(),
            settings: vec![Setting {
                name: "spin".into(),
                description: "Loop iterations to burn per record".into(),
                default_value: "0".into(),
            }],
        }
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        for (key, value) in config {
            if key != "spin" {
                return Err(format!("slow takes only 'spin', got '{key}'"));
            }
            let n = value
                .parse()
                .map_err(|_| format!("spin must be a whole number, got '{value}'"))?;
            SPIN.with(|s| s.set(n));
        }
        Ok(WRITES.iter().map(|s| s.to_string()).collect())
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        let spin = SPIN.with(Cell::get);
        batch
            .into_iter()
            .map(|record| {
                burn(spin);
                mask(record, &mut |v| masq::policy::pseudonym::pseudonymize(v))
            })
            .collect()
    }
}

/// Burns `n` iterations the optimiser cannot remove.
pub fn burn(n: u64) {
    let mut x = 0u64;
    for i in 0..n {
        x = core::hint::black_box(x.wrapping_add(i));
    }
    core::hint::black_box(x);
}

/// The login fields, `ip` and `device_id` masked, `app_version` "a.b.c" as a*1000000+b*1000+c;
/// anything else about the record is a reject naming the field.
pub fn mask(record: Record, pseudonymize: &mut dyn FnMut(&str) -> String) -> Outcome {
    let get = |name: &str| {
        record
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.clone())
    };
    let text = |name: &str| match get(name) {
        Some(Value::Text(s)) => Ok(s),
        _ => Err(format!("field '{name}' must be a string")),
    };
    let fields = (|| -> Result<Vec<Field>, String> {
        let version = text("app_version")?;
        let mut parts = version.split('.').map(|p| p.parse::<i64>());
        let mut next = || {
            parts
                .next()
                .unwrap_or(Ok(0))
                .map_err(|_| format!("field 'app_version': '{version}' is not a version"))
        };
        let encoded = next()? * 1_000_000 + next()? * 1_000 + next()?;
        Ok(vec![
            Field {
                name: "user_id".into(),
                value: Value::Text(text("user_id")?),
            },
            Field {
                name: "device_type".into(),
                value: get("device_type").unwrap_or(Value::Null),
            },
            Field {
                name: "masked_ip".into(),
                value: Value::Text(pseudonymize(&text("ip")?)),
            },
            Field {
                name: "masked_device_id".into(),
                value: Value::Text(pseudonymize(&text("device_id")?)),
            },
            Field {
                name: "locale".into(),
                value: get("locale").unwrap_or(Value::Null),
            },
            Field {
                name: "app_version".into(),
                value: Value::Integer(encoded),
            },
        ])
    })();
    match fields {
        Ok(fields) => Outcome::Keep(fields),
        Err(reason) => Outcome::Reject(reason),
    }
}

#[cfg(target_arch = "wasm32")]
export!(Slow);
