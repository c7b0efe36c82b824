//! The send time of a `masq load` without `--sent-at`. The ledger finds a redelivered message
//! in the partition of its send time, so a load run again must give its lines the send time
//! they had the first time, or lines loaded before would land in another day's partition and
//! be written twice. `masq.loads` keeps, per table and source id, the time of the first load;
//! it is dropped with the partition it leads to.

use super::Ledger;
use crate::sink::database::Database;
use chrono::{DateTime, Utc};
use postgres_types::{ToSql, Type};

/// The send time (ms since the epoch) of every line of `source_id`: the time it was first
/// loaded into the ledger's table, which is now the first time.
pub async fn sent_ms(database: &Database, ledger: &Ledger, source_id: &str) -> anyhow::Result<u64> {
    let client = database.connect().await?;
    let now = Utc::now();
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&ledger.target, Type::INT4),
        (&source_id, Type::TEXT),
        (&now, Type::TIMESTAMPTZ),
    ];
    // The no-op update makes RETURNING give the row an earlier load inserted; xmax is 0 only
    // on a row this statement inserted.
    let insert = client.query_typed(
        "INSERT INTO masq.loads (target, source_id, sent_at) VALUES ($1, $2, $3) \
         ON CONFLICT (target, source_id) DO UPDATE SET source_id = EXCLUDED.source_id \
         RETURNING sent_at, xmax = 0",
        &params,
    );
    let rows = database
        .answer("reading the send time of earlier loads", insert)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read or record the send time of source id {source_id:?} in masq.loads ({e:#}): \
                 run `masq db init`, or give the lines a send date with --sent-at"
            )
        })?;
    let first: DateTime<Utc> = rows[0].get(0);
    let inserted: bool = rows[0].get(1);
    if !inserted {
        tracing::info!(
            source_id,
            sent_at = %first.to_rfc3339(),
            "this source id was loaded before: its lines keep that first load's send time, so lines already written are skipped"
        );
    }
    Ok(first.timestamp_millis() as u64)
}
