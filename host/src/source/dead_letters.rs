//! A table's dead letters as messages, oldest first: what `masq replay` reads. The receipt of
//! each is its dead-letter id; the sink, in replay mode, moves each one in the transaction that
//! writes its new outcome (a row written, or the dead letter kept with its new reason).
//!
//! Sealed bodies are opened with the key file replay was given; one that does not open stops
//! the replay with the letter's id and key id, and nothing of it is written. Letters stored
//! without a key file hold only their body's shape: they cannot be replayed and stay where
//! they are (`shape_only` counts them for the summary).

use super::{Message, Source};
use crate::keys::{KeyRing, SealedLetter};
use crate::sink::database::Database;
use anyhow::{anyhow, bail};
use postgres_types::Type;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Dead letters handed out per receive.
const PAGE: i64 = 100;

#[derive(Clone)]
pub struct DeadLetterSource {
    database: Database,
    table: String,
    /// The id of the last dead letter handed out; the next page starts after it, so a dead
    /// letter that stays dead (updated in place) is not read again.
    after: Arc<Mutex<i64>>,
    client: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
    /// Opens sealed bodies; `None` without a key file.
    ring: Option<KeyRing>,
}

impl DeadLetterSource {
    pub fn new(database: &Database, table: &str, ring: Option<KeyRing>) -> DeadLetterSource {
        DeadLetterSource {
            database: database.clone(),
            table: table.to_string(),
            after: Arc::new(Mutex::new(0)),
            client: Arc::new(tokio::sync::Mutex::new(None)),
            ring,
        }
    }

    /// Dead letters of the table that hold only their body's shape: replay cannot send them.
    pub async fn shape_only(&self) -> anyhow::Result<i64> {
        let client = self.database.connect().await?;
        self.database
            .answer(
                "counting dead letters stored without their body",
                client.query_typed_one(
                    "SELECT count(*) FROM masq.dead_letters WHERE target_table = $1 \
                     AND body IS NULL AND body_sealed IS NULL",
                    &[(&self.table, Type::TEXT)],
                ),
            )
            .await
            .map(|row| row.get(0))
    }

    /// The body of dead letter `id`: in clear, or opened with the key ring.
    fn body(
        &self,
        id: i64,
        message_id: &str,
        clear: Option<String>,
        sealed: Option<(Vec<u8>, String)>,
    ) -> anyhow::Result<String> {
        let Some((bytes, key_id)) = sealed else {
            return clear.ok_or_else(|| anyhow!("dead letter {id} has no body"));
        };
        let Some(ring) = &self.ring else {
            bail!(
                "dead letter {id} is sealed under key {key_id}: replay it with the key file that                  holds that key (--key-file FILE); nothing was replayed from this page"
            );
        };
        let plain = ring
            .open_letter(&SealedLetter { key_id, bytes }, message_id)
            .map_err(|e| {
                anyhow!(
                    "cannot open dead letter {id}: {e}. Replay with the key file that sealed it;                      nothing was replayed from this page"
                )
            })?;
        String::from_utf8(plain).map_err(|_| anyhow!("dead letter {id} does not hold text"))
    }
}

impl Source for DeadLetterSource {
    fn name(&self) -> &str {
        "replay"
    }

    fn max_receivers(&self) -> usize {
        1
    }

    fn max_chunk(&self) -> usize {
        PAGE as usize
    }

    fn finite(&self) -> bool {
        true
    }

    async fn receive(&self, _wait: Duration) -> anyhow::Result<Vec<Message>> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            *client = Some(self.database.connect().await?);
        }
        let client = client.as_ref().expect("connected above");
        let after = *self.after.lock().expect("cursor lock");
        let rows = self
            .database
            .answer(
                "reading dead letters",
                client.query_typed(
                    "SELECT id, message_id, body, (extract(epoch FROM sent_at) * 1000)::int8, receive_count, \
                       body_sealed, key_id \
                     FROM masq.dead_letters WHERE target_table = $1 AND id > $2 \
                       AND (body IS NOT NULL OR body_sealed IS NOT NULL) ORDER BY id LIMIT $3",
                    &[
                        (&self.table, Type::TEXT),
                        (&after, Type::INT8),
                        (&PAGE, Type::INT8),
                    ],
                ),
            )
            .await?;
        let messages = rows
            .iter()
            .map(|r| {
                let (id, message_id): (i64, String) = (r.get(0), r.get(1));
                let sealed = r
                    .get::<_, Option<Vec<u8>>>(5)
                    .zip(r.get::<_, Option<String>>(6));
                let body = self.body(id, &message_id, r.get(2), sealed)?;
                Ok(Message::new(
                    message_id,
                    id.to_string(),
                    body,
                    r.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
                    r.get::<_, Option<i32>>(4).unwrap_or(1) as u32,
                ))
            })
            .collect::<anyhow::Result<Vec<Message>>>()?;
        if let Some(last) = rows.last() {
            *self.after.lock().expect("cursor lock") = last.get(0);
        }
        Ok(messages)
    }

    // The sink deletes or updates each dead letter in the transaction that decides it.
    async fn acknowledge(&self, _receipts: &[&str]) {}

    // A dead letter not replayed simply stays; the next replay reads it again.
    async fn release(&self, _receipts: &[&str], _delay: Duration) {}

    fn hold_period(&self) -> Option<Duration> {
        None
    }

    async fn extend(&self, _receipts: &[&str]) {}
}
