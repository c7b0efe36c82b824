//! A replay's side of a batch's transaction: the dead letters it takes, and how each one's
//! ledger entry (its own, or its line in a `masq load` block) moves to its new outcome.

use super::{Batch, Prepared};
use crate::pipeline::batch::Item;
use crate::sink::ledger::blocks::Blocks;
use crate::sink::ledger::claim;
use crate::sink::ledger::key::{Outcome, Uuid};
use postgres_types::Type;
use std::collections::HashSet;
use tokio_postgres::Transaction;

/// The dead-letter id a replayed message carries as its receipt.
pub(super) fn letter_id(item: &Item) -> i64 {
    item.message.receipt.parse().unwrap_or(-1)
}

/// Replayed messages: locks each one's dead letter (one another replay holds is skipped),
/// and moves the ledger of each that now passes from `dead_letter` to its new outcome: in its
/// own entry, or in its block's (a load line). A message whose entry is gone (its partition
/// outlived the retention) is claimed afresh; one the ledger shows settled otherwise has a
/// stale dead letter, which is retired. Returns which messages this transaction settles, and
/// the blocks of the lines it moved.
pub(super) async fn take_letters(
    tx: &Transaction<'_>,
    batch: &Batch<'_>,
    prepared: &[Prepared<'_>],
    retired: &mut Vec<i64>,
) -> Result<(Vec<bool>, Blocks), tokio_postgres::Error> {
    let (target, items) = (batch.target, batch.items);
    let letters: Vec<i64> = items.iter().map(letter_id).collect();
    let locked: HashSet<i64> = tx
        .query_typed(
            "SELECT id FROM masq.dead_letters WHERE id = ANY($1) AND target_table = $2 \
             FOR UPDATE SKIP LOCKED",
            &[(&letters, Type::INT8_ARRAY), (&target.name, Type::TEXT)],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let moving: Vec<usize> = (0..items.len())
        .filter(|&i| locked.contains(&letters[i]) && !matches!(prepared[i], Prepared::Dead(..)))
        .collect();
    let entries = batch.entries(prepared, moving.iter().copied());
    let mut settled: HashSet<Uuid> =
        claim::returning_ids(tx, target.owner, &entries, claim::MOVE_DEAD_LETTERS).await?;
    let unsettled: Vec<usize> = moving
        .iter()
        .copied()
        .filter(|&i| !settled.contains(&batch.keys[i].uuid))
        .collect();
    let (moved, stale, blocks) = move_in_blocks(tx, batch, prepared, &unsettled).await?;
    settled.extend(moved);
    let forgotten: Vec<usize> = (0..moving.len())
        .filter(|&m| !settled.contains(&entries.ids[m]) && !stale.contains(&entries.ids[m]))
        .collect();
    let forgotten = entries.select(&forgotten);
    let mut fresh = claim::returning_ids(tx, target.owner, &forgotten, claim::CLAIM).await?;
    // An entry packed away is not forgotten: settled otherwise, its dead letter is stale.
    claim::take_back_packed(tx, target.owner.target, &forgotten, &mut fresh).await?;
    settled.extend(fresh);
    let take = (0..items.len())
        .map(|i| {
            if !locked.contains(&letters[i]) {
                return false;
            }
            if matches!(prepared[i], Prepared::Dead(..)) || settled.contains(&batch.keys[i].uuid) {
                return true;
            }
            retired.push(letters[i]);
            false
        })
        .collect();
    Ok((take, blocks))
}

/// Replayed load lines whose blocks list them: a line dead-lettered there moves to its new
/// outcome; one settled otherwise is stale. Returns the ids of both kinds (lines their block
/// does not list are neither), and the blocks as they are now.
async fn move_in_blocks(
    tx: &Transaction<'_>,
    batch: &Batch<'_>,
    prepared: &[Prepared<'_>],
    lines: &[usize],
) -> Result<(HashSet<Uuid>, HashSet<Uuid>, Blocks), tokio_postgres::Error> {
    let (mut moved, mut stale) = (HashSet::new(), HashSet::new());
    let picked: HashSet<usize> = lines.iter().copied().collect();
    let mut blocks = batch.blocks(prepared, |i| picked.contains(&i));
    if blocks.is_empty() {
        return Ok((moved, stale, blocks));
    }
    let all: Vec<usize> = (0..blocks.blocks.len()).collect();
    blocks.read(tx, batch.target.owner.target, &all, true).await?;
    let mut changed = HashSet::new();
    for &i in lines {
        let Some(place) = blocks.places[i] else { continue };
        let block = &mut blocks.blocks[place.block];
        match block.before.outcome(place.offset) {
            Some(Outcome::DeadLetter) => {
                block.before.set(place.offset, prepared[i].outcome());
                changed.insert(place.block);
                moved.insert(batch.keys[i].uuid);
            }
            Some(_) => {
                stale.insert(batch.keys[i].uuid);
            }
            None => {}
        }
    }
    for block in &mut blocks.blocks {
        block.lines = Default::default();
    }
    let changed: Vec<usize> = changed.into_iter().collect();
    blocks.rewrite(tx, batch.target.owner, &changed).await?;
    Ok((moved, stale, blocks))
}
