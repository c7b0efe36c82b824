//! `masq plugin test FILE --input IN.jsonl`: runs a policy on records with no queue and no
//! database, prints each result as a JSON line, compares with expected output, and fails
//! when a PII value leaks into any output field. What policy authors run before they ship.

use crate::config::PluginTestConfig;
use crate::keys::{Keys, Pseudonymizer};
use crate::pipeline::batch::{Item, Verdict, verdict_json};
use crate::pipeline::decide::decide;
use crate::policy::{PolicyHost, PolicyRuntime, Value};
use crate::source::Source;
use crate::source::jsonl::JsonlSource;
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::sync::Arc;

/// Records per policy call, as `masq run` would batch them.
const BATCH: usize = 100;

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Boolean(b) => Some(b.to_string()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Text(t) | Value::Json(t) => Some(t.clone()),
    }
}

/// Runs the test; returns the report for stdout, or an error (non-zero exit) that says what
/// differed or leaked.
pub async fn run(args: PluginTestConfig) -> anyhow::Result<String> {
    // Without a key file, plain SHA-256: enough to test a policy's logic, and reproducible.
    let pseudonymizer = match &args.key_file {
        Some(path) => Pseudonymizer::from_key_file(path)?,
        None => Pseudonymizer::Unkeyed,
    };
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read policy {}", args.file.display()))?;
    let origin = args.file.display().to_string();
    let options = args.options.clone();
    let keys = Arc::new(Keys::new(pseudonymizer));
    let policy = tokio::task::spawn_blocking(move || {
        PolicyHost::from_bytes(
            Arc::new(PolicyRuntime::new()?),
            &bytes,
            &origin,
            options,
            keys,
        )
    })
    .await??;
    let policy = Arc::new(policy);

    let source_id = JsonlSource::source_id(&args.input, None);
    let source = JsonlSource::open(&args.input, source_id, args.sent_ms)?;
    let mut items: Vec<Item> = Vec::new();
    loop {
        let mut chunk = source.read(BATCH)?;
        if chunk.is_empty() {
            break;
        }
        // Ids an author can find in the input file: the line number.
        for m in &mut chunk {
            m.id = format!("line {}", m.receipt);
        }
        items.extend(decide(&policy, source.name(), chunk, None).await.0);
    }

    let mut report = String::new();
    let outputs: Vec<serde_json::Value> = items
        .iter()
        .map(|i| verdict_json(&i.message.id, &i.verdict))
        .collect();
    for o in &outputs {
        let _ = writeln!(report, "{o}");
    }

    let mut problems = Vec::new();
    // The fields named with --pii and those the policy itself declares PII (contract 0.2).
    let mut pii = args.pii.clone();
    pii.extend(
        policy
            .pii()
            .iter()
            .filter(|f| !args.pii.contains(f))
            .cloned(),
    );
    if !pii.is_empty() {
        problems.extend(pii_leaks(&items, &pii, &args.pii));
    }
    if let Some(expect) = &args.expect {
        problems.extend(differences(&outputs, expect)?);
    }
    if !problems.is_empty() {
        eprint!("{report}");
        bail!(
            "{} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(report)
}

/// Every place where a value of a PII field of an input record appears, whole or as part, in
/// an output field of the row made from it. `named` are the fields the author passed with
/// --pii, which must occur in the input.
fn pii_leaks(items: &[Item], pii: &[String], named: &[String]) -> Vec<String> {
    let mut leaks = Vec::new();
    // A misspelt --pii name would check nothing and pass: every name must occur in the input.
    let mut seen = std::collections::BTreeSet::new();
    for item in items {
        if let Ok(fields) = crate::source::decode::decode_body(&item.message.body) {
            seen.extend(fields.into_iter().map(|f| f.name));
        }
    }
    for name in named.iter().filter(|n| !seen.contains(*n)) {
        leaks.push(format!(
            "--pii field '{name}' is in no input record, so nothing was checked for it; fields \
             in the input: {}",
            seen.iter().take(40).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    for item in items {
        let Verdict::Row(out) = &item.verdict else {
            continue;
        };
        // The input's PII values, from the raw body (the policy may have renamed or dropped them).
        let Ok(input) = crate::source::decode::decode_body(&item.message.body) else {
            continue;
        };
        for field in input.iter().filter(|f| pii.contains(&f.name)) {
            let Some(secret) = value_text(&field.value).filter(|s| !s.is_empty()) else {
                continue;
            };
            for o in out {
                if let Some(text) = value_text(&o.value)
                    && text.contains(&secret)
                {
                    let how = if text == secret { "holds" } else { "contains" };
                    leaks.push(format!(
                        "PII leak: {}: output field '{}' {how} the value of input field '{}' ({secret:?})",
                        item.message.id, o.name, field.name
                    ));
                }
            }
        }
    }
    leaks
}

/// Line-by-line differences from the expected JSONL, each naming the line and the field.
fn differences(
    outputs: &[serde_json::Value],
    expect: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(expect)
        .with_context(|| format!("cannot read {}", expect.display()))?;
    let expected: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not JSON", expect.display(), n + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut diffs = Vec::new();
    if expected.len() != outputs.len() {
        diffs.push(format!(
            "expected {} results, got {}",
            expected.len(),
            outputs.len()
        ));
    }
    for (got, want) in outputs.iter().zip(&expected) {
        if got == want {
            continue;
        }
        let id = got["id"].as_str().unwrap_or("?");
        match (
            got.get("row").and_then(|r| r.as_object()),
            want.get("row").and_then(|r| r.as_object()),
        ) {
            (Some(g), Some(w)) => {
                let mut names: Vec<&String> = g.keys().chain(w.keys()).collect();
                names.sort();
                names.dedup();
                for name in names {
                    if g.get(name) != w.get(name) {
                        diffs.push(format!(
                            "{id}: field '{name}': expected {}, got {}",
                            w.get(name).map_or("(absent)".into(), |v| v.to_string()),
                            g.get(name).map_or("(absent)".into(), |v| v.to_string())
                        ));
                    }
                }
            }
            _ => diffs.push(format!("{id}: expected {want}, got {got}")),
        }
    }
    Ok(diffs)
}
