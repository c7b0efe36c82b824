//! Policy cost per record, for `just bench`: each policy component run by masq's own
//! `PolicyHost` (fresh instance per batch, as in production) at batch sizes 1, 10, 100 and
//! 1000, next to the default policy's logic compiled natively into this binary. Records are
//! decoded once up front: this measures the policy, not JSON parsing. Prints JSON lines.
//!
//! Usage: policy_cost PLUGINS_DIR [NAME...]

use masq::keys::{Keys, Pseudonymizer};
use masq::policy::{Metadata, PolicyHost, PolicyOptions, PolicyRuntime, Record, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
// masq's own allocator (see host/src/main.rs): the host's side of a policy call allocates a
// string per value lifted, so the allocator is part of what is measured.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each measurement runs at least this long, so short calls average over many runs.
const MIN_TIME: Duration = Duration::from_millis(700);

fn records(n: usize) -> Vec<Record> {
    let mut rng = masq::source::synthetic::SplitMix(7);
    (0..n)
        .map(|i| {
            let body = masq::source::synthetic::login(&mut rng);
            Record {
                metadata: Metadata {
                    message_id: format!("m{i}"),
                    sent_timestamp_ms: 1_700_000_000_000,
                    receive_count: 1,
                    source: "bench".into(),
                    attributes: Vec::new(),
                },
                fields: masq::source::decode::decode_body(&body).expect("synthetic logins decode"),
            }
        })
        .collect()
}

/// Nanoseconds per record of `run` over batches of `size`.
fn measure(size: usize, all: &[Record], mut run: impl FnMut(&[Record])) -> f64 {
    let batch = &all[..size];
    run(batch); // warm up
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < MIN_TIME {
        run(batch);
        calls += 1;
    }
    started.elapsed().as_nanos() as f64 / (calls as f64 * size as f64)
}

/// The native build of the default policy: the same source, with the same keyed tokens. The
/// records are first copied into the policy's own (0.2, columnar, text packed) types, as the
/// wasm path lowers them; that copy is part of the cost a host-native policy would pay too.
fn native(
    batch: &[Record],
    pseudonymizer: &Pseudonymizer,
    settings: &sha256_masker::Settings,
) -> usize {
    use sha256_masker::masq::policy::types as t;
    let out = sha256_masker::transform_batch(settings, columns(batch), &mut |values| {
        sha256_masker::packed::map(&values, |v| pseudonymizer.token(v))
    });
    out.outcomes
        .iter()
        .filter(|o| matches!(o, t::Outcome::Keep))
        .count()
}

/// Records as the policy's columnar batch: each name once, values by kind.
fn columns(batch: &[Record]) -> sha256_masker::masq::policy::types::Batch {
    use sha256_masker::masq::policy::types as t;
    let n = batch.len();
    let mut cells: Vec<(&str, Vec<Option<&Value>>)> = Vec::new();
    for (i, r) in batch.iter().enumerate() {
        for (position, f) in r.fields.iter().enumerate() {
            let c = match cells.get(position) {
                Some((name, _)) if *name == f.name => position,
                _ => match cells.iter().position(|(name, _)| *name == f.name) {
                    Some(c) => c,
                    None => {
                        cells.push((&f.name, vec![None; n]));
                        cells.len() - 1
                    }
                },
            };
            cells[c].1[i] = Some(&f.value);
        }
    }
    t::Batch {
        size: n as u32,
        source: batch[0].metadata.source.to_string(),
        columns: cells
            .into_iter()
            .map(|(name, values)| t::Column {
                name: name.to_string(),
                missing: (0..n as u32)
                    .filter(|&i| values[i as usize].is_none())
                    .collect(),
                values: match sha256_masker::from_cells(
                    values
                        .into_iter()
                        .map(|v| v.map_or(t::Value::Null, to_native))
                        .collect(),
                ) {
                    // Text and JSON columns packed, as masq sends them.
                    t::Values::Text(l) => t::Values::PackedText(sha256_masker::packed::pack(
                        l.iter().map(|v| v.as_deref()),
                    )),
                    t::Values::Json(l) => t::Values::PackedJson(sha256_masker::packed::pack(
                        l.iter().map(|v| v.as_deref()),
                    )),
                    other => other,
                },
            })
            .collect(),
        metadata: batch
            .iter()
            .map(|r| t::Metadata {
                message_id: r.metadata.message_id.clone(),
                sent_timestamp_ms: r.metadata.sent_timestamp_ms,
                receive_count: r.metadata.receive_count,
                attributes: r.metadata.attributes.clone(),
            })
            .collect(),
    }
}

fn to_native(v: &Value) -> sha256_masker::masq::policy::types::Value {
    use sha256_masker::masq::policy::types::Value as N;
    match v {
        Value::Null => N::Null,
        Value::Boolean(b) => N::Boolean(*b),
        Value::Integer(i) => N::Integer(*i),
        Value::Float(f) => N::Float(*f),
        Value::Text(s) => N::Text(s.clone()),
        Value::Json(s) => N::Json(s.clone()),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .expect("usage: policy_cost PLUGINS_DIR [NAME...]"),
    );
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names.push("sha256-masker".into());
    }
    let all = records(*BATCH_SIZES.last().unwrap());
    let key_file = std::env::temp_dir().join(format!("masq-bench-{}.key", std::process::id()));
    std::fs::write(
        &key_file,
        masq::keys::KeyFile::generate().unwrap().to_json(),
    )
    .unwrap();
    let pseudonymizer = Pseudonymizer::from_key_file(&key_file).unwrap();
    std::fs::remove_file(&key_file).ok();

    // `POLICY_COST_BATCH=100` measures only that batch size, and no native baseline: for
    // profiling one policy (`perf record policy_cost DIR NAME`).
    let only: Option<usize> = std::env::var("POLICY_COST_BATCH")
        .ok()
        .map(|v| v.parse().expect("POLICY_COST_BATCH is a batch size"));
    let sizes: Vec<usize> = match only {
        Some(size) => vec![size],
        None => BATCH_SIZES.to_vec(),
    };
    let settings = sha256_masker::Settings::default();
    if only.is_none() {
        for size in BATCH_SIZES {
            let ns = measure(size, &all, |b| {
                assert_eq!(native(b, &pseudonymizer, &settings), b.len());
            });
            println!(
                r#"{{"policy": "sha256-masker (native)", "batch": {size}, "ns_per_record": {ns:.0}}}"#
            );
        }
    }
    let runtime = Arc::new(PolicyRuntime::new().unwrap());
    for name in &names {
        let bytes = std::fs::read(dir.join(format!("{name}.wasm"))).expect("policy file");
        let keys = Arc::new(Keys::new(pseudonymizer.clone()));
        let host = PolicyHost::from_bytes(
            runtime.clone(),
            &bytes,
            name,
            PolicyOptions::default(),
            keys,
        )
        .unwrap();
        for &size in &sizes {
            let ns = measure(size, &all, |b| {
                let out = host.transform(b).unwrap();
                assert!(
                    out.iter()
                        .all(|o| matches!(o, masq::policy::Outcome::Keep(_)))
                );
            });
            println!(r#"{{"policy": "{name}", "batch": {size}, "ns_per_record": {ns:.0}}}"#);
        }
    }
}
