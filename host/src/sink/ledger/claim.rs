//! The ledger statements of a batch's transaction. Every one names the messages' send times
//! as well as their ids, so PostgreSQL looks only into the partitions of those days, and in
//! each through its unique index on `id`. None is prepared ahead: each is parsed in the
//! transaction that runs it (unnamed, or named and closed there by COPY), which is what a
//! connection pooler in transaction mode (PgBouncer) needs.
//!
//! A fresh batch claims its messages by COPY, the cheapest way into PostgreSQL; a message
//! already claimed breaks that COPY with a unique violation, and the batch is claimed again
//! by `INSERT ... ON CONFLICT DO NOTHING`, which says which messages it took.

use super::key::{LedgerId, Outcome, Uuid};
use chrono::{DateTime, Utc};
use futures_util::pin_mut;
use postgres_types::{ToSql, Type};
use std::collections::HashSet;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Transaction};

/// Some messages' ledger entries, column by column (what COPY and `unnest` both take).
#[derive(Debug, Default, Clone)]
pub struct Entries {
    pub sent: Vec<DateTime<Utc>>,
    pub ids: Vec<Uuid>,
    pub texts: Vec<Option<String>>,
    pub outcomes: Vec<i8>,
}

impl Entries {
    pub fn push(&mut self, sent_ms: u64, id: &LedgerId, outcome: Outcome) {
        self.sent.push(sent_at(sent_ms));
        self.ids.push(id.uuid);
        self.texts.push(id.text.clone());
        self.outcomes.push(outcome.code());
    }

    /// The entries at `indexes`, in that order.
    pub fn select(&self, indexes: &[usize]) -> Entries {
        Entries {
            sent: indexes.iter().map(|&i| self.sent[i]).collect(),
            ids: indexes.iter().map(|&i| self.ids[i]).collect(),
            texts: indexes.iter().map(|&i| self.texts[i].clone()).collect(),
            outcomes: indexes.iter().map(|&i| self.outcomes[i]).collect(),
        }
    }

    /// Adds `other`'s entries after these.
    pub fn extend(&mut self, other: Entries) {
        self.sent.extend(other.sent);
        self.ids.extend(other.ids);
        self.texts.extend(other.texts);
        self.outcomes.extend(other.outcomes);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A send time in ms since the epoch as `timestamptz` (exact: PostgreSQL keeps microseconds).
pub fn sent_at(sent_ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(sent_ms as i64).unwrap_or_default()
}

/// Which table and policy version the entries are for.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub target: i32,
    pub policy: i16,
}

/// Claims every entry by binary COPY. Fails with a unique violation (see `is_conflict`) if
/// any of them was claimed before.
pub async fn copy(
    tx: &Transaction<'_>,
    owner: Owner,
    entries: &Entries,
) -> Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in(
            "COPY masq.ledger (sent_at, id, target, policy, outcome, text_id) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let types = [
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::INT4,
        Type::INT2,
        Type::CHAR,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for i in 0..entries.len() {
        let cells: [&(dyn ToSql + Sync); 6] = [
            &entries.sent[i],
            &entries.ids[i],
            &owner.target,
            &owner.policy,
            &entries.outcomes[i],
            &entries.texts[i],
        ];
        writer.as_mut().write(&cells).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Whether `e` is a claim that met an earlier one: a unique violation in a ledger partition.
pub fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::UNIQUE_VIOLATION
            && db.schema() == Some("masq")
            && db.table().is_some_and(|t| t.starts_with("ledger_"))
    })
}

/// Whether `e` says a row had no partition to go to: one was dropped under the batch.
pub fn is_missing_partition(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::CHECK_VIOLATION
            && db.message().starts_with("no partition of relation")
    })
}

/// Claims each entry that nobody claimed before, returning the ids it claimed (for
/// `returning_ids`).
pub const CLAIM: &str = "INSERT INTO masq.ledger (sent_at, id, target, policy, outcome, text_id) \
     SELECT t.sent_at, t.id, $1, $2, t.outcome, t.text_id \
     FROM unnest($3::timestamptz[], $4::uuid[], $5::\"char\"[], $6::text[]) \
       AS t(sent_at, id, outcome, text_id) \
     ON CONFLICT DO NOTHING \
     RETURNING id";

/// Replay: moves the entries still marked dead-lettered to their new outcome and policy
/// version, returning the ids it moved (for `returning_ids`). `= ANY` on both keys lets
/// PostgreSQL pick the partitions and use their index; the join keeps each id to its own send
/// time.
pub const MOVE_DEAD_LETTERS: &str = "UPDATE masq.ledger l SET outcome = t.outcome, policy = $2 \
     FROM unnest($3::timestamptz[], $4::uuid[], $5::\"char\"[]) AS t(sent_at, id, outcome) \
     WHERE l.target = $1 AND l.sent_at = ANY($3) AND l.id = ANY($4) \
       AND l.sent_at = t.sent_at AND l.id = t.id AND l.outcome = 'l' \
     RETURNING l.id";

/// Runs `statement` on the entries, which it gets as $1 target, $2 policy version, $3 send
/// times, $4 ids, $5 outcomes, $6 texts; returns the ids of the rows it returns.
pub async fn returning_ids(
    tx: &Transaction<'_>,
    owner: Owner,
    entries: &Entries,
    statement: &str,
) -> Result<HashSet<Uuid>, tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(HashSet::new());
    }
    let params: [(&(dyn ToSql + Sync), Type); 6] = [
        (&owner.target, Type::INT4),
        (&owner.policy, Type::INT2),
        (&entries.sent, Type::TIMESTAMPTZ_ARRAY),
        (&entries.ids, Type::UUID_ARRAY),
        (&entries.outcomes, Type::CHAR_ARRAY),
        (&entries.texts, Type::TEXT_ARRAY),
    ];
    ids(tx.query_typed(statement, &params).await?)
}

/// The ids among `entries` that a pack of their day moved into `masq.ledger_packed`
/// (packed.sql): claimed before, on a day since packed. Run after the claim's insert, never
/// before: a pack that moves an id between a look and an insert would go unseen, while an
/// insert of an id a pack is moving waits for the pack's commit, after which this statement
/// sees the id packed.
pub async fn packed(
    client: &impl GenericClient,
    target: i32,
    entries: &Entries,
) -> Result<HashSet<Uuid>, tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(HashSet::new());
    }
    let mut days: Vec<chrono::NaiveDate> =
        entries.sent.iter().map(|s| s.date_naive()).collect();
    days.sort_unstable();
    days.dedup();
    let params: [(&(dyn ToSql + Sync), Type); 4] = [
        (&target, Type::INT4),
        (&entries.sent, Type::TIMESTAMPTZ_ARRAY),
        (&entries.ids, Type::UUID_ARRAY),
        (&days, Type::DATE_ARRAY),
    ];
    ids(client.query_typed(PACKED, &params).await?)
}

/// $1 target, $2 send times, $3 ids, $4 the days of $2 (packed.sql says how).
const PACKED: &str = "SELECT id FROM masq.ledger_packed_ids($1, $2, $3, $4) AS id";

/// Takes back the claims of `entries`, made earlier in this transaction: their ids turned out
/// to be packed (`packed`), so the message was settled before.
pub async fn unclaim(
    tx: &Transaction<'_>,
    target: i32,
    entries: &Entries,
) -> Result<(), tokio_postgres::Error> {
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&target, Type::INT4),
        (&entries.sent, Type::TIMESTAMPTZ_ARRAY),
        (&entries.ids, Type::UUID_ARRAY),
    ];
    tx.execute_typed(
        "DELETE FROM masq.ledger l USING unnest($2::timestamptz[], $3::uuid[]) AS t(sent_at, id) \
         WHERE l.target = $1 AND l.sent_at = ANY($2) AND l.id = ANY($3) \
           AND l.sent_at = t.sent_at AND l.id = t.id",
        &params,
    )
    .await
    .map(|_| ())
}

/// Of the entries this transaction claimed (`claimed`, among `entries`), takes back those
/// whose ids a pack had moved away (`packed`): their messages were settled before. Removes
/// them from `claimed`.
pub async fn take_back_packed(
    tx: &Transaction<'_>,
    target: i32,
    entries: &Entries,
    claimed: &mut HashSet<Uuid>,
) -> Result<(), tokio_postgres::Error> {
    let mine: Vec<usize> = (0..entries.len())
        .filter(|&i| claimed.contains(&entries.ids[i]))
        .collect();
    let mine = entries.select(&mine);
    let found = packed(tx, target, &mine).await?;
    if found.is_empty() {
        return Ok(());
    }
    let back: Vec<usize> = (0..mine.len())
        .filter(|&i| found.contains(&mine.ids[i]))
        .collect();
    unclaim(tx, target, &mine.select(&back)).await?;
    claimed.retain(|id| !found.contains(id));
    Ok(())
}

/// Marks one entry dead-lettered: its row was refused by the database after it was claimed.
pub async fn mark_dead_letter(
    tx: &Transaction<'_>,
    target: i32,
    sent_ms: u64,
    id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    let sent = sent_at(sent_ms);
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&target, Type::INT4),
        (&sent, Type::TIMESTAMPTZ),
        (&id, Type::UUID),
    ];
    tx.execute_typed(
        "UPDATE masq.ledger SET outcome = 'l' WHERE target = $1 AND sent_at = $2 AND id = $3",
        &params,
    )
    .await
    .map(|_| ())
}

/// The ids among `entries` that the ledger already has, in a partition or packed (a dry run's
/// duplicates).
pub async fn known(
    client: &Client,
    target: i32,
    entries: &Entries,
) -> Result<HashSet<Uuid>, tokio_postgres::Error> {
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&target, Type::INT4),
        (&entries.sent, Type::TIMESTAMPTZ_ARRAY),
        (&entries.ids, Type::UUID_ARRAY),
    ];
    let mut known = packed(client, target, entries).await?;
    known.extend(ids(client
        .query_typed(
            "SELECT l.id FROM masq.ledger l \
             JOIN unnest($2::timestamptz[], $3::uuid[]) AS t(sent_at, id) \
               ON l.sent_at = t.sent_at AND l.id = t.id \
             WHERE l.target = $1 AND l.sent_at = ANY($2) AND l.id = ANY($3)",
            &params,
        )
        .await?)?);
    Ok(known)
}

fn ids(rows: Vec<tokio_postgres::Row>) -> Result<HashSet<Uuid>, tokio_postgres::Error> {
    rows.iter().map(|r| r.try_get(0)).collect()
}
