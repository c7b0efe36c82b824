//! The ledger's partitions: one per target table and UTC day of send time. A batch makes the
//! partitions its messages need before its transaction starts (known ones cost nothing), each
//! consumer makes the next days' ahead of time and drops those past the retention. The work is
//! done by `masq.ledger_prepare` and `masq.ledger_prune` in the database (`ledger.sql`), so
//! that several consumers at once take turns, and the role masq runs as needs no more than
//! EXECUTE on them.
//!
//! A message sent before the retention window (a backfill of old data, a message that waited
//! somewhere) gets its own day's partition all the same, made when it is first needed; that
//! partition is kept for a whole retention period after it was made, so running the same
//! backfill again within the retention still finds every line claimed.

use super::retention::Retention;
use postgres_types::{ToSql, Type};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::Client;

const DAY_MS: i64 = 86_400_000;

/// The days a consumer makes partitions for ahead of time, from today on: a batch after
/// midnight never waits for one.
const DAYS_AHEAD: i64 = 3;

/// The UTC day (days since 1970-01-01) a message sent at `sent_ms` belongs to.
pub fn day_of(sent_ms: u64) -> i64 {
    (sent_ms as i64).div_euclid(DAY_MS)
}

fn today() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    day_of(now.as_millis() as u64)
}

fn date(day: i64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .unwrap_or_default()
        .date_naive()
}

pub struct Partitions {
    target: i32,
    retention: Retention,
    /// Days whose partition exists and stays while they are within the retention.
    known: Mutex<HashSet<i64>>,
}

impl Partitions {
    pub fn new(target: i32, retention: Duration) -> Partitions {
        Partitions {
            target,
            retention: Retention(retention),
            known: Mutex::new(HashSet::new()),
        }
    }

    /// The oldest day whose partition no consumer with this retention drops: partitions of
    /// older days may go at any upkeep, so they are never taken as known.
    fn oldest_kept(&self) -> i64 {
        today() - self.retention.whole_days() - 1
    }

    /// Makes sure a partition exists for each of `days` (one call, only for days not known).
    pub async fn ensure(
        &self,
        client: &Client,
        days: impl IntoIterator<Item = i64>,
    ) -> Result<(), tokio_postgres::Error> {
        let missing: Vec<i64> = {
            let known = self.known.lock().expect("known partitions");
            let mut missing: Vec<i64> = days.into_iter().filter(|d| !known.contains(d)).collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let dates: Vec<chrono::NaiveDate> = missing.iter().map(|&d| date(d)).collect();
        let params: [(&(dyn ToSql + Sync), Type); 2] =
            [(&self.target, Type::INT4), (&dates, Type::DATE_ARRAY)];
        client
            .query_typed("SELECT masq.ledger_prepare($1, $2)", &params)
            .await?;
        let oldest_kept = self.oldest_kept();
        self.known
            .lock()
            .expect("known partitions")
            .extend(missing.into_iter().filter(|&d| d >= oldest_kept));
        Ok(())
    }

    /// Today's partition and the next days'.
    pub async fn prepare_ahead(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let today = today();
        self.ensure(client, today..today + DAYS_AHEAD).await
    }

    /// Drops the partitions past the retention. Returns each (partition, dropped); one the
    /// ledger was too busy to drop now stays until the next call.
    pub async fn prune(
        &self,
        client: &Client,
    ) -> Result<Vec<(String, bool)>, tokio_postgres::Error> {
        let retention = self.retention.seconds();
        let params: [(&(dyn ToSql + Sync), Type); 2] =
            [(&self.target, Type::INT4), (&retention, Type::FLOAT8)];
        let rows = client
            .query_typed(
                "SELECT part_name, dropped FROM masq.ledger_prune($1, make_interval(secs => $2))",
                &params,
            )
            .await?;
        let pruned: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if !pruned.is_empty() {
            self.forget();
        }
        Ok(pruned)
    }

    /// Forgets which partitions exist: after one was dropped under a batch (a consumer with a
    /// shorter retention pruned it), the next batch makes what it needs again.
    pub fn forget(&self) {
        self.known.lock().expect("known partitions").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_days_since_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(86_399_999), 0);
        assert_eq!(day_of(86_400_000), 1);
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        assert_eq!(date(day_of(1_709_251_199_999)).to_string(), "2024-02-29");
        assert_eq!(date(day_of(1_709_251_200_000)).to_string(), "2024-03-01");
    }

    #[test]
    fn only_days_within_the_retention_are_remembered() {
        let p = Partitions::new(1, Duration::from_secs(15 * 86_400));
        assert_eq!(p.oldest_kept(), today() - 16);
    }
}
