//! Dead letters back through a (fixed) policy. Each replayed message moves in one transaction:
//! its row is written and its dead letter deleted, or its dead letter is updated with the new
//! reason. The ledger row, written when the message first died, is the guard: it flips from
//! `dead_letter` to `written` exactly once, so a second replay (or two at once) writes nothing
//! twice.

use super::postgres::PostgresSink;
use crate::batch::{Item, Provenance, Verdict};
use crate::source::Message;
use postgres_types::ToSql;

/// One dead letter as stored.
pub struct DeadLetter {
    pub id: i64,
    pub message: Message,
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub written: u64,
    pub dropped: u64,
    pub still_dead: u64,
    /// Dead letters another replay took first.
    pub skipped: u64,
}

impl PostgresSink {
    /// Up to `limit` dead letters of this table with id above `after`, oldest first.
    pub async fn dead_letters(&self, after: i64, limit: i64) -> anyhow::Result<Vec<DeadLetter>> {
        let rows = self
            .client()
            .query(
                "SELECT id, message_id, body, (extract(epoch FROM sent_at) * 1000)::int8, receive_count \
                 FROM masq.dead_letters WHERE target_table = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&self.target(), &after, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DeadLetter {
                id: r.get(0),
                message: Message {
                    id: r.get(1),
                    receipt: String::new(),
                    body: r.get(2),
                    sent_ms: r.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
                    receive_count: r.get::<_, Option<i32>>(4).unwrap_or(1) as u32,
                },
            })
            .collect())
    }

    /// Applies new verdicts to dead letters (`items[i]` belongs to `dead[i]`).
    pub async fn replay(
        &mut self,
        dead: &[DeadLetter],
        items: &[Item],
        provenance: &Provenance,
    ) -> anyhow::Result<ReplayReport> {
        let mut report = ReplayReport::default();
        let schema = self.schema();
        let target = self.target().to_string();
        let mut tx = self.client_mut().transaction().await?;
        for (letter, item) in dead.iter().zip(items) {
            // Taken by a concurrent replay, or already replayed: leave it alone.
            let locked = tx
                .query_opt(
                    "SELECT id FROM masq.dead_letters WHERE id = $1 FOR UPDATE SKIP LOCKED",
                    &[&letter.id],
                )
                .await?;
            if locked.is_none() {
                report.skipped += 1;
                continue;
            }
            let mut verdict = item.verdict.clone();
            if let Verdict::Row(fields) = &verdict
                && let Err(reason) = schema.row(fields)
            {
                verdict = Verdict::Dead {
                    stage: crate::batch::Stage::Sink,
                    reason,
                };
            }
            let outcome = match &verdict {
                Verdict::Row(_) => "written",
                Verdict::Drop => "dropped",
                Verdict::Dead { .. } => "dead_letter",
            };
            if outcome != "dead_letter" {
                let sp = tx.savepoint("masq_replay").await?;
                let claimed = sp
                    .execute(
                        "UPDATE masq.ledger SET outcome = $3, policy_name = $4, policy_version = $5, \
                           policy_digest = $6, processed_at = now() \
                         WHERE target_table = $1 AND message_id = $2 AND outcome = 'dead_letter'",
                        &[&target, &letter.message.id, &outcome, &provenance.name, &provenance.version, &provenance.digest],
                    )
                    .await?;
                if claimed == 0 {
                    // The ledger says this message was already written: only the stale dead
                    // letter remains to clean up.
                    sp.rollback().await?;
                    tx.execute("DELETE FROM masq.dead_letters WHERE id = $1", &[&letter.id])
                        .await?;
                    report.skipped += 1;
                    continue;
                }
                let inserted = match &verdict {
                    Verdict::Row(fields) => {
                        let row = schema.row(fields).expect("checked above");
                        let (columns, cells) = (row.columns, row.cells);
                        let names: Vec<String> = columns
                            .iter()
                            .map(|&c| super::sql::ident(&schema.columns[c].name))
                            .collect();
                        let params: Vec<String> =
                            (1..=columns.len()).map(|n| format!("${n}")).collect();
                        let sql = if columns.is_empty() {
                            format!("INSERT INTO {} DEFAULT VALUES", schema.table.quoted())
                        } else {
                            format!(
                                "INSERT INTO {} ({}) VALUES ({})",
                                schema.table.quoted(),
                                names.join(", "),
                                params.join(", ")
                            )
                        };
                        let values: Vec<&(dyn ToSql + Sync)> =
                            cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                        sp.execute(&sql, &values).await
                    }
                    _ => Ok(0),
                };
                match inserted {
                    Ok(_) => {
                        sp.commit().await?;
                        tx.execute("DELETE FROM masq.dead_letters WHERE id = $1", &[&letter.id])
                            .await?;
                        if outcome == "written" {
                            report.written += 1;
                        } else {
                            report.dropped += 1;
                        }
                        continue;
                    }
                    Err(e) => {
                        sp.rollback().await?;
                        let why = e
                            .as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or_else(|| e.to_string());
                        verdict = Verdict::Dead {
                            stage: crate::batch::Stage::Sink,
                            reason: super::sql::storable(&format!(
                                "PostgreSQL refused the row: {why}"
                            ))
                            .into_owned(),
                        };
                    }
                }
            }
            // Every other verdict has moved on above; this one stays a dead letter, with the
            // new policy's reason.
            if let Verdict::Dead { stage, reason } = &verdict {
                tx.execute(
                    "UPDATE masq.dead_letters SET reason = $2, stage = $3, policy_name = $4, policy_version = $5, \
                       policy_digest = $6, dead_lettered_at = now() WHERE id = $1",
                    &[&letter.id, &super::sql::storable(reason), &stage.as_str(), &provenance.name, &provenance.version, &provenance.digest],
                )
                .await?;
                report.still_dead += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}
