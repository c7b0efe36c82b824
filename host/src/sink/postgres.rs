//! `PostgresSink`: the pipeline's sink. It keeps one connection (made again when it breaks or
//! times out), runs each batch's transaction within the database timeout, and sorts every
//! failure: a row's fault becomes that row's dead letter, a passing fault is retried by the
//! worker, and a fault of the setup stops masq with what to fix.

use super::database::Database;
use super::schema::TableSchema;
use super::sql::{self, ErrorClass};
use super::transaction::{self, Prepared, Statements, Target};
use super::{Sink, WriteError, WriteReport};
use crate::pipeline::batch::{Item, Provenance, Stage, Verdict, verdict_json};
use anyhow::{Context, anyhow};
use std::collections::HashSet;
use std::sync::Arc;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

pub use super::transaction::WriteMode;

pub struct PostgresSink {
    database: Database,
    schema: Arc<TableSchema>,
    target: String,
    mode: WriteMode,
    /// `None` after a timeout or a broken connection: the next batch connects again.
    connection: Option<Connection>,
}

struct Connection {
    client: Client,
    statements: Statements,
}

impl PostgresSink {
    /// Connects now, so a bad DATABASE_URL or missing tables fail the start, not a batch.
    pub async fn connect(
        database: &Database,
        schema: Arc<TableSchema>,
        mode: WriteMode,
    ) -> anyhow::Result<PostgresSink> {
        let connection = open(database).await?;
        Ok(PostgresSink {
            database: database.clone(),
            target: schema.table.to_string(),
            schema,
            mode,
            connection: Some(connection),
        })
    }

    /// The connection, made again if it broke or was dropped.
    async fn connection(&mut self) -> Result<&mut Connection, WriteError> {
        if self
            .connection
            .as_ref()
            .is_none_or(|c| c.client.is_closed())
        {
            self.connection = None;
            let connection = open(&self.database).await.map_err(|e| {
                let why = format!("{e:#}");
                match e.downcast_ref::<tokio_postgres::Error>().map(sql::classify) {
                    Some(ErrorClass::Permanent) => WriteError::Permanent(why),
                    _ => WriteError::Transient(why),
                }
            })?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    fn prepare(&self, items: &[Item]) -> Vec<Prepared> {
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
        let timeout = self.database.timeout;
        let (schema, name, mode) = (self.schema.clone(), self.target.clone(), self.mode);
        let connection = self.connection().await?;
        let target = Target {
            schema: &schema,
            name: &name,
            mode,
            statements: &connection.statements,
        };
        let client = &mut connection.client;
        let first = tokio::time::timeout(
            timeout,
            transaction::transact(client, &target, items, &mut prepared, provenance, false),
        )
        .await;
        let result = match first {
            Ok(Err(e)) if sql::classify(&e) == ErrorClass::Data => {
                // A row broke a constraint the catalog does not show us (CHECK, UNIQUE, a
                // trigger): find it row by row instead of failing the batch.
                tracing::warn!(table = %name, error = %sql::server_message(&e), "batch refused by PostgreSQL; retrying row by row");
                tokio::time::timeout(
                    timeout,
                    transaction::transact(client, &target, items, &mut prepared, provenance, true),
                )
                .await
            }
            other => other,
        };
        match result {
            Ok(Ok(report)) => Ok(report),
            Err(_) => Err(WriteError::Transient(format!(
                "PostgreSQL at {} did not answer within {} s (--pg-timeout) while writing a batch \
                 of {} messages to table {name}: check the server's load and locks, and the network",
                self.database.describe(),
                timeout.as_secs_f64(),
                items.len(),
            ))),
            Ok(Err(e)) => Err(match sql::classify(&e) {
                ErrorClass::Transient => WriteError::Transient(format!(
                    "cannot write a batch to table {name}: {}",
                    sql::server_message(&e)
                )),
                ErrorClass::Permanent => WriteError::Permanent(format!(
                    "PostgreSQL refused to write to table {name}: {}",
                    sql::permanent_advice(&e, &name)
                )),
                // Every row and dead letter of the row-by-row pass runs under its own
                // savepoint, so a data error that still escapes is not any one row's fault.
                ErrorClass::Data => WriteError::Permanent(format!(
                    "PostgreSQL refused a batch for table {name} even row by row: {} (SQLSTATE {}). \
                     Check deferred constraints and triggers on the table",
                    sql::server_message(&e),
                    e.code().map(|c| c.code()).unwrap_or("")
                )),
            }),
        }
    }
}

/// Connects and prepares the statements every batch uses.
async fn open(database: &Database) -> anyhow::Result<Connection> {
    let client = database.connect().await?;
    let missing_tables = |e: anyhow::Error| match e.downcast_ref::<tokio_postgres::Error>() {
        Some(pg) if pg.code() == Some(&SqlState::UNDEFINED_TABLE) => anyhow!(
            "masq's ledger and dead-letter tables are missing in {}: run `masq db init` first",
            database.describe()
        ),
        _ => e.context("cannot prepare masq's statements"),
    };
    let prepare = async |sql| {
        let what = "preparing masq's statements";
        database
            .answer(what, client.prepare(sql))
            .await
            .map_err(missing_tables)
    };
    let claim = prepare(transaction::CLAIM).await?;
    let dead_letter = prepare(transaction::DEAD_LETTER).await?;
    Ok(Connection {
        client,
        statements: Statements { claim, dead_letter },
    })
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
            self.connection = None;
        }
        result
    }

    /// Misfits are shown as sink dead letters and messages the ledger already has as
    /// duplicates. Reads the ledger, writes nothing.
    async fn preview(&mut self, items: &[Item]) -> anyhow::Result<Vec<serde_json::Value>> {
        let database = self.database.clone();
        let (target, schema) = (self.target.clone(), self.schema.clone());
        let connection = self.connection().await.map_err(|e| anyhow!("{e}"))?;
        let ids: Vec<&str> = items.iter().map(|i| i.message.id.as_str()).collect();
        let known: HashSet<String> = database
            .answer(
                "reading the ledger",
                connection.client.query(
                    "SELECT message_id FROM masq.ledger WHERE target_table = $1 AND message_id = ANY($2)",
                    &[&target, &ids],
                ),
            )
            .await
            .context("cannot read the ledger")?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        Ok(items
            .iter()
            .map(|item| {
                let id = &item.message.id;
                if known.contains(id) {
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
