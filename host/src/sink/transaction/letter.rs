//! A dead letter on its way into `masq.dead_letters`: stored (its body sealed, reduced to its
//! shape or in clear, as `letter_body` decides), stored under a savepoint when the database
//! might refuse it, or updated when a replayed message fails again.

use super::super::letter_body::{LetterBodies, StoredBody};
use crate::pipeline::batch::{Item, Provenance, Stage};
use crate::sink::sql::{self, ErrorClass, storable};
use postgres_types::{ToSql, Type};
use tokio_postgres::Transaction;

const DEAD_LETTER: &str = "INSERT INTO masq.dead_letters \
       (reason, stage, policy_name, policy_version, policy_digest, target_table, message_id, \
        body, sent_at, receive_count, body_sealed, key_id, body_shape) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::int8 / 1000.0), $10, $11, $12, \
        $13::jsonb)";

/// One dead letter on its way into `masq.dead_letters`.
#[derive(Clone, Copy)]
pub(super) struct Letter<'a> {
    pub target: &'a str,
    pub bodies: &'a LetterBodies,
    pub id: &'a str,
    pub item: &'a Item,
    pub stage: Stage,
    pub reason: &'a str,
    pub provenance: &'a Provenance,
}

impl Letter<'_> {
    /// What a new dead letter and a replayed one both set, in this order: the reason, the
    /// stage, the policy's name, version and digest.
    fn outcome(&self) -> [String; 5] {
        [
            storable(self.reason).into_owned(),
            self.stage.as_str().to_string(),
            storable(&self.provenance.name).into_owned(),
            storable(&self.provenance.version).into_owned(),
            self.provenance.digest.clone(),
        ]
    }

    pub(super) async fn insert(&self, tx: &Transaction<'_>) -> Result<u64, tokio_postgres::Error> {
        let m = &self.item.message;
        let [reason, stage, name, version, digest] = self.outcome();
        // Sealed bytes are exact (bytea); only a clear body needs its NUL characters escaped.
        let (mut clear, mut sealed, mut key_id, mut shape) = (None, None, None, None);
        match self.bodies.store(&m.body, self.id) {
            StoredBody::Sealed(letter) => (sealed, key_id) = (Some(letter.bytes), Some(letter.key_id)),
            StoredBody::Shape(s) => shape = Some(s.to_string()),
            StoredBody::Clear(body) => clear = Some(storable(&body).into_owned()),
        }
        let (sent, receives) = (m.sent_ms as i64, m.receive_count as i32);
        let mut params = sql::texts(&[&reason, &stage, &name, &version, &digest]);
        params.extend(sql::texts(&[&self.target, &self.id, &clear]));
        params.extend([
            (&sent as &(dyn ToSql + Sync), Type::INT8),
            (&receives, Type::INT4),
            (&sealed, Type::BYTEA),
            (&key_id, Type::TEXT),
            (&shape, Type::TEXT),
        ]);
        tx.execute_typed(DEAD_LETTER, &params).await
    }

    /// As `insert`, under a savepoint: should the database still refuse the letter (a
    /// trigger, a constraint added by hand), it is stored with its reason replaced by the
    /// refusal, so the message is kept and the batch goes on.
    pub(super) async fn insert_guarded(&self, tx: &mut Transaction<'_>) -> Result<(), tokio_postgres::Error> {
        let sp = tx.savepoint("masq_letter").await?;
        match self.insert(&sp).await {
            Ok(_) => sp.commit().await,
            Err(e) if sql::classify(&e) == ErrorClass::Data => {
                sp.rollback().await?;
                let reason = format!(
                    "the dead letter itself was refused by PostgreSQL ({}); its first reason is lost",
                    sql::server_message(&e)
                );
                Letter {
                    reason: &reason,
                    ..*self
                }
                .insert(tx)
                .await
                .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// A replayed message that still fails: its dead letter stays, with the new reason.
    pub(super) async fn update(&self, tx: &Transaction<'_>, letter: i64) -> Result<(), tokio_postgres::Error> {
        let [reason, stage, name, version, digest] = self.outcome();
        let mut params = sql::texts(&[&reason, &stage, &name, &version, &digest]);
        params.push((&letter, Type::INT8));
        tx.execute_typed(
            "UPDATE masq.dead_letters SET reason = $1, stage = $2, policy_name = $3, \
               policy_version = $4, policy_digest = $5, dead_lettered_at = now() WHERE id = $6",
            &params,
        )
        .await
        .map(|_| ())
    }
}
