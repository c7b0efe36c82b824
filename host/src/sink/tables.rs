//! masq's own tables (the ledger, the dead letters, the policy events) and the login-events
//! table, created by `masq db init`. Safe to run again, and from several processes at once.

use super::database::Database;
use super::ledger::retention::Retention;
use super::ledger::schema::{self as ledger_schema, Migration};
use super::schema::TableName;
use super::sql;
use anyhow::anyhow;
use tokio_postgres::Client;

/// masq's own tables besides the ledger (`ledger/ledger.sql`): the dead letters and the
/// policy events.
pub const MASQ_TABLES: &str = "
CREATE SCHEMA IF NOT EXISTS masq;
CREATE TABLE IF NOT EXISTS masq.dead_letters (
    id               bigserial   PRIMARY KEY,
    target_table     text        NOT NULL,
    message_id       text        NOT NULL,
    -- The body in clear: only with `--dead-letter-plaintext`, or written by an earlier masq.
    body             text,
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
-- The body sealed under a key of the key file (AES-SIV, `keys::ring::seal_letter`), that key's
-- id, or without a key file only the body's shape (length, SHA-256, member names and types).
-- Added to a table made by an earlier masq, whose bodies are all in clear (`masq dead-letters
-- seal` encrypts them in place).
ALTER TABLE masq.dead_letters ALTER COLUMN body DROP NOT NULL;
ALTER TABLE masq.dead_letters ADD COLUMN IF NOT EXISTS body_sealed bytea;
ALTER TABLE masq.dead_letters ADD COLUMN IF NOT EXISTS key_id text;
ALTER TABLE masq.dead_letters ADD COLUMN IF NOT EXISTS body_shape jsonb;
-- Every policy load, swap and refusal, per consumer: what `masq status` shows.
CREATE TABLE IF NOT EXISTS masq.policy_events (
    id              bigserial   PRIMARY KEY,
    target_table    text        NOT NULL,
    consumer        text        NOT NULL,
    event           text        NOT NULL CHECK (event IN ('started', 'swapped', 'refused', 'key_rotated', 'key_refused', 'stopped')),
    -- The policy version concerned, as in dead letters (NULL for key events).
    policy_name text, policy_version text, policy_digest text,
    key_id          text,
    detail          text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS policy_events_by_table ON masq.policy_events (target_table, at);
-- Dead letters may hold clear bodies (an earlier masq's, or `--dead-letter-plaintext`): `init`
-- takes every grant on them away from everyone but their owner (PUBLIC included), whatever
-- granted it.
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

/// What `db init` did beyond creating what was missing.
pub struct InitReport {
    /// Roles (or PUBLIC) that could read the dead letters before and no longer can.
    pub revoked: Vec<String>,
    pub owner: String,
    /// What moving an earlier masq's ledger did, if there was one.
    pub migrated: Option<Migration>,
    /// Dead letters (of every table) whose body an earlier masq stored in clear.
    pub clear_letters: i64,
}

/// Creates everything `masq run` needs, and takes every grant on the dead letters (raw
/// bodies) away from everyone but their owner, whether it came from a GRANT or from
/// `ALTER DEFAULT PRIVILEGES`. Concurrent callers wait on one advisory lock, because
/// `CREATE ... IF NOT EXISTS` alone can still collide on the catalog.
pub async fn create(
    client: &mut Client,
    database: &Database,
    table: &TableName,
    retention: Retention,
) -> anyhow::Result<InitReport> {
    let explain = |e: tokio_postgres::Error| {
        anyhow!(
            "cannot create masq's tables in {}: {}. The user needs CREATE on the database, or \
             ownership of an existing masq schema and table {table}",
            database.describe(),
            sql::server_message(&e)
        )
    };
    let work = async {
        let tx = client.transaction().await?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(7403511)")
            .await?;
        let migrated = ledger_schema::create(&tx, retention).await?;
        tx.batch_execute(MASQ_TABLES).await?;
        if let Some(schema) = &table.schema {
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                sql::ident(schema)
            ))
            .await?;
        }
        tx.batch_execute(&login_table(table)).await?;
        // Registered here, so a consumer running as a role without INSERT on masq.targets can
        // write to it. Looked up first: an insert that finds the name takes an id all the same.
        let name = table.to_string();
        tx.execute_typed(
            "INSERT INTO masq.targets (name) SELECT $1 \
             WHERE NOT EXISTS (SELECT FROM masq.targets WHERE name = $1)",
            &[(&name, postgres_types::Type::TEXT)],
        )
        .await?;
        let grantees: Vec<String> = tx
            .query_typed(
                "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END \
                 FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a \
                 LEFT JOIN pg_roles r ON r.oid = a.grantee \
                 WHERE c.oid = 'masq.dead_letters'::regclass AND a.grantee <> c.relowner",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !grantees.is_empty() {
            tx.batch_execute(&format!(
                "REVOKE ALL ON masq.dead_letters FROM {}",
                grantees.join(", ")
            ))
            .await?;
        }
        let owner: String = sql::scalar(
            &tx,
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'masq.dead_letters'::regclass",
        )
        .await?;
        let clear_letters: i64 = sql::scalar(
            &tx,
            "SELECT count(*) FROM masq.dead_letters WHERE body IS NOT NULL",
        )
        .await?;
        tx.commit().await?;
        Ok(InitReport {
            revoked: grantees,
            owner,
            migrated,
            clear_letters,
        })
    };
    database
        .answer("creating masq's tables", async {
            work.await.map_err(explain)
        })
        .await
}
