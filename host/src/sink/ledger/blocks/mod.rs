//! `masq load` claims its lines by blocks of 100: one ledger entry per block of a source
//! (lines 1-100, 101-200, ...) instead of one per line. A backfill's ledger is then about a
//! hundredth of its size, and the database does a hundredth of the ledger work per line (on
//! this project's bench machine, the ledger was most of the gap between `masq load` and a
//! plain COPY).
//!
//! A block's entry has the id `key::block_uuid(source, block)` and, in `text_id`, which lines
//! of the block are settled and how, as people read it:
//!
//! ```text
//! <source-id>:<written lines>[/d<dropped lines>][/l<dead-lettered lines>]
//! orders.jsonl:1-49,51-98/d50/l99-100
//! ```
//!
//! A claim takes the lines of a batch that the block's entry does not list yet: a fresh
//! block by COPY with the other entries; a block claimed before under a row lock, its entry
//! rewritten with the new lines. Lines that have an entry of their own (a ledger from before
//! blocks, or a replayed dead letter whose block was gone) are skipped as well.
//! `masq.ledger_entries` lists a block's lines one by one, as if each had its own entry.

mod coverage;

use super::claim::{Entries, Owner, sent_at};
use super::key::{self, Outcome, Uuid};
pub use coverage::Coverage;
use postgres_types::{ToSql, Type};
use std::collections::{HashMap, HashSet};
use tokio_postgres::{GenericClient, Transaction};

/// Lines per block. `masq load` reads its input in chunks that end on a block's last line, so
/// a block's lines go to the database in one batch.
pub const BLOCK_LINES: u64 = 100;

/// One block a batch has lines in.
#[derive(Debug)]
pub struct Block {
    pub sent_ms: u64,
    pub source: String,
    pub number: u64,
    pub uuid: Uuid,
    /// The batch's lines of the block that it may claim, with their outcomes as prepared.
    pub lines: Coverage,
    /// What the ledger had settled of the block before this batch (read by a claim).
    pub before: Coverage,
}

impl Block {
    /// The entry text once this batch's claim is in: the earlier lines, and the new ones.
    fn text_after(&self) -> String {
        let mut after = self.before;
        let new = self.lines.all() & !self.before.all();
        for offset in 0..BLOCK_LINES as u32 {
            if new >> offset & 1 == 1 {
                after.set(offset, self.lines.outcome(offset).expect("a line of the batch"));
            }
        }
        after.text(&self.source, self.number)
    }
}

/// Where a message of the batch is in its block.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub block: usize,
    pub offset: u32,
}

/// The `masq load` lines of one batch, by block.
#[derive(Debug, Default)]
pub struct Blocks {
    pub blocks: Vec<Block>,
    /// For each message of the batch: its place, if its id is a load line.
    pub places: Vec<Option<Place>>,
}

impl Blocks {
    /// Groups the messages whose ids are load lines (`<source-id>:<line>`) by block.
    /// `message(i)` gives message i's id (storable), send time and prepared outcome.
    pub fn of<'a>(
        count: usize,
        message: impl Fn(usize) -> (&'a str, u64, Outcome),
    ) -> Blocks {
        let mut blocks = Blocks::default();
        let mut index: HashMap<(u64, &'a str, u64), usize> = HashMap::new();
        for i in 0..count {
            let (id, sent_ms, outcome) = message(i);
            let Some((source, line)) = key::line_parts(id) else {
                blocks.places.push(None);
                continue;
            };
            let number = (line - 1) / BLOCK_LINES;
            let offset = ((line - 1) % BLOCK_LINES) as u32;
            let block = *index.entry((sent_ms, source, number)).or_insert_with(|| {
                blocks.blocks.push(Block {
                    sent_ms,
                    source: source.to_string(),
                    number,
                    uuid: key::block_uuid(source, number),
                    lines: Coverage::default(),
                    before: Coverage::default(),
                });
                blocks.blocks.len() - 1
            });
            blocks.blocks[block].lines.set(offset, outcome);
            blocks.places.push(Some(Place { block, offset }));
        }
        blocks
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The blocks that have lines for this batch to claim.
    pub fn claiming(&self) -> Vec<usize> {
        (0..self.blocks.len())
            .filter(|&b| self.blocks[b].lines.all() != 0)
            .collect()
    }

    /// Leaves out the lines that have entries of their own (`with_own_entries`): they are
    /// settled already, and stay out of the blocks' texts.
    pub fn without(&mut self, lines: &HashSet<usize>) {
        for &i in lines {
            if let Some(place) = self.places[i] {
                self.blocks[place.block].lines.clear(place.offset);
            }
        }
    }

    /// Whether message i is a line this batch may write: the batch claims it, and neither a
    /// block entry nor an entry of its own had it before.
    pub fn takes(&self, i: usize) -> Option<bool> {
        let place = self.places[i]?;
        let block = &self.blocks[place.block];
        Some(block.lines.contains(place.offset) && !block.before.contains(place.offset))
    }

    /// Marks message i, a line this batch settled, dead-lettered: the database refused its row.
    /// Returns its block (to `rewrite`), or `None` if it is not a load line.
    pub fn dead_letter(&mut self, i: usize) -> Option<usize> {
        let place = self.places.get(i).copied().flatten()?;
        let block = &mut self.blocks[place.block];
        // A replay moves lines within `before`; a fresh claim adds them from `lines`.
        match block.before.contains(place.offset) {
            true => block.before.set(place.offset, Outcome::DeadLetter),
            false => block.lines.set(place.offset, Outcome::DeadLetter),
        }
        Some(place.block)
    }

    /// The blocks' entries as they will be after the claim.
    pub fn entries(&self, which: impl Iterator<Item = usize>) -> Entries {
        let mut entries = Entries::default();
        for b in which {
            let block = &self.blocks[b];
            entries.sent.push(sent_at(block.sent_ms));
            entries.ids.push(block.uuid);
            entries.texts.push(Some(block.text_after()));
            entries.outcomes.push(Outcome::Written.code());
        }
        entries
    }

    /// The messages whose lines have ledger entries of their own. One index range per source
    /// and send time: a source's line ids are consecutive in the index.
    pub async fn with_own_entries(
        &self,
        client: &impl GenericClient,
        ids: impl Fn(usize) -> Uuid,
        target: i32,
    ) -> Result<HashSet<usize>, tokio_postgres::Error> {
        let mut ranges: HashMap<(u64, &str), (u64, u64)> = HashMap::new();
        for block in &self.blocks {
            let first = block.number * BLOCK_LINES + 1;
            let range = ranges
                .entry((block.sent_ms, &block.source))
                .or_insert((first, first + BLOCK_LINES - 1));
            range.0 = range.0.min(first);
            range.1 = range.1.max(first + BLOCK_LINES - 1);
        }
        if ranges.is_empty() {
            return Ok(HashSet::new());
        }
        let (mut sent, mut low, mut high) = (Vec::new(), Vec::new(), Vec::new());
        for ((sent_ms, source), (a, b)) in ranges {
            sent.push(sent_at(sent_ms));
            low.push(key::line_uuid_of(source, a));
            high.push(key::line_uuid_of(source, b.min((1 << 40) - 1)));
        }
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&target, Type::INT4),
            (&sent, Type::TIMESTAMPTZ_ARRAY),
            (&low, Type::UUID_ARRAY),
            (&high, Type::UUID_ARRAY),
        ];
        let rows = client
            .query_typed(
                "SELECT l.id FROM masq.ledger l \
                 JOIN unnest($2::timestamptz[], $3::uuid[], $4::uuid[]) AS r(sent_at, low, high) \
                   ON l.sent_at = r.sent_at AND l.id BETWEEN r.low AND r.high \
                 WHERE l.target = $1 AND l.sent_at = ANY($2)",
                &params,
            )
            .await?;
        let found: HashSet<Uuid> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        if found.is_empty() {
            return Ok(HashSet::new());
        }
        Ok((0..self.places.len())
            .filter(|&i| self.places[i].is_some() && found.contains(&ids(i)))
            .collect())
    }

    /// Reads what the ledger has settled of each block (`before`), locking the entries that
    /// exist when `lock`. Returns the blocks that have no entry.
    pub async fn read(
        &mut self,
        client: &impl GenericClient,
        target: i32,
        which: &[usize],
        lock: bool,
    ) -> Result<Vec<usize>, tokio_postgres::Error> {
        if which.is_empty() {
            return Ok(Vec::new());
        }
        let sent: Vec<_> = which.iter().map(|&b| sent_at(self.blocks[b].sent_ms)).collect();
        let ids: Vec<Uuid> = which.iter().map(|&b| self.blocks[b].uuid).collect();
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&target, Type::INT4),
            (&sent, Type::TIMESTAMPTZ_ARRAY),
            (&ids, Type::UUID_ARRAY),
        ];
        let statement = format!(
            "SELECT l.id, l.text_id FROM masq.ledger l \
             JOIN unnest($2::timestamptz[], $3::uuid[]) AS t(sent_at, id) \
               ON l.sent_at = t.sent_at AND l.id = t.id \
             WHERE l.target = $1 AND l.sent_at = ANY($2) AND l.id = ANY($3){}",
            // In id order, as the claims insert them: two loads locking the same blocks
            // then wait for each other instead of deadlocking.
            if lock { " ORDER BY l.id FOR UPDATE OF l" } else { "" }
        );
        let rows = client.query_typed(&statement, &params).await?;
        let mut found: HashMap<Uuid, Option<String>> = HashMap::new();
        for row in rows {
            found.insert(row.try_get(0)?, row.try_get(1)?);
        }
        let mut missing = Vec::new();
        for &b in which {
            let block = &mut self.blocks[b];
            match found.get(&block.uuid) {
                None => missing.push(b),
                Some(text) => {
                    block.before = text
                        .as_deref()
                        .and_then(|t| Coverage::parse(t, block.number))
                        .unwrap_or_else(|| {
                            // Not an entry masq wrote: count the whole block as settled rather
                            // than write its lines a second time, and say so.
                            tracing::warn!(
                                source_id = %block.source,
                                first_line = block.number * BLOCK_LINES + 1,
                                "a ledger block entry cannot be read (edited by hand?): its 100 lines are taken as settled and skipped"
                            );
                            Coverage::whole()
                        });
                }
            }
        }
        Ok(missing)
    }

    /// Claims the blocks after a COPY of them met earlier claims: a block nobody claimed is
    /// inserted; one claimed before is locked, read, and rewritten with the lines it lacked.
    pub async fn claim_by_insert(
        &mut self,
        tx: &Transaction<'_>,
        owner: Owner,
    ) -> Result<(), tokio_postgres::Error> {
        let mut pending = self.claiming();
        // Each round inserts or finds every pending block; a block is neither only if its
        // entry went between the two statements, which takes dropping its partition.
        while !pending.is_empty() {
            let entries = self.entries(pending.iter().copied());
            let inserted = super::claim::returning_ids(tx, owner, &entries, super::claim::CLAIM).await?;
            let existing: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&b| !inserted.contains(&self.blocks[b].uuid))
                .collect();
            pending = self.read(tx, owner.target, &existing, true).await?;
            let grown: Vec<usize> = existing
                .iter()
                .copied()
                .filter(|b| !pending.contains(b))
                .filter(|&b| self.blocks[b].lines.all() & !self.blocks[b].before.all() != 0)
                .collect();
            self.rewrite(tx, owner, &grown).await?;
        }
        Ok(())
    }

    /// Writes the entry text of `which` blocks as it is after this batch.
    pub async fn rewrite(
        &self,
        tx: &Transaction<'_>,
        owner: Owner,
        which: &[usize],
    ) -> Result<(), tokio_postgres::Error> {
        if which.is_empty() {
            return Ok(());
        }
        let entries = self.entries(which.iter().copied());
        let params: [(&(dyn ToSql + Sync), Type); 5] = [
            (&owner.target, Type::INT4),
            (&owner.policy, Type::INT2),
            (&entries.sent, Type::TIMESTAMPTZ_ARRAY),
            (&entries.ids, Type::UUID_ARRAY),
            (&entries.texts, Type::TEXT_ARRAY),
        ];
        tx.execute_typed(
            "UPDATE masq.ledger l SET text_id = t.text_id, policy = $2 \
             FROM unnest($3::timestamptz[], $4::uuid[], $5::text[]) AS t(sent_at, id, text_id) \
             WHERE l.target = $1 AND l.sent_at = ANY($3) AND l.id = ANY($4) \
               AND l.sent_at = t.sent_at AND l.id = t.id",
            &params,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_grouped_by_block_and_send_time() {
        let ids = ["f:1", "f:100", "f:101", "g:1", "5fea7756-0ea4-451a-a703-a558b933e274", "f:01"];
        let blocks = Blocks::of(ids.len(), |i| (ids[i], if i == 3 { 7 } else { 5 }, Outcome::Written));
        assert_eq!(blocks.blocks.len(), 3);
        let numbers: Vec<(u64, &str, u64)> = blocks
            .blocks
            .iter()
            .map(|b| (b.sent_ms, b.source.as_str(), b.number))
            .collect();
        assert_eq!(numbers, [(5, "f", 0), (5, "f", 1), (7, "g", 0)]);
        assert!(blocks.places[4].is_none() && blocks.places[5].is_none());
        assert_eq!(blocks.blocks[0].text_after(), "f:1,100");
        assert_eq!(blocks.takes(1), Some(true));
        // Variant bits 110 for a block, 10 for a line (what masq.ledger_entries tells apart).
        assert_eq!(blocks.blocks[0].uuid.0[8] >> 5, 0b110);
        assert_eq!(key::LedgerId::of("f:1").uuid.0[8] >> 6, 0b10);
    }

    #[test]
    fn a_claim_takes_only_the_lines_the_block_lacked() {
        let ids = ["f:1", "f:2", "f:3"];
        let mut blocks = Blocks::of(3, |i| (ids[i], 0, Outcome::Written));
        blocks.blocks[0].before = Coverage::parse("f:1/l2", 0).unwrap();
        assert_eq!(
            (0..3).map(|i| blocks.takes(i).unwrap()).collect::<Vec<_>>(),
            [false, false, true]
        );
        // The earlier outcomes stay as they were.
        assert_eq!(blocks.blocks[0].text_after(), "f:1,3/l2");
        blocks.without(&HashSet::from([2]));
        assert_eq!(blocks.takes(2), Some(false));
    }
}
