//! `PostgresSink`: writes one batch in one transaction: ledger rows first (claiming each
//! message id, so a redelivered message writes nothing twice), then the rows by binary COPY,
//! then the dead letters. Nothing is acknowledged to the queue before this commits.

use super::schema::{Row, TableSchema};
use super::sql::{self, ErrorClass, storable};
use crate::batch::{Item, Provenance, Stage, Verdict, verdict_json};
use anyhow::{Context, anyhow, bail};
use futures_util::pin_mut;
use postgres_types::{ToSql, Type};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement, Transaction};

/// Where PostgreSQL is and how long masq waits for it. A server that accepts connections but
/// never answers must cost a log line after these times, never a silent hang.
#[derive(Clone)]
pub struct Database {
    url: String,
    config: tokio_postgres::Config,
    /// Longest a connection (TCP, TLS-less startup, authentication) may take.
    pub connect_timeout: Duration,
    /// Longest one request may go unanswered: a query, or the whole of a batch's transaction.
    pub timeout: Duration,
}

impl std::fmt::Debug for Database {
    // Never the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", describe(&self.config))
    }
}

impl Database {
    /// Parses the connection string; an error says what a good one looks like.
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Database> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow!("DATABASE_URL is not a PostgreSQL connection string ({e}); e.g. postgres://user@localhost:5432/app"))?;
        config.connect_timeout(connect_timeout);
        // A peer that vanishes without closing the connection is noticed by the kernel too.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        Ok(Database {
            url: url.to_string(),
            config,
            connect_timeout,
            timeout,
        })
    }

    /// With the default timeouts (10 s to connect, 30 s per request).
    pub fn with_defaults(url: &str) -> anyhow::Result<Database> {
        Database::new(url, Duration::from_secs(10), Duration::from_secs(30))
    }

    /// `user@host:port/db`, for messages: no password.
    pub fn describe(&self) -> String {
        describe(&self.config)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects, with an error that says where and what to do, never with the password.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let connecting = self.config.connect(NoTls);
        let (client, connection) = match tokio::time::timeout(self.connect_timeout, connecting)
            .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => bail!(
                "cannot reach PostgreSQL at {} ({}): start it with `just services`, or check DATABASE_URL",
                self.describe(),
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string())
            ),
            Err(_) => bail!(
                "PostgreSQL at {} did not answer within {} s (--pg-connect-timeout): check that the \
                 server is up and answering at that address, and DATABASE_URL",
                self.describe(),
                self.connect_timeout.as_secs_f64()
            ),
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    /// Runs `request` on `what`, failing after `timeout` with a message naming both.
    pub async fn answer<T, E: Into<anyhow::Error>>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => bail!(
                "PostgreSQL at {} did not answer within {} s (--pg-timeout) while {what}: check the \
                 server's load and locks, and the network",
                self.describe(),
                self.timeout.as_secs_f64()
            ),
        }
    }
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

impl WriteReport {
    pub fn add(&mut self, other: WriteReport) {
        self.written += other.written;
        self.dropped += other.dropped;
        self.dead_lettered += other.dead_lettered;
        self.duplicates += other.duplicates;
    }
}

/// Why a batch was not written. Data errors never get here: their rows become dead letters.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Worth retrying the same batch: the connection, a lock, a restart, a timeout.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: the message says what to fix.
    #[error("{0}")]
    Permanent(String),
}

pub struct PostgresSink {
    client: Client,
    database: Database,
    schema: Arc<TableSchema>,
    target: String,
    claim: Statement,
    dead_letter: Statement,
}

/// One message, ready for the database.
enum Prepared {
    Row(Row),
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

const CLAIM: &str = "INSERT INTO masq.ledger \
       (target_table, message_id, outcome, policy_name, policy_version, policy_digest, sent_at) \
     SELECT $1, t.id, t.outcome, $2, $3, $4, to_timestamp(t.sent / 1000.0) \
     FROM unnest($5::text[], $6::text[], $7::int8[]) AS t(id, outcome, sent) \
     ON CONFLICT (target_table, message_id) DO NOTHING \
     RETURNING message_id";

const DEAD_LETTER: &str = "INSERT INTO masq.dead_letters \
       (target_table, message_id, body, reason, stage, policy_name, policy_version, \
        policy_digest, sent_at, receive_count) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::int8 / 1000.0), $10)";

impl PostgresSink {
    /// Connects and checks that masq's tables exist.
    pub async fn connect(
        database: &Database,
        schema: Arc<TableSchema>,
    ) -> anyhow::Result<PostgresSink> {
        let client = database.connect().await?;
        let missing_tables = |e: anyhow::Error| match e.downcast_ref::<tokio_postgres::Error>() {
            Some(pg) if pg.code() == Some(&SqlState::UNDEFINED_TABLE) => anyhow!(
                "masq's ledger and dead-letter tables are missing in {}: run `masq db init` first",
                database.describe()
            ),
            _ => anyhow!("cannot prepare masq's statements: {e:#}"),
        };
        let claim = database
            .answer("preparing the ledger statement", client.prepare(CLAIM))
            .await
            .map_err(missing_tables)?;
        let dead_letter = database
            .answer(
                "preparing the dead-letter statement",
                client.prepare(DEAD_LETTER),
            )
            .await
            .map_err(missing_tables)?;
        let target = schema.table.to_string();
        Ok(PostgresSink {
            client,
            database: database.clone(),
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

    pub fn database(&self) -> &Database {
        &self.database
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
    /// On return the batch is committed and every message in it may be acknowledged. A row
    /// the database refuses is found row by row and becomes a dead letter; the rest is
    /// written. Bounded by the database's timeout: a silent server is a transient error.
    pub async fn write(
        &mut self,
        items: &[Item],
        provenance: &Provenance,
    ) -> Result<WriteReport, WriteError> {
        let mut prepared: Vec<Prepared> = items
            .iter()
            .map(|item| match &item.verdict {
                Verdict::Row(fields) => match self.schema.row(fields) {
                    Ok(row) => Prepared::Row(row),
                    Err(reason) => Prepared::Dead(Stage::Sink, reason),
                },
                Verdict::Drop => Prepared::Drop,
                Verdict::Dead { stage, reason } => Prepared::Dead(*stage, reason.clone()),
            })
            .collect();
        let timeout = self.database.timeout;
        let first = tokio::time::timeout(
            timeout,
            self.transact(items, &mut prepared, provenance, false),
        )
        .await;
        let result = match first {
            Ok(Err(e)) if sql::classify(&e) == ErrorClass::Data => {
                // A row broke a constraint the catalog does not show us (CHECK, UNIQUE, a
                // trigger): find it row by row instead of failing the batch.
                tracing::warn!(table = %self.target, error = %sql::server_message(&e), "batch refused by PostgreSQL; retrying row by row");
                tokio::time::timeout(
                    timeout,
                    self.transact(items, &mut prepared, provenance, true),
                )
                .await
            }
            other => other,
        };
        match result {
            Ok(Ok(report)) => Ok(report),
            Err(_) => Err(WriteError::Transient(format!(
                "PostgreSQL at {} did not answer within {} s (--pg-timeout) while writing a batch \
                 of {} messages to table {}: check the server's load and locks, and the network",
                self.database.describe(),
                timeout.as_secs_f64(),
                items.len(),
                self.target
            ))),
            Ok(Err(e)) => Err(match sql::classify(&e) {
                ErrorClass::Transient => WriteError::Transient(format!(
                    "cannot write a batch to table {}: {}",
                    self.target,
                    sql::server_message(&e)
                )),
                ErrorClass::Permanent => WriteError::Permanent(format!(
                    "PostgreSQL refused to write to table {}: {}",
                    self.target,
                    sql::permanent_advice(&e, &self.target)
                )),
                // Every row and dead letter of the row-by-row pass runs under its own
                // savepoint, so a data error that still escapes is not any one row's fault.
                ErrorClass::Data => WriteError::Permanent(format!(
                    "PostgreSQL refused a batch for table {} even row by row: {} (SQLSTATE {}). \
                     Check deferred constraints and triggers on the table",
                    self.target,
                    sql::server_message(&e),
                    e.code().map(|c| c.code()).unwrap_or("")
                )),
            }),
        }
    }

    /// What `write` would do, without writing: one JSON line per message (see
    /// `batch::verdict_json`), with misfits shown as sink dead letters and messages the
    /// ledger already has shown as duplicates. Reads the ledger, writes nothing.
    pub async fn preview(&self, items: &[Item]) -> anyhow::Result<Vec<serde_json::Value>> {
        let ids: Vec<&str> = items.iter().map(|i| i.message.id.as_str()).collect();
        let known: HashSet<String> = self
            .database
            .answer(
                "reading the ledger",
                self.client.query(
                    "SELECT message_id FROM masq.ledger WHERE target_table = $1 AND message_id = ANY($2)",
                    &[&self.target, &ids],
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
                    Verdict::Row(fields) => match self.schema.row(fields) {
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
        provenance: &Provenance,
        row_by_row: bool,
    ) -> Result<WriteReport, tokio_postgres::Error> {
        let mut report = WriteReport::default();
        let mut tx = self.client.transaction().await?;
        if row_by_row {
            // A deferred constraint would otherwise fail the commit, for no row in particular.
            tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await?;
        }

        let ids: Vec<String> = items
            .iter()
            .map(|i| storable(&i.message.id).into_owned())
            .collect();
        let outcomes: Vec<&str> = prepared.iter().map(Prepared::outcome).collect();
        let sent: Vec<i64> = items.iter().map(|i| i.message.sent_ms as i64).collect();
        let claimed: HashSet<String> = tx
            .query(
                &self.claim,
                &[
                    &self.target,
                    &storable(&provenance.name),
                    &storable(&provenance.version),
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
        let fresh = |i: usize| claimed.contains(&ids[i]);

        let table = self.schema.table.quoted();
        let column_list = |columns: &[usize]| {
            columns
                .iter()
                .map(|&c| sql::ident(&self.schema.columns[c].name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Rows of one shape (the same columns) go together; most batches have one shape.
        let mut shapes: Vec<&[usize]> = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            if let Prepared::Row(row) = p
                && fresh(i)
                && !shapes.contains(&row.columns.as_slice())
            {
                shapes.push(&row.columns);
            }
        }
        if row_by_row {
            let mut inserts: HashMap<Vec<usize>, Statement> = HashMap::new();
            for shape in &shapes {
                let sql = if shape.is_empty() {
                    format!("INSERT INTO {table} DEFAULT VALUES")
                } else {
                    let params = (1..=shape.len())
                        .map(|n| format!("${n}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!(
                        "INSERT INTO {table} ({}) VALUES ({params})",
                        column_list(shape)
                    )
                };
                inserts.insert(shape.to_vec(), tx.prepare(&sql).await?);
            }
            for i in 0..items.len() {
                let Prepared::Row(row) = &prepared[i] else {
                    continue;
                };
                if !fresh(i) {
                    continue;
                }
                let params: Vec<&(dyn ToSql + Sync)> =
                    row.cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                let sp = tx.savepoint("masq_row").await?;
                match sp.execute(&inserts[&row.columns], &params).await {
                    Ok(_) => sp.commit().await?,
                    Err(e) if sql::classify(&e) == ErrorClass::Data => {
                        sp.rollback().await?;
                        prepared[i] = Prepared::Dead(
                            Stage::Sink,
                            storable(&format!(
                                "PostgreSQL refused the row: {}",
                                sql::server_message(&e)
                            ))
                            .into_owned(),
                        );
                        tx.execute(
                            "UPDATE masq.ledger SET outcome = 'dead_letter' WHERE target_table = $1 AND message_id = $2",
                            &[&self.target, &ids[i]],
                        )
                        .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            for shape in &shapes {
                let rows = prepared.iter().enumerate().filter_map(|(i, p)| match p {
                    Prepared::Row(row) if fresh(i) && row.columns == *shape => Some(row),
                    _ => None,
                });
                if shape.is_empty() {
                    // Nothing to COPY: every column takes its default.
                    let insert = format!("INSERT INTO {table} DEFAULT VALUES");
                    for _ in rows {
                        tx.execute(&insert, &[]).await?;
                    }
                    continue;
                }
                let types: Vec<Type> = shape
                    .iter()
                    .map(|&c| self.schema.columns[c].ty.clone())
                    .collect();
                let sink = tx
                    .copy_in(&format!(
                        "COPY {table} ({}) FROM STDIN (FORMAT binary)",
                        column_list(shape)
                    ))
                    .await?;
                let writer = BinaryCopyInWriter::new(sink, &types);
                pin_mut!(writer);
                for row in rows {
                    let cells: Vec<&(dyn ToSql + Sync)> =
                        row.cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                    writer.as_mut().write(&cells).await?;
                }
                writer.finish().await?;
            }
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
                    let letter = Letter {
                        target: &self.target,
                        id: &ids[i],
                        item: &items[i],
                        stage: *stage,
                        reason,
                        provenance,
                    };
                    if row_by_row {
                        letter.insert_guarded(&mut tx, &self.dead_letter).await?;
                    } else {
                        letter.insert(&tx, &self.dead_letter).await?;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// One dead letter on its way into `masq.dead_letters`.
#[derive(Clone, Copy)]
struct Letter<'a> {
    target: &'a str,
    id: &'a str,
    item: &'a Item,
    stage: Stage,
    reason: &'a str,
    provenance: &'a Provenance,
}

impl Letter<'_> {
    async fn insert(
        &self,
        tx: &Transaction<'_>,
        statement: &Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        let m = &self.item.message;
        tx.execute(
            statement,
            &[
                &self.target,
                &self.id,
                &storable(&m.body),
                &storable(self.reason),
                &self.stage.as_str(),
                &storable(&self.provenance.name),
                &storable(&self.provenance.version),
                &self.provenance.digest,
                &(m.sent_ms as i64),
                &(m.receive_count as i32),
            ],
        )
        .await
    }

    /// As `insert`, under a savepoint: should the database still refuse the letter (a
    /// trigger, a constraint added by hand), it is stored with its reason replaced by the
    /// refusal, so the message is kept and the batch goes on.
    async fn insert_guarded(
        &self,
        tx: &mut Transaction<'_>,
        statement: &Statement,
    ) -> Result<(), tokio_postgres::Error> {
        let sp = tx.savepoint("masq_letter").await?;
        match self.insert(&sp, statement).await {
            Ok(_) => sp.commit().await,
            Err(e) if sql::classify(&e) == ErrorClass::Data => {
                sp.rollback().await?;
                let reason = format!(
                    "the dead letter itself was refused by PostgreSQL ({}); its first reason is lost",
                    sql::server_message(&e)
                );
                Letter {
                    reason: &reason,
                    ..*self
                }
                .insert(tx, statement)
                .await
                .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}
