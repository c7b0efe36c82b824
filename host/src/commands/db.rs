//! `masq db init` (the target table and masq's own tables) and `masq status` (what each
//! consumer of a table serves, recent refusals, ledger counts per policy version).

use crate::config::DbConfig;
use crate::sink::database::Database;
use crate::sink::tables;
use std::fmt::Write as _;

pub async fn init(config: &DbConfig) -> anyhow::Result<String> {
    let (database, table) = (&config.database, &config.table);
    let mut client = database.connect().await?;
    let report = tables::create(&mut client, database, table).await?;
    let mut out = format!("ready: table {table}, masq.ledger, masq.dead_letters\n");
    if !report.revoked.is_empty() {
        let _ = writeln!(
            out,
            "revoked every privilege on masq.dead_letters (raw message bodies) from {}: only its \
             owner {} (and superusers) can read it. Grant SELECT deliberately to people allowed to \
             see raw PII",
            report.revoked.join(", "),
            report.owner
        );
    }
    Ok(out)
}

pub async fn status(config: &DbConfig) -> anyhow::Result<String> {
    report(&config.database, &config.table.to_string()).await
}

/// `masq status`: the policy each consumer of a table serves, and recent refusals.
async fn report(database: &Database, table: &str) -> anyhow::Result<String> {
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
            crate::sink::sql::server_message(pg)
        ),
        None => e,
    }
}
