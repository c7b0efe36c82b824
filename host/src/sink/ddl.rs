//! `masq db init`: the target table (the login-events DDL), the ledger and the dead letters.
//! Safe to run again, and safe to run from several processes at once.

use super::schema::TableName;
use tokio_postgres::Client;

/// masq's own tables. The ledger holds one row per message id per target table: the
/// transaction that writes a message's row also writes its ledger row, so a redelivered
/// message finds its id taken and writes nothing twice.
pub const MASQ_TABLES: &str = "
CREATE SCHEMA IF NOT EXISTS masq;
CREATE TABLE IF NOT EXISTS masq.ledger (
    target_table    text        NOT NULL,
    message_id      text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('written', 'dropped', 'dead_letter')),
    policy_name     text        NOT NULL,
    policy_version  text        NOT NULL,
    policy_digest   text        NOT NULL,
    sent_at         timestamptz,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_table, message_id)
);
CREATE TABLE IF NOT EXISTS masq.dead_letters (
    id               bigserial   PRIMARY KEY,
    target_table     text        NOT NULL,
    message_id       text        NOT NULL,
    body             text        NOT NULL,
    reason           text        NOT NULL,
    stage            text        NOT NULL CHECK (stage IN ('decode', 'policy', 'sink')),
    policy_name      text,
    policy_version   text,
    policy_digest    text,
    sent_at          timestamptz,
    receive_count    integer,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dead_letters_by_table ON masq.dead_letters (target_table, dead_lettered_at);
-- Every policy load, swap and refusal, per consumer: what `masq status` shows.
CREATE TABLE IF NOT EXISTS masq.policy_events (
    id              bigserial   PRIMARY KEY,
    target_table    text        NOT NULL,
    consumer        text        NOT NULL,
    event           text        NOT NULL CHECK (event IN ('started', 'swapped', 'refused', 'key_rotated', 'key_refused', 'stopped')),
    policy_name     text,
    policy_version  text,
    policy_digest   text,
    key_id          text,
    detail          text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS policy_events_by_table ON masq.policy_events (target_table, at);
-- Dead letters hold raw, unmasked bodies: nobody but their owner reads them by default.
REVOKE ALL ON masq.dead_letters FROM PUBLIC;
";

/// The take-home's `user_logins` DDL, verbatim but for the table name.
pub fn login_table(table: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date
);",
        table.quoted()
    )
}

/// Creates everything `masq run` needs. Concurrent callers wait on one advisory lock, because
/// `CREATE ... IF NOT EXISTS` alone can still collide on the catalog.
pub async fn init(client: &mut Client, table: &TableName) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7403511)", &[])
        .await?;
    tx.batch_execute(MASQ_TABLES).await?;
    if let Some(schema) = &table.schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await?;
    }
    tx.batch_execute(&login_table(table)).await?;
    tx.commit().await?;
    Ok(())
}
