//! Start-up steps that `run`, `load` and `replay` share: the key, the target table, and a
//! policy checked against that table. One place, so all three refuse the same things with
//! the same words.

use crate::keys::{Keys, Pseudonymizer};
use crate::policy::reload::PolicyLoader;
use crate::policy::{PolicyHost, PolicyOptions, PolicyRuntime};
use crate::sink::postgres::Database;
use crate::sink::schema::{TableName, TableSchema};
use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;

/// The pseudonymizer for `--key-file` or `--unkeyed` (exactly one of them).
pub fn pseudonymizer(key_file: Option<&Path>, unkeyed: bool) -> anyhow::Result<Pseudonymizer> {
    let p = match (key_file, unkeyed) {
        (Some(path), false) => Pseudonymizer::from_key_file(path)?,
        (None, true) => {
            tracing::warn!(
                "UNKEYED mode: tokens are plain SHA-256 of the value. An unkeyed hash of an IPv4 \
                 address is reversed in about a second on one GPU (2^32 candidates); use --key-file \
                 for anything that leaves this machine"
            );
            Pseudonymizer::Unkeyed
        }
        (None, false) => bail!(
            "no key for pseudonyms: pass --key-file FILE (make one with `masq keygen > masq.key`), \
             or --unkeyed for plain SHA-256"
        ),
        (Some(_), true) => bail!("--key-file and --unkeyed exclude each other"),
    };
    tracing::info!(mode = %p.describe(), "pseudonyms");
    Ok(p)
}

/// A policy loaded and checked against its table, and what it takes to load the next version.
pub struct Loaded {
    pub table: TableName,
    pub schema: Arc<TableSchema>,
    pub loader: PolicyLoader,
    pub policy: PolicyHost,
}

/// Reads the table's columns, then loads and checks the policy against them.
pub async fn load_policy(
    plugin: &Path,
    database: &Database,
    table: &str,
    options: PolicyOptions,
    keys: Arc<Keys>,
    pin: Option<String>,
) -> anyhow::Result<Loaded> {
    let table = TableName::parse(table)?;
    let client = database.connect().await?;
    let schema = Arc::new(
        database
            .answer(
                &format!("reading the columns of table {table}"),
                TableSchema::load(&client, &table),
            )
            .await?,
    );
    drop(client);
    let loader = PolicyLoader {
        runtime: Arc::new(PolicyRuntime::new()?),
        options,
        keys,
        pin,
        schema: schema.clone(),
    };
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
    Ok(Loaded {
        table,
        schema,
        loader,
        policy,
    })
}

/// `--sent-at YYYY-MM-DD` as milliseconds since the epoch at `hour`:00 UTC; now if absent.
pub fn sent_at_ms(date: Option<&str>, hour: u32) -> anyhow::Result<u64> {
    Ok(match date {
        Some(date) => chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| anyhow::anyhow!("--sent-at {date:?} is not a date (YYYY-MM-DD)"))?
            .and_hms_opt(hour, 0, 0)
            .ok_or_else(|| anyhow::anyhow!("hour {hour} does not exist"))?
            .and_utc()
            .timestamp_millis() as u64,
        None => chrono::Utc::now().timestamp_millis() as u64,
    })
}
