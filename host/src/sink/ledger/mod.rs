//! masq's ledger: one compact row per message and target table, claimed in the transaction
//! that writes the message's row or dead letter, so a message delivered again writes nothing.
//! It is partitioned by target and by the message's send time (one partition per table and
//! UTC day), and partitions older than the retention are dropped: the ledger stays the size
//! of `--ledger-retention` worth of messages, however long masq runs.
//!
//! - `key`: a message id and an outcome in as few bytes as stay faithful
//! - `schema`: the tables and functions (`ledger.sql`), and moving an old ledger over
//! - `partitions`: making partitions before a batch needs them, dropping old ones
//! - `claim`: the statements of a batch (claim by COPY or by INSERT, replay, dry run)
//! - `blocks`: `masq load`'s lines, claimed by blocks of 100 lines
//! - `packing`: past days' entries moved into sorted arrays, a fifth of the bytes
//! - `retention`: how long entries are kept, and the queue's floor under it
//! - `loads`: the send time a `masq load` keeps across runs
//!
//! `Ledger` is what every worker of one pipeline shares: the target's id, the ids of the
//! policy versions seen so far, the partitions known to exist.

pub mod blocks;
pub mod claim;
pub mod key;
pub mod loads;
pub mod packing;
pub mod partitions;
pub mod retention;
pub mod schema;

use super::database::Database;
use super::sql;
use crate::pipeline::batch::Provenance;
use anyhow::anyhow;
use partitions::Partitions;
use postgres_types::Type;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

/// How often a long-running consumer makes tomorrow's partitions and drops expired ones.
const UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// The ledger of one target table, shared by the workers writing to it.
pub struct Ledger {
    /// The table's id in `masq.targets`.
    pub target: i32,
    pub table: String,
    pub partitions: Partitions,
    /// (name, version, digest) -> id in `masq.policy_versions`.
    policies: Mutex<HashMap<(String, String, String), i16>>,
}

impl Ledger {
    /// Finds (or registers) the table in `masq.targets`, makes the partitions of today and
    /// the next two days, and drops those past the retention. With `upkeep` false (a dry run)
    /// it changes nothing: a table never registered gets an id no entry has.
    pub async fn open(
        database: &Database,
        table: &str,
        retention: Duration,
        upkeep: bool,
    ) -> anyhow::Result<Arc<Ledger>> {
        let client = database.connect().await?;
        let what = format!("registering table {table} in masq.targets");
        let target = database
            .answer(&what, target_id(&client, table, upkeep))
            .await
            .map_err(|e| explain(e, database, "cannot register the table in masq.targets"))?;
        let ledger = Arc::new(Ledger {
            target,
            table: table.to_string(),
            partitions: Partitions::new(target, retention),
            policies: Mutex::new(HashMap::new()),
        });
        if upkeep {
            ledger.upkeep(database, &client).await?;
        }
        Ok(ledger)
    }

    /// Makes the coming days' partitions and drops expired ones; logs what it dropped.
    pub async fn upkeep(&self, database: &Database, client: &Client) -> anyhow::Result<()> {
        database
            .answer(
                "making ledger partitions",
                self.partitions.prepare_ahead(client),
            )
            .await
            .map_err(|e| explain(e, database, "cannot make ledger partitions"))?;
        let pruned = database
            .answer(
                "dropping expired ledger partitions",
                self.partitions.prune(client),
            )
            .await
            .map_err(|e| explain(e, database, "cannot drop expired ledger partitions"))?;
        for (partition, dropped) in pruned {
            if dropped {
                tracing::info!(%partition, table = %self.table, "dropped an expired ledger partition");
            } else {
                tracing::warn!(%partition, table = %self.table, "an expired ledger partition stays until the next upkeep: the ledger was busy for 2 s");
            }
        }
        Ok(())
    }

    /// Packs the given days, or those due (`packing::due`); logs and returns what it did.
    pub async fn pack(
        &self,
        database: &Database,
        client: &Client,
        days: Option<Vec<chrono::NaiveDate>>,
    ) -> anyhow::Result<Vec<packing::Packed>> {
        let days = match days {
            Some(days) => days,
            None => database
                .answer("finding ledger days to pack", packing::due(client, self.target))
                .await
                .map_err(|e| explain(e, database, "cannot find ledger days to pack"))?,
        };
        let mut done = Vec::new();
        for day in days {
            // No --pg-timeout here: a day may take minutes. This runs only on the upkeep
            // connection, never in a batch's way.
            let packed = packing::pack_day(client, self.target, day)
                .await
                .map_err(|e| explain(e.into(), database, &format!("cannot pack ledger day {day}")))?;
            let Some(packed) = packed else { continue };
            tracing::info!(table = %self.table, day = %packed.day, moved = packed.moved,
                rewritten = packed.rewritten, "packed a past day of the ledger");
            done.push(packed);
        }
        Ok(done)
    }

    /// On a connection of its own until `stop`: packs the past days due at once, then every
    /// `UPKEEP_EVERY` makes partitions ahead of time, drops old ones and packs again, so a
    /// consumer running for months keeps the ledger the size of its retention. A failure is
    /// logged and tried again next time; batches make any partition they need themselves.
    pub async fn keep_up(self: Arc<Self>, database: Database, stop: CancellationToken) {
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(UPKEEP_EVERY) => {}
                }
            }
            let result = async {
                let client = database.connect().await?;
                // Start-up made and dropped partitions already (`open`).
                if !first {
                    self.upkeep(&database, &client).await?;
                }
                self.pack(&database, &client, None).await.map(|_| ())
            };
            let result = tokio::select! {
                // Stopping abandons a pack step: its transaction rolls back, nothing is lost.
                _ = stop.cancelled() => return,
                result = result => result,
            };
            first = false;
            if let Err(e) = result {
                tracing::warn!(error = %format!("{e:#}"), table = %self.table, "ledger upkeep failed; trying again in an hour");
            }
        }
    }

    /// The id of a policy version in `masq.policy_versions`, registering it the first time.
    pub async fn policy_id(
        &self,
        client: &Client,
        provenance: &Provenance,
    ) -> Result<i16, tokio_postgres::Error> {
        let name = sql::storable(&provenance.name).into_owned();
        let version = sql::storable(&provenance.version).into_owned();
        let key = (name, version, provenance.digest.clone());
        if let Some(id) = self.policies.lock().expect("policy ids").get(&key) {
            return Ok(*id);
        }
        let (name, version, digest) = &key;
        let params = [
            (name as &(dyn postgres_types::ToSql + Sync), Type::TEXT),
            (version, Type::TEXT),
            (digest, Type::TEXT),
        ];
        // Look first: the insert takes a value of the identity sequence even when it finds
        // the row there, and a consumer that restarts often must not use them up.
        let found = client
            .query_typed(
                "SELECT id FROM masq.policy_versions WHERE name = $1 AND version = $2 AND digest = $3",
                &params,
            )
            .await?;
        let id: i16 = match found.first() {
            Some(row) => row.get(0),
            None => client
                .query_typed(
                    "INSERT INTO masq.policy_versions (name, version, digest) VALUES ($1, $2, $3) \
                     ON CONFLICT (name, version, digest) DO UPDATE SET name = EXCLUDED.name \
                     RETURNING id",
                    &params,
                )
                .await?[0]
                .get(0),
        };
        self.policies.lock().expect("policy ids").insert(key, id);
        Ok(id)
    }
}

/// The table's id in `masq.targets`, registering it the first time if `register`.
async fn target_id(
    client: &Client,
    table: &str,
    register: bool,
) -> Result<i32, tokio_postgres::Error> {
    let params = [(&table as &(dyn postgres_types::ToSql + Sync), Type::TEXT)];
    let found = client
        .query_typed("SELECT id FROM masq.targets WHERE name = $1", &params)
        .await?;
    if let Some(row) = found.first() {
        return Ok(row.get(0));
    }
    if !register {
        // Identity ids start at 1: no entry has this one.
        return Ok(0);
    }
    Ok(client
        .query_typed(
            "INSERT INTO masq.targets (name) VALUES ($1) \
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            &params,
        )
        .await?[0]
        .get(0))
}

/// A ledger error at start-up: what failed, where, and what to do.
fn explain(e: anyhow::Error, database: &Database, what: &str) -> anyhow::Error {
    let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() else {
        return e.context(what.to_string());
    };
    let code = pg.code();
    if code == Some(&SqlState::UNDEFINED_TABLE) || code == Some(&SqlState::UNDEFINED_FUNCTION) {
        anyhow!(
            "masq's ledger is missing or from an older masq in {} ({}): run `masq db init` first",
            database.describe(),
            sql::server_message(pg)
        )
    } else if code == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        anyhow!(
            "{what} in {}: {}. Grant the user masq runs as SELECT, INSERT, UPDATE on masq.targets, \
             masq.policy_versions, masq.ledger and masq.loads, SELECT on masq.ledger_packed, and \
             EXECUTE on the functions masq.ledger_prepare, masq.ledger_prune and (to pack past \
             days) masq.ledger_pack_due, masq.ledger_pack_begin, masq.ledger_pack and \
             masq.ledger_pack_finish (or run masq as their owner)",
            database.describe(),
            sql::server_message(pg)
        )
    } else {
        anyhow!(
            "{what} in {}: {}",
            database.describe(),
            sql::server_message(pg)
        )
    }
}
