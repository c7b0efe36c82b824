//! The start-up that `run`, `load` and `replay` share: the key, the target table, a policy
//! checked against that table, and one sink per worker. One place, so all three refuse the
//! same things with the same words, before anything is received.

use crate::config::{Common, KeySource};
use crate::keys::{Keys, Pseudonymizer};
use crate::policy::reload::PolicyLoader;
use crate::policy::{PolicyHost, PolicyRuntime};
use crate::sink::postgres::{PostgresSink, WriteMode};
use crate::sink::schema::TableSchema;
use anyhow::Context;
use std::sync::Arc;

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
    pub schema: Arc<TableSchema>,
    /// What it takes to check the next version of the policy (hot reload).
    pub loader: PolicyLoader,
    pub policy: PolicyHost,
}

/// Loads the key, reads the table's columns, then loads and checks the policy against them.
pub async fn start(common: &Common) -> anyhow::Result<Started> {
    let keys = Arc::new(Keys::new(pseudonymizer(&common.keys)?));
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
        schema,
        loader,
        policy,
    })
}

/// One sink per worker, each connected now, so a bad DATABASE_URL holds no message.
pub async fn sinks(
    common: &Common,
    schema: &Arc<TableSchema>,
    mode: WriteMode,
    workers: usize,
) -> anyhow::Result<Vec<PostgresSink>> {
    let mut sinks = Vec::with_capacity(workers);
    for _ in 0..workers {
        sinks.push(PostgresSink::connect(&common.database, schema.clone(), mode).await?);
    }
    Ok(sinks)
}
