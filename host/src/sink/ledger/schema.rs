//! The ledger's tables and functions (`ledger.sql`), created by `masq db init`, and the move
//! of a ledger made by an earlier masq (one text row per message, never pruned) into them.
//! Both run in `db init`'s transaction, under its lock: safe to run again, and from several
//! processes at once.

use super::retention::Retention;
use crate::sink::sql;
use postgres_types::{ToSql, Type};
use tokio_postgres::Transaction;

/// The ledger's DDL: tables, functions, the readable view.
pub const LEDGER_SQL: &str = include_str!("ledger.sql");

/// Past days packed into sorted arrays (`packing.rs`); runs after `LEDGER_SQL`.
pub const PACKED_SQL: &str = include_str!("packed.sql");

/// What moving an earlier masq's ledger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Entries sent within the retention, now in the partitioned ledger.
    pub kept: i64,
    /// Entries sent before it (or with no send time), which no redelivery can need.
    pub dropped: i64,
}

/// Creates the ledger, moving an earlier masq's ledger over if there is one.
pub async fn create(
    tx: &Transaction<'_>,
    retention: Retention,
) -> Result<Option<Migration>, tokio_postgres::Error> {
    let earlier: bool = sql::scalar(
        tx,
        "SELECT EXISTS (SELECT FROM pg_class WHERE oid = to_regclass('masq.ledger') AND relkind = 'r')",
    )
    .await?;
    if earlier {
        tx.batch_execute("ALTER TABLE masq.ledger RENAME TO ledger_v1")
            .await?;
    }
    tx.batch_execute(LEDGER_SQL).await?;
    tx.batch_execute(PACKED_SQL).await?;
    if !earlier {
        return Ok(None);
    }
    migrate(tx, retention).await.map(Some)
}

/// Copies the entries of `masq.ledger_v1` sent within the retention into the new ledger (so a
/// message SQS may still redeliver stays claimed), then drops it.
async fn migrate(
    tx: &Transaction<'_>,
    retention: Retention,
) -> Result<Migration, tokio_postgres::Error> {
    let seconds = retention.seconds();
    let horizon: [(&(dyn ToSql + Sync), Type); 1] = [(&seconds, Type::FLOAT8)];
    tx.batch_execute(
        "INSERT INTO masq.targets (name) SELECT DISTINCT target_table FROM masq.ledger_v1 \
           ON CONFLICT (name) DO NOTHING; \
         INSERT INTO masq.policy_versions (name, version, digest) \
           SELECT DISTINCT policy_name, policy_version, policy_digest FROM masq.ledger_v1 \
           ON CONFLICT (name, version, digest) DO NOTHING",
    )
    .await?;
    let within = "v.sent_at >= now() - make_interval(secs => $1)";
    tx.query_typed(
        &format!(
            "SELECT masq.ledger_prepare(t.id, array_agg(DISTINCT (v.sent_at AT TIME ZONE 'UTC')::date)) \
             FROM masq.ledger_v1 v JOIN masq.targets t ON t.name = v.target_table \
             WHERE {within} GROUP BY t.id"
        ),
        &horizon,
    )
    .await?;
    let kept = tx
        .execute_typed(
            &format!(
                "INSERT INTO masq.ledger (sent_at, id, policy, target, outcome, text_id) \
                 SELECT v.sent_at, masq.message_uuid(v.message_id), p.id, t.id, \
                   CASE v.outcome WHEN 'written' THEN 'w' WHEN 'dropped' THEN 'd' ELSE 'l' END::\"char\", \
                   NULLIF(v.message_id, masq.message_uuid(v.message_id)::text) \
                 FROM masq.ledger_v1 v \
                 JOIN masq.targets t ON t.name = v.target_table \
                 JOIN masq.policy_versions p ON p.name = v.policy_name \
                   AND p.version = v.policy_version AND p.digest = v.policy_digest \
                 WHERE {within} \
                 ON CONFLICT DO NOTHING"
            ),
            &horizon,
        )
        .await? as i64;
    let total: i64 = sql::scalar(tx, "SELECT count(*) FROM masq.ledger_v1").await?;
    tx.batch_execute("DROP TABLE masq.ledger_v1").await?;
    Ok(Migration {
        kept,
        dropped: total - kept,
    })
}
