//! `masq dead-letters`: what was refused, for everyone allowed to see masq's tables (`list`:
//! ids, stages, reasons, counts; no body), and the bodies themselves for key holders only
//! (`show`, with the key file that sealed them). `seal` encrypts the clear-text bodies an
//! earlier version stored, in place, once.

use crate::config::DbConfig;
use crate::keys::{KeyRing, SealedLetter};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::Path;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// Dead letters shown by `list`, newest first.
const LIST_LIMIT: i64 = 50;

pub async fn list(config: &DbConfig) -> anyhow::Result<String> {
    let (database, table) = (&config.database, config.table.to_string());
    let client = database.connect().await?;
    let counts = database
        .answer(
            "counting dead letters",
            client.query(
                "SELECT stage, count(*) FROM masq.dead_letters WHERE target_table = $1 \
                 GROUP BY stage ORDER BY stage",
                &[&table],
            ),
        )
        .await?;
    let letters = database
        .answer(
            "reading dead letters",
            client.query(
                "SELECT format('%s  %s  %s  %s  %s: %s', id, \
                   to_char(dead_lettered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                   message_id, \
                   CASE WHEN body_sealed IS NOT NULL THEN 'sealed(' || key_id || ')' \
                        WHEN body IS NOT NULL THEN 'CLEAR' ELSE 'shape only' END, \
                   stage, reason) \
                 FROM masq.dead_letters WHERE target_table = $1 ORDER BY id DESC LIMIT $2",
                &[&table, &LIST_LIMIT],
            ),
        )
        .await?;
    let mut out = String::new();
    if counts.is_empty() {
        let _ = writeln!(out, "no dead letters for table {table}");
        return Ok(out);
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|r| format!("{} {}", r.get::<_, i64>(1), r.get::<_, &str>(0)))
        .collect();
    let _ = writeln!(out, "dead letters of {table}: {}", summary.join(", "));
    let _ = writeln!(
        out,
        "id  when  message id  body  stage: reason (newest {LIST_LIMIT})"
    );
    for row in &letters {
        let _ = writeln!(out, "{}", row.get::<_, &str>(0));
    }
    let clear = letters
        .iter()
        .any(|r| r.get::<_, &str>(0).contains("  CLEAR  "));
    if clear {
        let _ = writeln!(
            out,
            "some bodies are stored in clear (written by an earlier masq): seal them with \
             `masq dead-letters seal --key-file FILE`"
        );
    }
    Ok(out)
}

/// The bodies of the dead letters `ids`, each opened with the key file. Nothing is printed
/// unless every one opens.
pub async fn show(config: &DbConfig, ids: &[i64], key_file: &Path) -> anyhow::Result<String> {
    let ring = KeyRing::load(key_file)?;
    let table = config.table.to_string();
    let (_, rows) = query(
        config,
        "reading dead letters",
        "SELECT id, message_id, body, body_sealed, key_id, body_shape::text \
         FROM masq.dead_letters WHERE target_table = $1 AND id = ANY($2) ORDER BY id",
        &[&ids],
    )
    .await?;
    let found: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
        bail!("table {table} has no dead letter {missing}: `masq dead-letters list` shows the ids");
    }
    let mut out = String::new();
    for row in &rows {
        let (id, message_id): (i64, &str) = (row.get(0), row.get(1));
        let body = match (
            row.get::<_, Option<Vec<u8>>>(3),
            row.get::<_, Option<String>>(4),
        ) {
            (Some(bytes), Some(key_id)) => {
                let plain = ring
                    .open_letter(&SealedLetter { key_id, bytes }, message_id)
                    .with_context(|| {
                        format!(
                            "cannot open dead letter {id} with key file {}: nothing was printed",
                            key_file.display()
                        )
                    })?;
                String::from_utf8(plain)
                    .with_context(|| format!("dead letter {id} does not hold text"))?
            }
            _ => match (
                row.get::<_, Option<String>>(2),
                row.get::<_, Option<String>>(5),
            ) {
                (Some(clear), _) => clear,
                (None, Some(shape)) => bail!(
                    "dead letter {id} was stored without its body (masq ran without a key file), \
                     only its shape: {shape}. Nothing was printed"
                ),
                (None, None) => bail!("dead letter {id} has no body"),
            },
        };
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({ "id": id, "message_id": message_id, "body": body })
        );
    }
    Ok(out)
}

/// Seals, under the key file's active key, every dead letter of the table an earlier masq
/// stored in clear. Each in its own statement, so a run stopped half way is simply run again.
pub async fn seal(config: &DbConfig, key_file: &Path) -> anyhow::Result<String> {
    let ring = KeyRing::load(key_file)?;
    let (database, table) = (&config.database, config.table.to_string());
    let (client, clear) = query(
        config,
        "reading clear-text dead letters",
        "SELECT id, message_id, body FROM masq.dead_letters \
         WHERE target_table = $1 AND body IS NOT NULL AND body_sealed IS NULL ORDER BY id",
        &[],
    )
    .await?;
    for row in &clear {
        let (id, message_id, body): (i64, &str, &str) = (row.get(0), row.get(1), row.get(2));
        let sealed = ring.seal_letter(body.as_bytes(), message_id);
        database
            .answer(
                "sealing a dead letter",
                client.execute(
                    "UPDATE masq.dead_letters SET body = NULL, body_sealed = $2, key_id = $3 \
                     WHERE id = $1 AND body IS NOT NULL",
                    &[&id, &sealed.bytes, &sealed.key_id],
                ),
            )
            .await?;
    }
    Ok(format!(
        "sealed {} dead letter(s) of {table} under key {}; none is left in clear\n",
        clear.len(),
        ring.active_id()
    ))
}

/// Connects and runs one query over the table's dead letters: `$1` is the table's name, `more`
/// the parameters after it. The connection stays open for what follows.
async fn query(
    config: &DbConfig,
    what: &str,
    sql: &str,
    more: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<(Client, Vec<Row>)> {
    let table = config.table.to_string();
    let client = config.database.connect().await?;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&table];
    params.extend_from_slice(more);
    let rows = config
        .database
        .answer(what, client.query(sql, &params))
        .await?;
    Ok((client, rows))
}
