//! `PostgresSink`: the pipeline's sink. It keeps one connection (made again when it breaks or
//! times out), runs each batch's transaction within the database timeout, and sorts every
//! failure: a row's fault becomes that row's dead letter, a passing fault is retried by the
//! worker, and a fault of the setup stops masq with what to fix.
//!
//! Nothing is prepared on the connection outside a transaction: every statement is parsed in
//! the transaction (or the single request) that runs it, so masq works behind a connection
//! pooler in transaction mode (PgBouncer), where consecutive transactions of one client may
//! run on different server connections.

use super::database::Database;
use super::ledger::Ledger;
use super::ledger::blocks::Blocks;
use super::ledger::claim::{self, Entries, Owner};
use super::ledger::key::{LedgerId, Outcome};
use super::ledger::partitions::day_of;
use super::letter_body::LetterBodies;
use super::schema::TableSchema;
use super::sql::{self, ErrorClass};
use super::transaction::{self, Attempt, ClaimBy, Prepared, Target};
use super::{Sink, WriteError, WriteReport};
use crate::pipeline::batch::{Item, Provenance, Stage, Verdict, verdict_json};
use anyhow::{Context, anyhow};
use std::sync::Arc;
use tokio_postgres::Client;

pub use super::transaction::WriteMode;

pub struct PostgresSink {
    database: Database,
    schema: Arc<TableSchema>,
    ledger: Arc<Ledger>,
    target: String,
    mode: WriteMode,
    /// How dead-letter bodies are kept (sealed with a key file).
    bodies: LetterBodies,
    /// `None` after a timeout or a broken connection: the next batch connects again.
    client: Option<Client>,
    /// How the next batch claims its messages first. Redeliveries come in runs (a load run
    /// again, a consumer that crashed before deleting): after a batch with duplicates, claim
    /// by INSERT until a batch has none, rather than COPY, fail and claim again each time.
    claim: ClaimBy,
}

impl PostgresSink {
    /// Connects now, so a bad DATABASE_URL fails the start, not a batch.
    pub async fn connect(
        database: &Database,
        schema: Arc<TableSchema>,
        ledger: Arc<Ledger>,
        mode: WriteMode,
        bodies: LetterBodies,
    ) -> anyhow::Result<PostgresSink> {
        let client = database.connect().await?;
        Ok(PostgresSink {
            database: database.clone(),
            target: schema.table.to_string(),
            schema,
            ledger,
            mode,
            bodies,
            client: Some(client),
            claim: ClaimBy::Copy,
        })
    }

    /// The connection, made again if it broke or was dropped.
    async fn client(&mut self) -> Result<&mut Client, WriteError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let client = self
                .database
                .connect()
                .await
                .map_err(|e| WriteError::Transient(format!("{e:#}")))?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn prepare<'a>(&self, items: &'a [Item]) -> Vec<Prepared<'a>> {
        items
            .iter()
            .map(|item| match &item.verdict {
                Verdict::Row(fields) => match self.schema.row(fields) {
                    Ok(row) => Prepared::Row(row),
                    Err(reason) => Prepared::Dead(Stage::Sink, reason),
                },
                Verdict::Drop => Prepared::Drop,
                Verdict::Dead { stage, reason } => Prepared::Dead(*stage, reason.clone()),
            })
            .collect()
    }

    async fn try_write(
        &mut self,
        items: &[Item],
        provenance: &Provenance,
    ) -> Result<WriteReport, WriteError> {
        let mut prepared = self.prepare(items);
        let (database, ledger) = (self.database.clone(), self.ledger.clone());
        let (schema, name, mode) = (self.schema.clone(), self.target.clone(), self.mode);
        let bodies = self.bodies.clone();
        let client = self.client().await?;
        // What the transaction needs from the ledger, each its own short request: the policy
        // version's id, and a partition for every day the batch's messages were sent on.
        let before = async {
            let policy = ledger.policy_id(client, provenance).await?;
            let days = items.iter().map(|i| day_of(i.message.sent_ms));
            ledger.partitions.ensure(client, days).await?;
            Ok::<_, tokio_postgres::Error>(policy)
        };
        let policy = match tokio::time::timeout(database.timeout, before).await {
            Ok(Ok(policy)) => policy,
            Ok(Err(e)) => return Err(self.sorted(e, items.len())),
            Err(_) => return Err(self.timed_out(items.len())),
        };
        let target = Target {
            schema: &schema,
            name: &name,
            mode,
            owner: Owner {
                target: ledger.target,
                policy,
            },
            bodies: &bodies,
        };
        let client = self.client.as_mut().expect("connected above");
        let mut attempt = Attempt {
            claim: self.claim,
            row_by_row: false,
        };
        let result = loop {
            let run =
                transaction::transact(client, &target, items, &mut prepared, provenance, attempt);
            match tokio::time::timeout(database.timeout, run).await {
                // Some message was claimed before (a redelivery): claim the batch again, in a
                // way that skips what is claimed.
                Ok(Err(e)) if attempt.claim == ClaimBy::Copy && claim::is_conflict(&e) => {
                    attempt.claim = ClaimBy::Insert;
                }
                Ok(Err(e))
                    if !attempt.row_by_row
                        && sql::classify(&e) == ErrorClass::Data
                        && !claim::is_missing_partition(&e) =>
                {
                    // A row broke a constraint the catalog does not show us (CHECK, UNIQUE, a
                    // trigger): find it row by row instead of failing the batch.
                    tracing::warn!(table = %name, error = %sql::server_message(&e), "batch refused by PostgreSQL; retrying row by row");
                    attempt.row_by_row = true;
                }
                other => break other,
            }
        };
        match result {
            Ok(Ok(report)) => {
                self.claim = if report.duplicates > 0 {
                    ClaimBy::Insert
                } else {
                    ClaimBy::Copy
                };
                Ok(report)
            }
            Err(_) => Err(self.timed_out(items.len())),
            Ok(Err(e)) => Err(self.sorted(e, items.len())),
        }
    }

    fn timed_out(&self, messages: usize) -> WriteError {
        WriteError::Transient(format!(
            "PostgreSQL at {} did not answer within {} s (--pg-timeout) while writing a batch \
             of {messages} messages to table {}: check the server's load and locks, and the network",
            self.database.describe(),
            self.database.timeout.as_secs_f64(),
            self.target,
        ))
    }

    /// What the worker should do about an error of a batch.
    fn sorted(&self, e: tokio_postgres::Error, messages: usize) -> WriteError {
        let name = &self.target;
        if claim::is_missing_partition(&e) {
            // Another consumer, with a shorter --ledger-retention, dropped a partition this one
            // knew: the next attempt makes it again.
            self.ledger.partitions.forget();
            return WriteError::Transient(format!(
                "a ledger partition of table {name} was dropped while a batch of {messages} messages \
                 was written ({}); is another consumer running with a shorter --ledger-retention?",
                sql::server_message(&e)
            ));
        }
        match sql::classify(&e) {
            ErrorClass::Transient => WriteError::Transient(format!(
                "cannot write a batch to table {name}: {}",
                sql::server_message(&e)
            )),
            ErrorClass::Permanent => WriteError::Permanent(format!(
                "PostgreSQL refused to write to table {name}: {}",
                sql::permanent_advice(&e, name)
            )),
            // Every row and dead letter of the row-by-row pass runs under its own savepoint,
            // so a data error that still escapes is not any one row's fault.
            ErrorClass::Data => WriteError::Permanent(format!(
                "PostgreSQL refused a batch for table {name} even row by row: {} (SQLSTATE {}). \
                 Check deferred constraints and triggers on the table",
                sql::server_message(&e),
                e.code().map(|c| c.code()).unwrap_or("")
            )),
        }
    }
}

impl Sink for PostgresSink {
    /// Writes a batch in one transaction, within the database timeout. A transient failure
    /// drops the connection: a statement may still run on it, and the next attempt starts on
    /// a fresh one.
    async fn write(
        &mut self,
        items: &[Item],
        provenance: &Provenance,
    ) -> Result<WriteReport, WriteError> {
        let result = self.try_write(items, provenance).await;
        if matches!(result, Err(WriteError::Transient(_))) {
            self.client = None;
        }
        result
    }

    /// Misfits are shown as sink dead letters and messages the ledger already has as
    /// duplicates. Reads the ledger, writes nothing.
    async fn preview(&mut self, items: &[Item]) -> anyhow::Result<Vec<serde_json::Value>> {
        let (database, ledger, schema) = (
            self.database.clone(),
            self.ledger.clone(),
            self.schema.clone(),
        );
        let client = self.client().await.map_err(|e| anyhow!("{e}"))?;
        let keys: Vec<LedgerId> = items
            .iter()
            .map(|i| LedgerId::of(&sql::storable(&i.message.id)))
            .collect();
        let mut entries = Entries::default();
        for (item, key) in items.iter().zip(&keys) {
            entries.push(item.message.sent_ms, key, Outcome::Written);
        }
        let mut blocks = Blocks::of(items.len(), |i| {
            let id = keys[i].text.as_deref().unwrap_or("");
            (id, items[i].message.sent_ms, Outcome::Written)
        });
        let known = database
            .answer("reading the ledger", async {
                // Entries of their own (SQS ids, lines from before blocks), then blocks.
                let mut known = claim::known(client, ledger.target, &entries).await?;
                let all: Vec<usize> = (0..blocks.blocks.len()).collect();
                blocks.read(client, ledger.target, &all, false).await?;
                known.extend(
                    (0..items.len())
                        .filter(|&i| blocks.takes(i) == Some(false))
                        .map(|i| keys[i].uuid),
                );
                Ok::<_, tokio_postgres::Error>(known)
            })
            .await
            .context("cannot read the ledger")?;
        Ok(items
            .iter()
            .zip(&keys)
            .map(|(item, key)| {
                let id = &item.message.id;
                if known.contains(&key.uuid) {
                    return serde_json::json!({ "id": id, "duplicate": true });
                }
                match &item.verdict {
                    Verdict::Row(fields) => match schema.row(fields) {
                        Ok(_) => verdict_json(id, &item.verdict),
                        Err(reason) => verdict_json(
                            id,
                            &Verdict::Dead {
                                stage: Stage::Sink,
                                reason,
                            },
                        ),
                    },
                    other => verdict_json(id, other),
                }
            })
            .collect())
    }
}
