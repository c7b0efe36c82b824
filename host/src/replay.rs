//! `masq replay`: sends a table's dead letters through the current policy, after a fix.
//! Messages that now pass are written once (the ledger guards it) and leave the dead-letter
//! table; the rest stay, with the new reason.

use crate::cli::ReplayArgs;
use crate::decide::decide;
use crate::keys::{Keys, Pseudonymizer};
use crate::policy::reload::PolicyLoader;
use crate::policy::{PolicyOptions, PolicyRuntime};
use crate::sink::postgres::{self, PostgresSink};
use crate::sink::replay::ReplayReport;
use crate::sink::schema::{TableName, TableSchema};
use anyhow::{Context, bail};
use std::sync::Arc;

/// Dead letters per transaction.
const BATCH: i64 = 100;

pub async fn run(args: ReplayArgs) -> anyhow::Result<String> {
    let pseudonymizer = match (&args.key_file, args.unkeyed) {
        (Some(path), false) => Pseudonymizer::from_key_file(path)?,
        (None, true) => Pseudonymizer::Unkeyed,
        _ => bail!("pass the same --key-file as `masq run` uses (or --unkeyed if it runs unkeyed), so replayed rows match"),
    };
    let table = TableName::parse(&args.table)?;
    let client = postgres::connect(&args.database_url).await?;
    let schema = Arc::new(TableSchema::load(&client, &table).await?);
    drop(client);
    let loader = PolicyLoader {
        runtime: Arc::new(PolicyRuntime::new()?),
        options: PolicyOptions { config: args.policy_config.clone(), ..PolicyOptions::default() },
        keys: Arc::new(Keys::new(pseudonymizer)),
        pin: None,
        schema: schema.clone(),
    };
    let bytes = std::fs::read(&args.plugin)
        .with_context(|| format!("cannot read policy {}", args.plugin.display()))?;
    let origin = args.plugin.display().to_string();
    let policy = Arc::new(tokio::task::spawn_blocking(move || loader.load(&bytes, &origin, &[])).await??);
    let provenance = crate::batch::Provenance {
        name: policy.info().name.clone(),
        version: policy.info().version.clone(),
        digest: policy.digest().to_string(),
    };
    let mut sink = PostgresSink::connect(&args.database_url, schema).await?;

    let mut total = ReplayReport::default();
    let mut after = 0;
    loop {
        let dead = sink.dead_letters(after, BATCH).await?;
        let Some(last) = dead.last() else { break };
        after = last.id;
        // One dead letter per message id (the ledger makes more impossible); keeping the
        // first of any copies keeps verdicts aligned with letters.
        let mut seen = std::collections::HashSet::new();
        let dead: Vec<_> = dead.into_iter().filter(|d| seen.insert(d.message.id.clone())).collect();
        let (items, health) = decide(&policy, "replay", dead.iter().map(|d| d.message.clone()).collect(), None).await;
        if health.failed * 2 > health.evaluated && health.failed > 0 {
            bail!(
                "policy {} {} fails on {} of {} dead letters ({}): it looks broken; nothing more replayed",
                provenance.name,
                provenance.version,
                health.failed,
                health.evaluated,
                health.last_error
            );
        }
        let report = sink.replay(&dead, &items, &provenance).await?;
        total.written += report.written;
        total.dropped += report.dropped;
        total.still_dead += report.still_dead;
        total.skipped += report.skipped;
    }
    Ok(format!(
        "replayed dead letters of {table} through {} {}: written {}, dropped {}, still dead {}, skipped {}\n",
        provenance.name, provenance.version, total.written, total.dropped, total.still_dead, total.skipped
    ))
}
