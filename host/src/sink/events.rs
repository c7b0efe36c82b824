//! Policy events in `masq.policy_events`: which consumer put which policy version (and key
//! id) in service when, and which new files it refused. `masq status` reads them back.

use super::database::Database;
use crate::policy::PolicyHost;

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
            let params = crate::sink::sql::texts(&[
                &self.table,
                &self.consumer,
                &event,
                &name,
                &version,
                &digest,
                &key_id,
                &detail,
            ]);
            let insert = client.execute_typed(
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
