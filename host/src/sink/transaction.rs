//! One batch's transaction. First the ledger: each message id is claimed (a fresh message) or
//! its dead letter is taken (a replayed one), so a message another writer already settled
//! writes nothing twice. Then the rows, by binary COPY, one COPY per shape of row. Then the
//! dead letters. A row the database refuses is found by running the batch again row by row,
//! each row under a savepoint, and becomes a dead letter; the rest is written.

use super::WriteReport;
use super::schema::{Row, TableSchema};
use super::sql::{self, ErrorClass, storable};
use crate::pipeline::batch::{Item, Provenance, Stage};
use futures_util::pin_mut;
use postgres_types::{ToSql, Type};
use std::collections::{HashMap, HashSet};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Client, Statement, Transaction};

/// Whose messages a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Messages from a source (a queue, a file): claimed in the ledger, refused ones stored
    /// as new dead letters.
    Fresh,
    /// Dead letters sent through a policy again (`masq replay`): each message's receipt is its
    /// dead-letter id; one that now passes leaves the dead letters, one that still fails stays
    /// with its new reason.
    Replay,
}

/// One message, ready for the database.
pub(super) enum Prepared {
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

pub(super) const CLAIM: &str = "INSERT INTO masq.ledger \
       (target_table, message_id, outcome, policy_name, policy_version, policy_digest, sent_at) \
     SELECT $1, t.id, t.outcome, $2, $3, $4, to_timestamp(t.sent / 1000.0) \
     FROM unnest($5::text[], $6::text[], $7::int8[]) AS t(id, outcome, sent) \
     ON CONFLICT (target_table, message_id) DO NOTHING \
     RETURNING message_id";

pub(super) const DEAD_LETTER: &str = "INSERT INTO masq.dead_letters \
       (target_table, message_id, body, reason, stage, policy_name, policy_version, \
        policy_digest, sent_at, receive_count) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::int8 / 1000.0), $10)";

/// The statements every batch uses, prepared once per connection.
pub(super) struct Statements {
    pub claim: Statement,
    pub dead_letter: Statement,
}

/// What one transaction needs to know about where it writes.
pub(super) struct Target<'a> {
    pub schema: &'a TableSchema,
    /// The table's name as the ledger and dead letters record it.
    pub name: &'a str,
    pub mode: WriteMode,
    pub statements: &'a Statements,
}

pub(super) async fn transact(
    client: &mut Client,
    target: &Target<'_>,
    items: &[Item],
    prepared: &mut [Prepared],
    provenance: &Provenance,
    row_by_row: bool,
) -> Result<WriteReport, tokio_postgres::Error> {
    let mut report = WriteReport::default();
    let mut tx = client.transaction().await?;
    if row_by_row {
        // A deferred constraint would otherwise fail the commit, for no row in particular.
        tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await?;
    }
    let ids: Vec<String> = items
        .iter()
        .map(|i| storable(&i.message.id).into_owned())
        .collect();
    let batch = Batch {
        target,
        items,
        provenance,
        ids: &ids,
    };
    let mut retired_letters: Vec<i64> = Vec::new();
    // Whether this transaction settles message i.
    let take: Vec<bool> = match target.mode {
        WriteMode::Fresh => {
            let claimed = claim(&tx, &batch, prepared).await?;
            ids.iter().map(|id| claimed.contains(id)).collect()
        }
        WriteMode::Replay => take_letters(&tx, &batch, prepared, &mut retired_letters).await?,
    };
    report.duplicates = take.iter().filter(|t| !**t).count() as u64;

    if row_by_row {
        write_rows_one_by_one(&mut tx, target, prepared, &take, &ids).await?;
    } else {
        copy_rows(&tx, target, prepared, &take).await?;
    }

    for (i, p) in prepared.iter().enumerate() {
        if !take[i] {
            continue;
        }
        match p {
            Prepared::Row(_) => report.written += 1,
            Prepared::Drop => report.dropped += 1,
            Prepared::Dead(stage, reason) => {
                report.dead_lettered += 1;
                let letter = Letter {
                    target: target.name,
                    id: &ids[i],
                    item: &items[i],
                    stage: *stage,
                    reason,
                    provenance,
                };
                match target.mode {
                    WriteMode::Fresh if row_by_row => {
                        letter
                            .insert_guarded(&mut tx, &target.statements.dead_letter)
                            .await?
                    }
                    WriteMode::Fresh => {
                        letter.insert(&tx, &target.statements.dead_letter).await?;
                    }
                    WriteMode::Replay => letter.update(&tx, letter_id(&items[i])).await?,
                }
            }
        }
        if target.mode == WriteMode::Replay && !matches!(p, Prepared::Dead(..)) {
            retired_letters.push(letter_id(&items[i]));
        }
    }
    if !retired_letters.is_empty() {
        tx.execute(
            "DELETE FROM masq.dead_letters WHERE id = ANY($1)",
            &[&retired_letters],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// The messages of one transaction, with their storable ids.
#[derive(Clone, Copy)]
struct Batch<'a> {
    target: &'a Target<'a>,
    items: &'a [Item],
    provenance: &'a Provenance,
    ids: &'a [String],
}

/// Fresh messages: claims each id in the ledger with its outcome; returns the ids claimed
/// (an id already there was settled before: a redelivery).
async fn claim(
    tx: &Transaction<'_>,
    batch: &Batch<'_>,
    prepared: &[Prepared],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let (target, items, provenance, ids) = (batch.target, batch.items, batch.provenance, batch.ids);
    let outcomes: Vec<&str> = prepared.iter().map(Prepared::outcome).collect();
    let sent: Vec<i64> = items.iter().map(|i| i.message.sent_ms as i64).collect();
    let (name, version) = (storable(&provenance.name), storable(&provenance.version));
    let digest = &provenance.digest;
    let params: [&(dyn ToSql + Sync); 7] = [
        &target.name,
        &name,
        &version,
        digest,
        &ids,
        &outcomes,
        &sent,
    ];
    Ok(tx
        .query(&target.statements.claim, &params)
        .await?
        .into_iter()
        .map(|row| row.get(0))
        .collect())
}

/// The dead-letter id a replayed message carries as its receipt.
fn letter_id(item: &Item) -> i64 {
    item.message.receipt.parse().unwrap_or(-1)
}

/// Replayed messages: locks each one's dead letter (one another replay holds is skipped),
/// and moves the ledger of each that now passes from `dead_letter` to its new outcome. A dead
/// letter whose message the ledger already shows written is stale: it is retired. Returns
/// which messages this transaction settles.
async fn take_letters(
    tx: &Transaction<'_>,
    batch: &Batch<'_>,
    prepared: &[Prepared],
    retired: &mut Vec<i64>,
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let (target, items, ids) = (batch.target, batch.items, batch.ids);
    let provenance = batch.provenance;
    let letters: Vec<i64> = items.iter().map(letter_id).collect();
    let locked: HashSet<i64> = tx
        .query(
            "SELECT id FROM masq.dead_letters WHERE id = ANY($1) AND target_table = $2 \
             FOR UPDATE SKIP LOCKED",
            &[&letters, &target.name],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let moving: Vec<usize> = (0..items.len())
        .filter(|&i| locked.contains(&letters[i]) && !matches!(prepared[i], Prepared::Dead(..)))
        .collect();
    let moving_ids: Vec<&str> = moving.iter().map(|&i| ids[i].as_str()).collect();
    let (name, version) = (storable(&provenance.name), storable(&provenance.version));
    let outcomes: Vec<&str> = moving.iter().map(|&i| prepared[i].outcome()).collect();
    let moved: HashSet<String> = tx
        .query(
            "UPDATE masq.ledger l SET outcome = t.outcome, policy_name = $2, policy_version = $3, \
               policy_digest = $4, processed_at = now() \
             FROM unnest($5::text[], $6::text[]) AS t(id, outcome) \
             WHERE l.target_table = $1 AND l.message_id = t.id AND l.outcome = 'dead_letter' \
             RETURNING l.message_id",
            &[
                &target.name,
                &name,
                &version,
                &provenance.digest,
                &moving_ids,
                &outcomes,
            ],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    Ok((0..items.len())
        .map(|i| {
            if !locked.contains(&letters[i]) {
                return false;
            }
            if matches!(prepared[i], Prepared::Dead(..)) || moved.contains(&ids[i]) {
                return true;
            }
            retired.push(letters[i]);
            false
        })
        .collect())
}

fn column_list(schema: &TableSchema, columns: &[usize]) -> String {
    columns
        .iter()
        .map(|&c| sql::ident(&schema.columns[c].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distinct column sets of the rows to write, in order of first appearance.
fn shapes<'a>(prepared: &'a [Prepared], take: &[bool]) -> Vec<&'a [usize]> {
    let mut shapes: Vec<&[usize]> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        if let Prepared::Row(row) = p
            && take[i]
            && !shapes.contains(&row.columns.as_slice())
        {
            shapes.push(&row.columns);
        }
    }
    shapes
}

fn insert_sql(schema: &TableSchema, shape: &[usize]) -> String {
    let table = schema.table.quoted();
    if shape.is_empty() {
        return format!("INSERT INTO {table} DEFAULT VALUES");
    }
    let params = (1..=shape.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({}) VALUES ({params})",
        column_list(schema, shape)
    )
}

/// Every row by binary COPY, one COPY per shape (most batches have one).
async fn copy_rows(
    tx: &Transaction<'_>,
    target: &Target<'_>,
    prepared: &[Prepared],
    take: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let schema = target.schema;
    for shape in shapes(prepared, take) {
        let rows = prepared.iter().enumerate().filter_map(|(i, p)| match p {
            Prepared::Row(row) if take[i] && row.columns == shape => Some(row),
            _ => None,
        });
        if shape.is_empty() {
            // Nothing to COPY: every column takes its default.
            let insert = insert_sql(schema, shape);
            for _ in rows {
                tx.execute(&insert, &[]).await?;
            }
            continue;
        }
        let types: Vec<Type> = shape
            .iter()
            .map(|&c| schema.columns[c].ty.clone())
            .collect();
        let sink = tx
            .copy_in(&format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                schema.table.quoted(),
                column_list(schema, shape)
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
    Ok(())
}

/// Every row by its own INSERT under a savepoint: a row the database refuses becomes a dead
/// letter with the database's reason, and its ledger entry says so.
async fn write_rows_one_by_one(
    tx: &mut Transaction<'_>,
    target: &Target<'_>,
    prepared: &mut [Prepared],
    take: &[bool],
    ids: &[String],
) -> Result<(), tokio_postgres::Error> {
    let mut inserts: HashMap<Vec<usize>, Statement> = HashMap::new();
    for shape in shapes(prepared, take) {
        let statement = tx.prepare(&insert_sql(target.schema, shape)).await?;
        inserts.insert(shape.to_vec(), statement);
    }
    for i in 0..prepared.len() {
        let Prepared::Row(row) = &prepared[i] else {
            continue;
        };
        if !take[i] {
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
                    &[&target.name, &ids[i]],
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

    /// A replayed message that still fails: its dead letter stays, with the new reason.
    async fn update(&self, tx: &Transaction<'_>, letter: i64) -> Result<(), tokio_postgres::Error> {
        tx.execute(
            "UPDATE masq.dead_letters SET reason = $2, stage = $3, policy_name = $4, \
               policy_version = $5, policy_digest = $6, dead_lettered_at = now() WHERE id = $1",
            &[
                &letter,
                &storable(self.reason),
                &self.stage.as_str(),
                &storable(&self.provenance.name),
                &storable(&self.provenance.version),
                &self.provenance.digest,
            ],
        )
        .await
        .map(|_| ())
    }
}
