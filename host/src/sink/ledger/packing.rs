//! Packing a table's past days: their settled entries move out of the day's partition (a
//! 56-byte row and a unique-index entry each, about 105 bytes) into sorted arrays in
//! `masq.ledger_packed` (about 22 bytes), and the partition is emptied. The work is done by the
//! functions of `packed.sql`, in steps of about 64k entries, each its own transaction, so no
//! lock is held for long: claims of that day wait only for the step that moves their id, and
//! for the last step (`masq.ledger_pack_finish`), which rewrites what stays in the partition.
//!
//! Each consumer packs the days that ended an hour ago or more, when it starts and every hour
//! (`Ledger::keep_up`); `masq db pack` does it on demand. Claims check the packed ids after
//! their insert (`claim::take_back_packed`), so packing never lets a message through twice.

use chrono::NaiveDate;
use postgres_types::{ToSql, Type};
use std::time::Duration;
use tokio_postgres::Client;

/// A day is packed once it has been over this long: its last minutes' messages are in.
pub const PACK_AFTER: Duration = Duration::from_secs(3600);

/// Buckets moved by one `masq.ledger_pack` call: at about 1,024 entries a bucket, some 64k
/// entries per transaction.
const BUCKETS_PER_STEP: i32 = 64;

/// What packing one day did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub day: NaiveDate,
    /// Entries moved out of the day's partition.
    pub moved: i64,
    /// Whether the partition was rewritten (its space given back). False when it was too busy
    /// to lock for 2 s: the entries are packed all the same, the space comes back next time.
    pub rewritten: bool,
}

/// The days of `target` whose partitions hold entries to pack and that ended `PACK_AFTER` ago.
pub async fn due(client: &Client, target: i32) -> Result<Vec<NaiveDate>, tokio_postgres::Error> {
    let after = PACK_AFTER.as_secs_f64();
    let params: [(&(dyn ToSql + Sync), Type); 2] =
        [(&target, Type::INT4), (&after, Type::FLOAT8)];
    let rows = client
        .query_typed(
            "SELECT masq.ledger_pack_due($1, now() - make_interval(secs => $2))",
            &params,
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Packs one day of `target`. None when there is nothing to do: the day has no partition, or
/// another consumer is packing it.
pub async fn pack_day(
    client: &Client,
    target: i32,
    day: NaiveDate,
) -> Result<Option<Packed>, tokio_postgres::Error> {
    let key: [(&(dyn ToSql + Sync), Type); 2] = [(&target, Type::INT4), (&day, Type::DATE)];
    let bits: Option<i16> = client
        .query_typed("SELECT masq.ledger_pack_begin($1, $2)", &key)
        .await?[0]
        .get(0);
    let Some(bits) = bits else {
        return Ok(None);
    };
    let buckets = 1i32 << bits;
    let mut moved = 0;
    for from in (0..buckets).step_by(BUCKETS_PER_STEP as usize) {
        let to = (from + BUCKETS_PER_STEP).min(buckets);
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&target, Type::INT4),
            (&day, Type::DATE),
            (&from, Type::INT4),
            (&to, Type::INT4),
        ];
        let step: i64 = client
            .query_typed("SELECT masq.ledger_pack($1, $2, $3, $4)", &params)
            .await?[0]
            .get(0);
        moved += step;
    }
    let rewritten: bool = client
        .query_typed("SELECT masq.ledger_pack_finish($1, $2)", &key)
        .await?[0]
        .get(0);
    Ok(Some(Packed {
        day,
        moved,
        rewritten,
    }))
}
