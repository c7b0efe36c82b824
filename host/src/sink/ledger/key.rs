//! How the ledger keeps a message id and an outcome, in as few bytes as stay faithful.
//!
//! An SQS message id is a UUID in its canonical text form: the ledger keeps its 16 bytes in a
//! `uuid` column, and `id::text` gives the original back exactly. Any other id (`masq load`'s
//! `<source-id>:<line>`, an upper-case or braced UUID) keeps its text in `text_id`, and its
//! `id` is a name-based UUID of that text: the first 16 bytes of its SHA-256 with the version
//! nibble set to 8 (RFC 9562's custom version), so it can never equal an SQS id (version 4).
//! One unique index on `id` then guards both kinds; two texts would have to agree in 122
//! bits of SHA-256 to be taken for one another. `masq.message_uuid` in the database computes
//! the same (the migration of an old ledger uses it), and a test checks that they agree.

use bytes::BytesMut;
use postgres_types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use sha2::{Digest, Sha256};
use std::error::Error;

/// A message's `id` in the ledger: 16 bytes, sent and read as PostgreSQL's `uuid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl ToSql for Uuid {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Uuid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Uuid, Box<dyn Error + Sync + Send>> {
        Ok(Uuid(raw.try_into().map_err(|_| {
            format!("a uuid is 16 bytes, PostgreSQL sent {}", raw.len())
        })?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
}

/// A message id as the ledger keeps it: the uuid, and the text when the uuid alone does not
/// give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerId {
    pub uuid: Uuid,
    pub text: Option<String>,
}

impl LedgerId {
    /// `id` must already be storable (no NUL): the ledger keeps what the dead letters keep.
    pub fn of(id: &str) -> LedgerId {
        match canonical_uuid(id) {
            Some(uuid) => LedgerId { uuid, text: None },
            None => LedgerId {
                uuid: named_uuid(id),
                text: Some(id.to_string()),
            },
        }
    }
}

/// The 16 bytes of `s` if it is a UUID exactly as PostgreSQL prints one (lower-case hex,
/// hyphens at 8-4-4-4-12), so that printing them gives `s` back.
fn canonical_uuid(s: &str) -> Option<Uuid> {
    let s = s.as_bytes();
    if s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0;
    for (i, &c) in s.iter().enumerate() {
        let value = match c {
            b'-' if [8, 13, 18, 23].contains(&i) => continue,
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        if [8, 13, 18, 23].contains(&i) {
            return None;
        }
        out[nibbles / 2] |= value << (4 * (1 - nibbles % 2));
        nibbles += 1;
    }
    Some(Uuid(out))
}

/// The name-based UUID of an id that is not one: SHA-256, truncated, version 8, RFC variant.
fn named_uuid(s: &str) -> Uuid {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out[6] = (out[6] & 0x0f) | 0x80;
    out[8] = (out[8] & 0x3f) | 0x80;
    Uuid(out)
}

/// What became of a message, as one byte (PostgreSQL's `"char"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Dropped,
    DeadLetter,
}

impl Outcome {
    /// The code in `masq.ledger.outcome`; `masq.ledger_entries` spells it out.
    pub fn code(self) -> i8 {
        (match self {
            Outcome::Written => b'w',
            Outcome::Dropped => b'd',
            Outcome::DeadLetter => b'l',
        }) as i8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(u: Uuid) -> String {
        hex::encode(u.0)
    }

    #[test]
    fn canonical_uuids_keep_only_their_16_bytes() {
        let id = LedgerId::of("5fea7756-0ea4-451a-a703-a558b933e274");
        assert_eq!(hex(id.uuid), "5fea77560ea4451aa703a558b933e274");
        assert_eq!(id.text, None);
    }

    #[test]
    fn other_ids_keep_their_text_and_a_version_8_uuid() {
        for other in [
            "fixture:17",
            "5FEA7756-0EA4-451A-A703-A558B933E274",
            "{5fea7756-0ea4-451a-a703-a558b933e274}",
            "5fea7756a0ea4-451a-a703-a558b933e274",
            "5fea77560ea4451aa703a558b933e274----",
            "",
        ] {
            let id = LedgerId::of(other);
            assert_eq!(id.text.as_deref(), Some(other));
            assert_eq!(id.uuid.0[6] >> 4, 8, "{other}: version nibble");
            assert_eq!(id.uuid.0[8] >> 6, 0b10, "{other}: variant bits");
        }
        assert_ne!(LedgerId::of("f:1").uuid, LedgerId::of("f:2").uuid);
    }

    #[test]
    fn named_uuids_are_truncated_sha256() {
        // The database computes the same in masq.message_uuid; tests/ledger_migration.rs
        // checks that the two agree.
        let digest = Sha256::digest(b"fixture:17");
        let mut expected = digest[..16].to_vec();
        expected[6] = (expected[6] & 0x0f) | 0x80;
        expected[8] = (expected[8] & 0x3f) | 0x80;
        assert_eq!(LedgerId::of("fixture:17").uuid.0.to_vec(), expected);
    }

    #[test]
    fn outcome_codes_are_the_ones_the_table_checks() {
        let codes: Vec<u8> = [Outcome::Written, Outcome::Dropped, Outcome::DeadLetter]
            .iter()
            .map(|o| o.code() as u8)
            .collect();
        assert_eq!(codes, b"wdl");
    }
}
