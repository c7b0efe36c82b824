//! `masq db init` (the target table and masq's own tables, moving an earlier masq's ledger)
//! and `masq status` (what each consumer of a table serves, recent refusals, the ledger's size
//! and oldest partition, ledger counts per policy version).

use crate::config::DbConfig;
use crate::sink::database::Database;
use crate::sink::ledger::Ledger;
use crate::sink::tables;
use std::fmt::Write as _;
use tokio_postgres::types::Type;

pub async fn init(config: &DbConfig) -> anyhow::Result<String> {
    let (database, table) = (&config.database, &config.table);
    let mut client = database.connect().await?;
    let report = tables::create(&mut client, database, table, config.retention).await?;
    let mut out = format!("ready: table {table}, masq.ledger, masq.dead_letters\n");
    let _ = writeln!(
        out,
        "dead letters: run masq with --key-file to keep their bodies sealed and recoverable \
         (`masq dead-letters show`, `masq replay`); without a key file only their shape is kept"
    );
    if report.clear_letters > 0 {
        let _ = writeln!(
            out,
            "{} dead letter(s) of an earlier masq hold their body in clear: seal them with \
             `masq dead-letters seal --key-file FILE`",
            report.clear_letters
        );
    }
    if let Some(m) = report.migrated {
        let _ = writeln!(
            out,
            "moved the ledger of an earlier masq into the partitioned one: {} entries sent within \
             --ledger-retention {} kept (their messages stay exactly-once), {} older ones dropped",
            m.kept, config.retention, m.dropped
        );
    }
    if !report.revoked.is_empty() {
        let _ = writeln!(
            out,
            "revoked every privilege on masq.dead_letters from {}: only its owner {} (and \
             superusers) can read it. Its bodies are sealed, but its reasons, ids and times are \
             not: grant SELECT deliberately",
            report.revoked.join(", "),
            report.owner
        );
    }
    Ok(out)
}

/// `masq db pack`: packs the given days of the table's ledger, or those due; says what each
/// day's ledger took on disk before and after.
pub async fn pack(config: &DbConfig, days: Vec<chrono::NaiveDate>) -> anyhow::Result<String> {
    let (database, table) = (&config.database, config.table.to_string());
    let ledger = Ledger::open(database, &table, config.retention.0, false).await?;
    if ledger.target == 0 {
        anyhow::bail!("table {table} has no ledger in {}: nothing to pack", database.describe());
    }
    let client = database.connect().await?;
    let days = (!days.is_empty()).then_some(days);
    let before = day_sizes(database, &client, ledger.target).await?;
    let packed = ledger.pack(database, &client, days).await?;
    let after = day_sizes(database, &client, ledger.target).await?;
    let mut out = String::new();
    if packed.is_empty() {
        let _ = writeln!(out, "nothing to pack in the ledger of {table}");
    }
    for p in packed {
        let size = |sizes: &std::collections::HashMap<chrono::NaiveDate, i64>| {
            sizes.get(&p.day).copied().unwrap_or(0)
        };
        let _ = writeln!(
            out,
            "packed {}: {} entries moved; the day's ledger went from {} to {} bytes{}",
            p.day,
            p.moved,
            size(&before),
            size(&after),
            if p.rewritten {
                ""
            } else {
                " (its partition was too busy to rewrite: the space comes back at the next pack)"
            }
        );
    }
    Ok(out)
}

/// Bytes each day of a table's ledger takes: its partition and its packed rows.
async fn day_sizes(
    database: &Database,
    client: &tokio_postgres::Client,
    target: i32,
) -> anyhow::Result<std::collections::HashMap<chrono::NaiveDate, i64>> {
    let rows = database
        .answer(
            "measuring the ledger",
            client.query_typed(
                "SELECT p.day, (coalesce(pg_total_relation_size(to_regclass(format('masq.%I', \
                   format('ledger_%s_%s', p.target, to_char(p.day, 'YYYYMMDD'))))), 0) \
                   + coalesce((SELECT sum(pg_column_size(k.*)) FROM masq.ledger_packed k \
                       WHERE k.target = p.target AND k.day = p.day), 0))::bigint \
                 FROM masq.ledger_partitions p WHERE p.target = $1",
                &[(&target, Type::INT4)],
            ),
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn status(config: &DbConfig) -> anyhow::Result<String> {
    report(&config.database, &config.table.to_string()).await
}

/// `masq status`: the policy each consumer of a table serves, and recent refusals.
async fn report(database: &Database, table: &str) -> anyhow::Result<String> {
    let client = database.connect().await?;
    // Every query of the report: this table's rows of one of masq's tables.
    let query = async |sql: &str| {
        let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] =
            [(&table, Type::TEXT)];
        let rows = client.query_typed(sql, &params);
        let what = format!("reading masq's tables for {table}");
        database
            .answer(&what, rows)
            .await
            .map_err(|e| explain(e, database))
    };
    // Each query formats its own lines, so the report is the rows one after the other.
    let at = "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";
    let serving = query(&format!(
        "SELECT DISTINCT ON (consumer) format('%s %s: policy %s %s (sha256 %s), key %s, since %s', \
           consumer, CASE event WHEN 'stopped' THEN 'stopped' ELSE 'serving' END, \
           coalesce(policy_name, '?'), coalesce(policy_version, '?'), coalesce(policy_digest, '?'), \
           coalesce(key_id, 'unkeyed'), {at}) \
         FROM masq.policy_events \
         WHERE target_table = $1 AND event IN ('started', 'swapped', 'key_rotated', 'stopped') \
         ORDER BY consumer, at DESC, id DESC"
    ))
    .await?;
    let refusals = query(&format!(
        "SELECT format('%s %s at %s: %s', consumer, event, {at}, coalesce(detail, '')) \
         FROM masq.policy_events WHERE target_table = $1 AND event IN ('refused', 'key_refused') \
         ORDER BY at DESC, id DESC LIMIT 5"
    ))
    .await?;
    // masq.ledger_entries reads only this table's partitions.
    let by_version = query(
        "SELECT format('ledger: %s %s (%s...) %s %s', policy_name, policy_version, \
           left(policy_digest, 12), outcome, count(*)) \
         FROM masq.ledger_entries($1) \
         GROUP BY policy_name, policy_version, left(policy_digest, 12), outcome \
         ORDER BY policy_name, policy_version, left(policy_digest, 12), outcome",
    )
    .await?;
    let size = query(
        "SELECT format('ledger size: %s in %s partitions and %s packed (%s days), oldest %s, newest %s', \
           pg_size_pretty(coalesce(sum(pg_total_relation_size(format('masq.%I', \
             format('ledger_%s_%s', p.target, to_char(p.day, 'YYYYMMDD')))::regclass)), 0)), \
           count(*), \
           pg_size_pretty(coalesce((SELECT sum(pg_column_size(k.*)) FROM masq.ledger_packed k \
             WHERE k.target = min(p.target)), 0)), \
           count(p.packed_bits), coalesce(min(p.day)::text, '-'), coalesce(max(p.day)::text, '-')) \
         FROM masq.ledger_partitions p \
         WHERE p.target = (SELECT id FROM masq.targets WHERE name = $1) \
           AND to_regclass(format('masq.%I', format('ledger_%s_%s', p.target, to_char(p.day, 'YYYYMMDD')))) IS NOT NULL",
    )
    .await?;
    let mut out = String::new();
    if serving.is_empty() {
        let _ = writeln!(out, "no consumer of {table} has started yet");
    }
    for row in serving
        .iter()
        .chain(&refusals)
        .chain(&size)
        .chain(&by_version)
    {
        let _ = writeln!(out, "{}", row.get::<_, &str>(0));
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
