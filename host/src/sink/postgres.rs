//! `PostgresSink`: writes one batch in one transaction: ledger rows first (claiming each
//! message id, so a redelivered message writes nothing twice), then the rows by binary COPY,
//! then the dead letters. Nothing is acknowledged to the queue before this commits.

use super::schema::{Cell, TableSchema};
use crate::batch::{Item, Provenance, Stage, Verdict, verdict_json};
use anyhow::{Context, anyhow};
use futures_util::pin_mut;
use postgres_types::{ToSql, Type};
use std::collections::HashSet;
use std::sync::Arc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

/// Connects, with an error that says where and what to do, never with the password.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow!("DATABASE_URL is not a PostgreSQL connection string ({e}); e.g. postgres://user@localhost:5432/app"))?;
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        anyhow!(
            "cannot reach PostgreSQL at {} ({}): start it with `just services`, or check DATABASE_URL",
            describe(&config),
            e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// `user@host:port/db`, for messages: no password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("(default user)"),
        config.get_dbname().unwrap_or("(default database)")
    )
}

/// What one committed batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    pub written: u64,
    pub dropped: u64,
    pub dead_lettered: u64,
    /// Messages whose id the ledger already had: redeliveries, written before.
    pub duplicates: u64,
}

pub struct PostgresSink {
    client: Client,
    schema: Arc<TableSchema>,
    target: String,
    claim: Statement,
    dead_letter: Statement,
}

/// One message, ready for the database.
enum Prepared {
    Row(Vec<Cell>),
    Drop,
    Dead(Stage, String),
}

impl Prepared {
    fn outcome(&self) -> &'static str {
        match self {
            Prepared::Row(_) => "written",
            Prepared::Drop => "dropped",
            Prepared::Dead(..) => "dead_letter",
        }
    }
}

impl PostgresSink {
    /// Connects and checks that masq's tables exist.
    pub async fn connect(url: &str, schema: Arc<TableSchema>) -> anyhow::Result<PostgresSink> {
        let client = connect(url).await?;
        let missing_tables = |e: tokio_postgres::Error| {
            if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                anyhow!(
                    "masq's ledger and dead-letter tables are missing: run `masq db init` first"
                )
            } else {
                anyhow!("cannot prepare masq's statements: {e}")
            }
        };
        let claim = client
            .prepare(
                "INSERT INTO masq.ledger \
                   (target_table, message_id, outcome, policy_name, policy_version, policy_digest, sent_at) \
                 SELECT $1, t.id, t.outcome, $2, $3, $4, to_timestamp(t.sent / 1000.0) \
                 FROM unnest($5::text[], $6::text[], $7::int8[]) AS t(id, outcome, sent) \
                 ON CONFLICT (target_table, message_id) DO NOTHING \
                 RETURNING message_id",
            )
            .await
            .map_err(missing_tables)?;
        let dead_letter = client
            .prepare(
                "INSERT INTO masq.dead_letters \
                   (target_table, message_id, body, reason, stage, policy_name, policy_version, \
                    policy_digest, sent_at, receive_count) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::int8 / 1000.0), $10)",
            )
            .await
            .map_err(missing_tables)?;
        let target = schema.table.to_string();
        Ok(PostgresSink {
            client,
            schema,
            target,
            claim,
            dead_letter,
        })
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The target table's name as the ledger and dead letters record it.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn schema(&self) -> Arc<TableSchema> {
        self.schema.clone()
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Writes a batch in one transaction. Message ids must be unique within `items`.
    /// On return the batch is committed and every message in it may be acknowledged.
    pub async fn write(
        &mut self,
        items: &[Item],
        provenance: &Provenance,
    ) -> anyhow::Result<WriteReport> {
        let columns =
            self.schema
                .columns_written(items.iter().filter_map(|item| match &item.verdict {
                    Verdict::Row(fields) => Some(fields.as_slice()),
                    _ => None,
                }));
        let mut prepared: Vec<Prepared> = items
            .iter()
            .map(|item| match &item.verdict {
                Verdict::Row(fields) => match self.schema.cells(fields, &columns) {
                    Ok(cells) => Prepared::Row(cells),
                    Err(reason) => Prepared::Dead(Stage::Sink, reason),
                },
                Verdict::Drop => Prepared::Drop,
                Verdict::Dead { stage, reason } => Prepared::Dead(*stage, reason.clone()),
            })
            .collect();
        match self.transact(items, &mut prepared, &columns, provenance, false).await {
            Err(e) if is_data_error(&e) => {
                // A row broke a constraint the catalog does not show us (CHECK, UNIQUE,
                // a trigger): find it row by row instead of failing the batch.
                tracing::warn!(table = %self.target, error = %e, "batch refused by PostgreSQL; retrying row by row");
                self.transact(items, &mut prepared, &columns, provenance, true).await
            }
            other => other,
        }
        .with_context(|| format!("cannot write a batch to table {}", self.target))
    }

    /// What `write` would do, without writing: one JSON line per message (see
    /// `batch::verdict_json`), with misfits shown as sink dead letters and messages the
    /// ledger already has shown as duplicates. Reads the ledger, writes nothing.
    pub async fn preview(&self, items: &[Item]) -> anyhow::Result<Vec<serde_json::Value>> {
        let columns =
            self.schema
                .columns_written(items.iter().filter_map(|item| match &item.verdict {
                    Verdict::Row(fields) => Some(fields.as_slice()),
                    _ => None,
                }));
        let ids: Vec<&str> = items.iter().map(|i| i.message.id.as_str()).collect();
        let known: HashSet<String> = self
            .client
            .query(
                "SELECT message_id FROM masq.ledger WHERE target_table = $1 AND message_id = ANY($2)",
                &[&self.target, &ids],
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
                    Verdict::Row(fields) => match self.schema.cells(fields, &columns) {
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

    async fn transact(
        &mut self,
        items: &[Item],
        prepared: &mut [Prepared],
        columns: &[usize],
        provenance: &Provenance,
        row_by_row: bool,
    ) -> Result<WriteReport, tokio_postgres::Error> {
        let mut report = WriteReport::default();
        let mut tx = self.client.transaction().await?;

        let ids: Vec<&str> = items.iter().map(|i| i.message.id.as_str()).collect();
        let outcomes: Vec<&str> = prepared.iter().map(Prepared::outcome).collect();
        let sent: Vec<i64> = items.iter().map(|i| i.message.sent_ms as i64).collect();
        let claimed: HashSet<String> = tx
            .query(
                &self.claim,
                &[
                    &self.target,
                    &provenance.name,
                    &provenance.version,
                    &provenance.digest,
                    &ids,
                    &outcomes,
                    &sent,
                ],
            )
            .await?
            .into_iter()
            .map(|row| row.get(0))
            .collect();
        report.duplicates = (items.len() - claimed.len()) as u64;
        let fresh = |i: usize| claimed.contains(&items[i].message.id);

        let column_list = columns
            .iter()
            .map(|&c| format!("\"{}\"", self.schema.columns[c].name))
            .collect::<Vec<_>>()
            .join(", ");
        let table = self.schema.table.quoted();
        if row_by_row || columns.is_empty() {
            let insert = if columns.is_empty() {
                format!("INSERT INTO {table} DEFAULT VALUES")
            } else {
                let params = (1..=columns.len())
                    .map(|n| format!("${n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("INSERT INTO {table} ({column_list}) VALUES ({params})")
            };
            let insert = tx.prepare(&insert).await?;
            for i in 0..items.len() {
                let Prepared::Row(cells) = &prepared[i] else {
                    continue;
                };
                if !fresh(i) {
                    continue;
                }
                let params: Vec<&(dyn ToSql + Sync)> =
                    cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                let sp = tx.savepoint("masq_row").await?;
                match sp.execute(&insert, &params).await {
                    Ok(_) => sp.commit().await?,
                    Err(e) if is_data_error(&e) => {
                        sp.rollback().await?;
                        let why = e
                            .as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or_else(|| e.to_string());
                        prepared[i] = Prepared::Dead(
                            Stage::Sink,
                            format!("PostgreSQL refused the row: {why}"),
                        );
                        tx.execute(
                            "UPDATE masq.ledger SET outcome = 'dead_letter' WHERE target_table = $1 AND message_id = $2",
                            &[&self.target, &items[i].message.id],
                        )
                        .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        } else if prepared
            .iter()
            .enumerate()
            .any(|(i, p)| matches!(p, Prepared::Row(_)) && fresh(i))
        {
            let types: Vec<Type> = columns
                .iter()
                .map(|&c| self.schema.columns[c].ty.clone())
                .collect();
            let sink = tx
                .copy_in(&format!(
                    "COPY {table} ({column_list}) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let writer = BinaryCopyInWriter::new(sink, &types);
            pin_mut!(writer);
            for (i, p) in prepared.iter().enumerate() {
                if let Prepared::Row(cells) = p
                    && fresh(i)
                {
                    let row: Vec<&(dyn ToSql + Sync)> =
                        cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                    writer.as_mut().write(&row).await?;
                }
            }
            writer.finish().await?;
        }

        for (i, p) in prepared.iter().enumerate() {
            if !fresh(i) {
                continue;
            }
            match p {
                Prepared::Row(_) => report.written += 1,
                Prepared::Drop => report.dropped += 1,
                Prepared::Dead(stage, reason) => {
                    report.dead_lettered += 1;
                    let m = &items[i].message;
                    // PostgreSQL text cannot hold NUL; keep everything else byte for byte.
                    let body = m.body.replace('\0', "\\u0000");
                    tx.execute(
                        &self.dead_letter,
                        &[
                            &self.target,
                            &m.id,
                            &body,
                            reason,
                            &stage.as_str(),
                            &provenance.name,
                            &provenance.version,
                            &provenance.digest,
                            &(m.sent_ms as i64),
                            &(m.receive_count as i32),
                        ],
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// Errors caused by the data (class 22 data exception, class 23 integrity constraint), as
/// opposed to the connection or the server: only these are worth retrying row by row.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| code.code().starts_with("22") || code.code().starts_with("23"))
}
