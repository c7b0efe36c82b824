//! One batch's transaction. First the ledger: each message id is claimed (a fresh message) or
//! its dead letter is taken (a replayed one), so a message another writer already settled
//! writes nothing twice. Then the rows, by binary COPY, one COPY per shape of row. Then the
//! dead letters. A row the database refuses is found by running the batch again row by row,
//! each row under a savepoint, and becomes a dead letter; the rest is written.

mod letter;
mod replay;
mod rows;

use super::WriteReport;
use super::letter_body::LetterBodies;
use super::ledger::blocks::Blocks;
use super::ledger::claim::{self, Entries, Owner};
use super::ledger::key::{LedgerId, Outcome};
use super::schema::{Row, TableSchema};
use super::sql::storable;
use crate::pipeline::batch::{Item, Provenance, Stage};
use letter::Letter;
use postgres_types::Type;
use replay::{letter_id, take_letters};
use rows::{copy_rows, write_rows_one_by_one};
use tokio_postgres::{Client, Transaction};

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
pub(super) enum Prepared<'a> {
    Row(Row<'a>),
    Drop,
    Dead(Stage, String),
}

impl Prepared<'_> {
    fn outcome(&self) -> Outcome {
        match self {
            Prepared::Row(_) => Outcome::Written,
            Prepared::Drop => Outcome::Dropped,
            Prepared::Dead(..) => Outcome::DeadLetter,
        }
    }
}

/// How a transaction claims fresh messages in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimBy {
    /// COPY: the cheapest, when none of them was claimed before (nearly always).
    Copy,
    /// `INSERT ... ON CONFLICT DO NOTHING`: after a COPY met an earlier claim.
    Insert,
}

/// How one attempt at a batch runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attempt {
    pub claim: ClaimBy,
    /// Each row by its own INSERT under a savepoint, to find the rows the database refuses.
    pub row_by_row: bool,
}

/// What one transaction needs to know about where it writes.
pub(super) struct Target<'a> {
    pub schema: &'a TableSchema,
    /// The table's name as the dead letters record it.
    pub name: &'a str,
    pub mode: WriteMode,
    /// The table's and the policy version's ids in the ledger.
    pub owner: Owner,
    /// Sealed, shape only or in clear.
    pub bodies: &'a LetterBodies,
}

pub(super) async fn transact(
    client: &mut Client,
    target: &Target<'_>,
    items: &[Item],
    prepared: &mut [Prepared<'_>],
    provenance: &Provenance,
    attempt: Attempt,
) -> Result<WriteReport, tokio_postgres::Error> {
    let mut report = WriteReport::default();
    let mut tx = client.transaction().await?;
    if attempt.row_by_row {
        // A deferred constraint would otherwise fail the commit, for no row in particular.
        tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await?;
    }
    // Borrowed unless an id holds NUL (never from SQS): no copy of every id per attempt.
    let ids: Vec<std::borrow::Cow<'_, str>> =
        items.iter().map(|i| storable(&i.message.id)).collect();
    let keys: Vec<LedgerId> = ids.iter().map(|id| LedgerId::of(id)).collect();
    let batch = Batch {
        target,
        items,
        keys: &keys,
    };
    let mut retired_letters: Vec<i64> = Vec::new();
    // Whether this transaction settles message i.
    let (take, mut blocks): (Vec<bool>, Blocks) = match target.mode {
        WriteMode::Fresh => claim(&tx, &batch, prepared, attempt.claim).await?,
        WriteMode::Replay => take_letters(&tx, &batch, prepared, &mut retired_letters).await?,
    };
    report.duplicates = take.iter().filter(|t| !**t).count() as u64;

    if attempt.row_by_row {
        write_rows_one_by_one(&mut tx, &batch, prepared, &take, &mut blocks).await?;
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
                    bodies: target.bodies,
                    id: &ids[i],
                    item: &items[i],
                    stage: *stage,
                    reason,
                    provenance,
                };
                match target.mode {
                    WriteMode::Fresh if attempt.row_by_row => {
                        letter.insert_guarded(&mut tx).await?
                    }
                    WriteMode::Fresh => letter.insert(&tx).await.map(|_| ())?,
                    WriteMode::Replay => letter.update(&tx, letter_id(&items[i])).await?,
                }
            }
        }
        if target.mode == WriteMode::Replay && !matches!(p, Prepared::Dead(..)) {
            retired_letters.push(letter_id(&items[i]));
        }
    }
    if !retired_letters.is_empty() {
        tx.execute_typed(
            "DELETE FROM masq.dead_letters WHERE id = ANY($1)",
            &[(&retired_letters, Type::INT8_ARRAY)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// The messages of one transaction, with their ledger ids.
#[derive(Clone, Copy)]
struct Batch<'a> {
    target: &'a Target<'a>,
    items: &'a [Item],
    keys: &'a [LedgerId],
}

impl Batch<'_> {
    /// The load lines among the messages `include` picks, by block (places by message).
    fn blocks(&self, prepared: &[Prepared<'_>], include: impl Fn(usize) -> bool) -> Blocks {
        Blocks::of(self.items.len(), |i| {
            let id = match include(i) {
                true => self.keys[i].text.as_deref().unwrap_or(""),
                false => "",
            };
            (id, self.items[i].message.sent_ms, prepared[i].outcome())
        })
    }

    /// The ledger entries of the messages at `indexes`, with their outcomes as prepared.
    fn entries(&self, prepared: &[Prepared<'_>], indexes: impl Iterator<Item = usize>) -> Entries {
        let mut entries = Entries::default();
        for i in indexes {
            entries.push(
                self.items[i].message.sent_ms,
                &self.keys[i],
                prepared[i].outcome(),
            );
        }
        entries
    }
}

/// Fresh messages: claims each id in the ledger with its outcome; returns which were claimed
/// (one claimed before was settled before: a redelivery), and the batch's load lines by block
/// (`blocks`), which the row-by-row path updates when the database refuses a line's row.
async fn claim(
    tx: &Transaction<'_>,
    batch: &Batch<'_>,
    prepared: &[Prepared<'_>],
    by: ClaimBy,
) -> Result<(Vec<bool>, Blocks), tokio_postgres::Error> {
    let owner = batch.target.owner;
    let mut blocks = batch.blocks(prepared, |_| true);
    if !blocks.is_empty() {
        // The planner prices the index range below by the partition's size (a ninth of a
        // 2M-entry partition, measured), so on a day with tens of millions of SQS entries it
        // would JIT-compile, for a tenth of a second, a scan that reads next to nothing.
        // SET LOCAL ends with the transaction, as a pooler in transaction mode needs.
        tx.batch_execute("SET LOCAL jit = off").await?;
        let own = blocks
            .with_own_entries(tx, |i| batch.keys[i].uuid, owner.target)
            .await?;
        blocks.without(&own);
    }
    let singles: Vec<usize> = (0..batch.items.len())
        .filter(|&i| blocks.places[i].is_none())
        .collect();
    let entries = batch.entries(prepared, singles.iter().copied());
    let mut claimed = match by {
        ClaimBy::Copy => {
            let mut all = entries.clone();
            all.extend(blocks.entries(blocks.claiming().into_iter()));
            claim::copy(tx, owner, &all).await?;
            entries.ids.iter().copied().collect()
        }
        ClaimBy::Insert => {
            let claimed = claim::returning_ids(tx, owner, &entries, claim::CLAIM).await?;
            blocks.claim_by_insert(tx, owner).await?;
            claimed
        }
    };
    // A past day's entries may have been packed away from its partition's unique index.
    claim::take_back_packed(tx, owner.target, &entries, &mut claimed).await?;
    let take = (0..batch.items.len())
        .map(|i| match blocks.takes(i) {
            Some(line) => line,
            None => claimed.contains(&batch.keys[i].uuid),
        })
        .collect();
    Ok((take, blocks))
}
