//! `masq replay`: sends a table's dead letters through the current policy, after a fix.
//! Messages that now pass are written once (the ledger guards it) and leave the dead-letter
//! table; the rest stay, with the new reason.

use crate::cli::ReplayArgs;
use crate::decide::decide;
use crate::keys::Keys;
use crate::policy::PolicyOptions;
use crate::setup;
use crate::sink::postgres::PostgresSink;
use crate::sink::replay::ReplayReport;
use anyhow::bail;
use std::sync::Arc;

/// Dead letters per transaction.
const BATCH: i64 = 100;

pub async fn run(args: ReplayArgs) -> anyhow::Result<String> {
    // The same key as `masq run`, so replayed rows carry the same tokens as the others.
    let keys = Arc::new(Keys::new(setup::pseudonymizer(
        args.key_file.as_deref(),
        args.unkeyed,
    )?));
    let options = PolicyOptions {
        config: args.policy_config.clone(),
        ..PolicyOptions::default()
    };
    let database = args.database.database()?;
    let loaded =
        setup::load_policy(&args.plugin, &database, &args.table, options, keys, None).await?;
    let (table, schema, policy) = (loaded.table, loaded.schema, Arc::new(loaded.policy));
    let provenance = crate::batch::Provenance::of(&policy);
    let mut sink = PostgresSink::connect(&database, schema).await?;

    let mut total = ReplayReport::default();
    let mut after = 0;
    loop {
        let dead = sink.dead_letters(after, BATCH).await?;
        let Some(last) = dead.last() else { break };
        after = last.id;
        // One dead letter per message id (the ledger makes more impossible); keeping the
        // first of any copies keeps verdicts aligned with letters.
        let mut seen = std::collections::HashSet::new();
        let dead: Vec<_> = dead
            .into_iter()
            .filter(|d| seen.insert(d.message.id.clone()))
            .collect();
        let (items, health) = decide(
            &policy,
            "replay",
            dead.iter().map(|d| d.message.clone()).collect(),
            None,
        )
        .await;
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
        provenance.name,
        provenance.version,
        total.written,
        total.dropped,
        total.still_dead,
        total.skipped
    ))
}
