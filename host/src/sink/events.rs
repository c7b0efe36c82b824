//! Policy events in `masq.policy_events`: which consumer put which policy version (and key
//! id) in service when, and which new files it refused. `masq status` reads them back.

use super::postgres::Database;
use crate::policy::PolicyHost;
use std::fmt::Write as _;

/// Writes events for one consumer (host name and process id) and one target table.
#[derive(Clone)]
pub struct EventLog {
    database: Database,
    table: String,
    consumer: String,
}

impl EventLog {
    pub fn new(database: &Database, table: &str) -> EventLog {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".into());
        EventLog {
            database: database.clone(),
            table: table.to_string(),
            consumer: format!("{host}:{}", std::process::id()),
        }
    }

    /// Records an event. A failure is logged, never fatal: the event is also in the log.
    pub async fn record(
        &self,
        event: &str,
        policy: Option<&PolicyHost>,
        key_id: Option<&str>,
        detail: &str,
    ) {
        let result = async {
            let client = self.database.connect().await?;
            let (name, version, digest) = (
                policy.map(|p| p.info().name.as_str()),
                policy.map(|p| p.info().version.as_str()),
                policy.map(PolicyHost::digest),
            );
            let detail = crate::sink::sql::storable(detail);
            let params: [&(dyn postgres_types::ToSql + Sync); 8] = [
                    &self.table,
                    &self.consumer,
                    &event,
                    &name,
                    &version,
                    &digest,
                    &key_id,
                    &detail,
                ];
            let insert = client.execute(
                "INSERT INTO masq.policy_events \
                   (target_table, consumer, event, policy_name, policy_version, policy_digest, key_id, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &params,
            );
            self.database.answer("recording a policy event", insert).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %format!("{e:#}"), event, "cannot record policy event (run `masq db init` to create masq.policy_events)");
        }
    }
}

/// `masq status`: the policy each consumer of a table serves, and recent refusals.
pub async fn status(database: &Database, table: &str) -> anyhow::Result<String> {
    let client = database.connect().await?;
    let mut out = String::new();
    let serving = database
        .answer("reading masq.policy_events", client.query(
            "SELECT DISTINCT ON (consumer) consumer, event, policy_name, policy_version, policy_digest, key_id, \
                    to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM masq.policy_events \
             WHERE target_table = $1 AND event IN ('started', 'swapped', 'key_rotated', 'stopped') \
             ORDER BY consumer, at DESC, id DESC",
            &[&table],
        ))
        .await
        .map_err(|e| explain(e, database))?;
    if serving.is_empty() {
        let _ = writeln!(out, "no consumer of {table} has started yet");
    }
    for row in &serving {
        let event: &str = row.get(1);
        let state = if event == "stopped" {
            "stopped"
        } else {
            "serving"
        };
        let _ = writeln!(
            out,
            "{} {state}: policy {} {} (sha256 {}), key {}, since {}",
            row.get::<_, &str>(0),
            row.get::<_, Option<&str>>(2).unwrap_or("?"),
            row.get::<_, Option<&str>>(3).unwrap_or("?"),
            row.get::<_, Option<&str>>(4).unwrap_or("?"),
            row.get::<_, Option<&str>>(5).unwrap_or("unkeyed"),
            row.get::<_, &str>(6),
        );
    }
    let refusals = database
        .answer("reading masq.policy_events", client.query(
            "SELECT consumer, event, detail, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM masq.policy_events WHERE target_table = $1 AND event IN ('refused', 'key_refused') \
             ORDER BY at DESC, id DESC LIMIT 5",
            &[&table],
        ))
        .await
        .map_err(|e| explain(e, database))?;
    for row in &refusals {
        let _ = writeln!(
            out,
            "{} {} at {}: {}",
            row.get::<_, &str>(0),
            row.get::<_, &str>(1),
            row.get::<_, &str>(3),
            row.get::<_, Option<&str>>(2).unwrap_or("")
        );
    }
    let by_version = database
        .answer(
            "reading masq.ledger",
            client.query(
                "SELECT policy_name, policy_version, left(policy_digest, 12), outcome, count(*) \
             FROM masq.ledger WHERE target_table = $1 \
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
                &[&table],
            ),
        )
        .await
        .map_err(|e| explain(e, database))?;
    for row in &by_version {
        let _ = writeln!(
            out,
            "ledger: {} {} ({}...) {} {}",
            row.get::<_, &str>(0),
            row.get::<_, &str>(1),
            row.get::<_, &str>(2),
            row.get::<_, &str>(3),
            row.get::<_, i64>(4)
        );
    }
    Ok(out)
}

/// `masq status` errors: what failed, where, and what to do.
fn explain(e: anyhow::Error, database: &Database) -> anyhow::Error {
    match e.downcast_ref::<tokio_postgres::Error>() {
        Some(pg) if pg.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            anyhow::anyhow!(
                "masq's tables are missing in {}: run `masq db init` first",
                database.describe()
            )
        }
        Some(pg) => anyhow::anyhow!(
            "cannot read masq's tables in {}: {}",
            database.describe(),
            super::sql::server_message(pg)
        ),
        None => e,
    }
}
