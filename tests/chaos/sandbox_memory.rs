//! 100,000 calls to hostile policies must not grow the host's resident memory by 10% or more:
//! every trapped, interrupted or memory-starved instance is freed with its store.
//!
//! Why it lives in the chaos binary: resident memory is measured for the whole test process,
//! so no other test may allocate while it runs. The integration binary runs its tests side by
//! side; here every scenario holds `exclusive()` while it runs, and so does this test, so
//! nothing else in the process works (or allocates) between its two measurements.

use crate::harness::exclusive_blocking;
use crate::support::plugin;
use masq::keys::{Keys, Pseudonymizer};
use masq::policy::{Field, Metadata, PolicyHost, PolicyOptions, PolicyRuntime, Record, Value};
use std::sync::Arc;
use std::time::Duration;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn load(runtime: &Arc<PolicyRuntime>, name: &str, options: PolicyOptions) -> PolicyHost {
    let path = plugin(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let keys = Arc::new(Keys::new(Pseudonymizer::Unkeyed));
    PolicyHost::from_bytes(runtime.clone(), &bytes, name, options, keys).unwrap()
}

fn record(user_id: &str, poison: bool) -> Record {
    let mut fields = vec![Field {
        name: "user_id".into(),
        value: Value::Text(user_id.into()),
    }];
    if poison {
        fields.push(Field {
            name: "poison".into(),
            value: Value::Boolean(true),
        });
    }
    Record {
        metadata: Metadata {
            message_id: "m".into(),
            sent_timestamp_ms: 0,
            receive_count: 1,
            source: "test".into(),
            attributes: Vec::new(),
        },
        fields,
    }
}

#[test]
fn a_hundred_thousand_hostile_calls_do_not_grow_resident_memory() {
    let _one_at_a_time = exclusive_blocking();
    let runtime = Arc::new(PolicyRuntime::new().unwrap());
    let quick = PolicyOptions {
        deadline: Duration::from_millis(20),
        memory_limit: 8 << 20,
        ..PolicyOptions::default()
    };
    let trap_one = load(&runtime, "hostile-trap-one", quick.clone());
    let panic = load(&runtime, "hostile-panic", quick.clone());
    let wrong_count = load(&runtime, "hostile-wrong-count", quick.clone());
    let memory = load(&runtime, "hostile-memory", quick.clone());
    let looping = load(&runtime, "hostile-loop", quick.clone());
    let good = [record("good", false)];
    let poison_id = [record("poison", false)];
    let poison = [record("bad", true)];

    let call = |i: u64| {
        // Mostly traps (cheap); every 1000th call a memory bomb and an endless loop.
        let failed = match i % 1000 {
            0 => memory.transform(&poison).is_err(),
            1 => looping.transform(&poison).is_err(),
            n if n % 3 == 0 => panic.transform(&good).is_err(),
            n if n % 3 == 1 => wrong_count.transform(&good).is_err(),
            _ => trap_one.transform(&poison_id).is_err(),
        };
        assert!(failed, "call {i} should have failed");
    };
    for i in 0..5_000 {
        call(i);
    }
    let before = resident_kib();
    for i in 5_000..105_000 {
        call(i);
    }
    let after = resident_kib();
    let growth = (after as f64 - before as f64) / before as f64;
    eprintln!(
        "resident memory: {before} KiB after warm-up, {after} KiB after 100,000 more calls ({:+.1}%)",
        growth * 100.0
    );
    assert!(
        growth < 0.10,
        "resident memory grew {:.1}% ({before} -> {after} KiB)",
        growth * 100.0
    );
}
