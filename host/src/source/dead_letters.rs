//! A table's dead letters as messages, oldest first: what `masq replay` reads. The receipt of
//! each is its dead-letter id; the sink, in replay mode, moves each one in the transaction that
//! writes its new outcome (a row written, or the dead letter kept with its new reason).

use super::{Message, Source};
use crate::sink::database::Database;
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
}

impl DeadLetterSource {
    pub fn new(database: &Database, table: &str) -> DeadLetterSource {
        DeadLetterSource {
            database: database.clone(),
            table: table.to_string(),
            after: Arc::new(Mutex::new(0)),
            client: Arc::new(tokio::sync::Mutex::new(None)),
        }
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
                    "SELECT id, message_id, body, (extract(epoch FROM sent_at) * 1000)::int8, receive_count \
                     FROM masq.dead_letters WHERE target_table = $1 AND id > $2 ORDER BY id LIMIT $3",
                    &[
                        (&self.table, Type::TEXT),
                        (&after, Type::INT8),
                        (&PAGE, Type::INT8),
                    ],
                ),
            )
            .await?;
        let messages: Vec<Message> = rows
            .iter()
            .map(|r| {
                Message::new(
                    r.get(1),
                    r.get::<_, i64>(0).to_string(),
                    r.get(2),
                    r.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
                    r.get::<_, Option<i32>>(4).unwrap_or(1) as u32,
                )
            })
            .collect();
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
