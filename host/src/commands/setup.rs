//! The start-up that `run`, `load` and `replay` share: the key, the target table, a policy
//! checked against that table, and one sink per worker. One place, so all three refuse the
//! same things with the same words, before anything is received.

use super::signals;
use crate::config::{Common, KeySource};
use crate::keys::{Keys, Pseudonymizer};
use crate::ops::metrics::Counters;
use crate::pipeline::PipelineConfig;
use crate::pipeline::decide::PolicyStep;
use crate::policy::reload::PolicyLoader;
use crate::policy::{PolicyHost, PolicyRuntime};
use crate::sink::ledger::Ledger;
use crate::sink::letter_body::LetterBodies;
use crate::sink::postgres::{PostgresSink, WriteMode};
use crate::sink::schema::TableSchema;
use crate::source::Source;
use anyhow::Context;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The pseudonymizer for a key source; unkeyed mode says how weak it is.
pub fn pseudonymizer(keys: &KeySource) -> anyhow::Result<Pseudonymizer> {
    let p = match keys {
        KeySource::File(path) => Pseudonymizer::from_key_file(path)?,
        KeySource::Unkeyed => {
            tracing::warn!(
                "UNKEYED mode: tokens are plain SHA-256 of the value. An unkeyed hash of an IPv4 \
                 address is reversed in about a second on one GPU (2^32 candidates); use --key-file \
                 for anything that leaves this machine"
            );
            Pseudonymizer::Unkeyed
        }
    };
    tracing::info!(mode = %p.describe(), "pseudonyms");
    Ok(p)
}

/// Everything a pipeline command has once start-up passed.
pub struct Started {
    pub keys: Arc<Keys>,
    /// How the sinks keep dead-letter bodies: sealed with the same (rotating) keys.
    pub bodies: LetterBodies,
    pub schema: Arc<TableSchema>,
    /// What it takes to check the next version of the policy (hot reload).
    pub loader: PolicyLoader,
    pub policy: PolicyHost,
}

/// Loads the key, reads the table's columns, then loads and checks the policy against them.
pub async fn start(common: &Common) -> anyhow::Result<Started> {
    let keys = Arc::new(Keys::new(pseudonymizer(&common.keys)?));
    let bodies = LetterBodies::new(keys.clone(), common.dead_letter_plaintext);
    if common.dead_letter_plaintext {
        tracing::warn!("{}", bodies.describe());
    } else {
        tracing::info!("{}", bodies.describe());
    }
    let table = &common.table;
    let database = &common.database;
    let client = database.connect().await?;
    let schema = Arc::new(
        database
            .answer(
                &format!("reading the columns of table {table}"),
                TableSchema::load(&client, table),
            )
            .await?,
    );
    drop(client);
    let loader = PolicyLoader {
        runtime: Arc::new(PolicyRuntime::new()?),
        options: common.policy.options.clone(),
        keys: keys.clone(),
        pin: common.policy.pin.clone(),
        schema: schema.clone(),
    };
    let plugin = &common.policy.plugin;
    let bytes = std::fs::read(plugin).with_context(|| {
        format!(
            "cannot read policy {}: build it with `just plugins`",
            plugin.display()
        )
    })?;
    let origin = plugin.display().to_string();
    let first = loader.clone();
    let policy = tokio::task::spawn_blocking(move || first.load(&bytes, &origin, &[])).await??;
    tracing::info!(
        policy = %policy.info().name,
        version = %policy.info().version,
        sha256 = %policy.digest(),
        "policy loaded"
    );
    Ok(Started {
        keys,
        bodies,
        schema,
        loader,
        policy,
    })
}

/// The table's ledger: registered, today's partitions made, expired ones dropped (unless
/// `upkeep` is false: a dry run changes nothing). `run` opens it only once the queue has shown
/// the retention is long enough.
pub async fn ledger(common: &Common, upkeep: bool) -> anyhow::Result<Arc<Ledger>> {
    Ledger::open(
        &common.database,
        &common.table.to_string(),
        common.retention.0,
        upkeep,
    )
    .await
}

/// `load` and `replay`: the pipeline with the one policy version loaded at start (no hot
/// reload), to the end of the source. Returns its counters and whether a signal stopped it.
pub async fn drive_to_end<S: Source>(
    common: &Common,
    started: Started,
    ledger: &Arc<Ledger>,
    source: S,
    mode: WriteMode,
    pipeline: &PipelineConfig,
) -> anyhow::Result<(Arc<Counters>, bool)> {
    let counters = Arc::new(Counters::default());
    let decider = PolicyStep {
        active: Arc::new(crate::policy::ActivePolicy::new(started.policy)),
        canary: None,
    };
    let stopped = drive(
        common,
        &started.schema,
        &started.bodies,
        ledger,
        source,
        mode,
        pipeline,
        decider,
        counters.clone(),
    )
    .await?;
    Ok((counters, stopped))
}

/// Runs the pipeline from `source` into the table until the source is drained or a signal,
/// a broken policy or a permanent error stops it; says whether it was stopped. Every worker's
/// sink connects before anything is received, so a bad DATABASE_URL holds no message. While
/// it runs, the ledger's partitions are kept up (made ahead, expired ones dropped).
#[allow(clippy::too_many_arguments)]
pub async fn drive<S: Source>(
    common: &Common,
    schema: &Arc<TableSchema>,
    bodies: &LetterBodies,
    ledger: &Arc<Ledger>,
    source: S,
    mode: WriteMode,
    pipeline: &PipelineConfig,
    decider: PolicyStep,
    counters: Arc<Counters>,
) -> anyhow::Result<bool> {
    let mut sinks = Vec::with_capacity(pipeline.workers);
    for _ in 0..pipeline.workers {
        let sink = PostgresSink::connect(
            &common.database,
            schema.clone(),
            ledger.clone(),
            mode,
            bodies.clone(),
        )
        .await?;
        sinks.push(sink);
    }
    let stop = CancellationToken::new();
    signals::stop_on_signal(stop.clone());
    let upkeep_stop = CancellationToken::new();
    let upkeep = (!pipeline.dry_run).then(|| {
        tokio::spawn(
            ledger
                .clone()
                .keep_up(common.database.clone(), upkeep_stop.clone()),
        )
    });
    let result = crate::pipeline::run(
        pipeline.clone(),
        source,
        sinks,
        Arc::new(decider),
        counters,
        stop.clone(),
    )
    .await;
    upkeep_stop.cancel();
    if let Some(upkeep) = upkeep {
        let _ = upkeep.await;
    }
    result?;
    Ok(stop.is_cancelled())
}
