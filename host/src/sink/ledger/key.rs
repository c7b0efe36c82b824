//! How the ledger keeps a message id and an outcome, in as few bytes as stay faithful.
//!
//! An SQS message id is a UUID in its canonical text form: the ledger keeps its 16 bytes in a
//! `uuid` column, and `id::text` gives the original back exactly. Any other id keeps its text
//! in `text_id`, and its `id` is a version-8 UUID (RFC 9562's custom version) made from that
//! text, so it can never equal an SQS id (version 4). One unique index on `id` then guards
//! every kind:
//!
//! - `masq load`'s `<source-id>:<line>`: the first 11 bytes are the SHA-256 of the source id,
//!   the last 5 the line number. A load's ids then rise line after line, so its claims append
//!   to the right edge of the index instead of landing on random pages (measured: a third of
//!   the database's ledger work, and pages that stay full), and masq hashes the source id
//!   once per load, not once per line. Two source ids would have to agree in 82 bits of
//!   SHA-256 to share lines: with a million source ids in one table, a chance of 1 in 10^13.
//!   Line numbers from 2^40 (a trillion) on take the next form.
//! - anything else (an upper-case or braced UUID): the first 16 bytes of its SHA-256.
//!
//! `masq.message_uuid` in the database computes the same (the migration of an old ledger uses
//! it), and a test checks that they agree.

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
                uuid: line_uuid(id).unwrap_or_else(|| named_uuid(id)),
                text: Some(id.to_string()),
            },
        }
    }
}

/// The source id and line number of a `masq load` line id, `<source-id>:<line>` with the
/// line number in decimal as masq writes it (no sign, no leading zero, below 2^40); `None` for
/// any other text.
pub fn line_parts(id: &str) -> Option<(&str, u64)> {
    let (source, line) = id.rsplit_once(':')?;
    if line.is_empty() || line.len() > 13 || line.starts_with('0') || !line.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let line: u64 = line.parse().ok().filter(|n| *n < 1 << 40)?;
    Some((source, line))
}

/// The UUID of a `masq load` line id; `None` for any other text.
fn line_uuid(id: &str) -> Option<Uuid> {
    line_parts(id).map(|(source, line)| line_uuid_of(source, line))
}

/// The UUID of line `line` of `source`: what `LedgerId::of` gives `<source>:<line>`.
pub fn line_uuid_of(source: &str, line: u64) -> Uuid {
    source_uuid(source_prefixes(source).0, line)
}

/// The UUID of the ledger entry that claims block `block` (lines `100 * block + 1` to
/// `100 * block + 100`) of `source` (see `blocks`). Its variant bits are 110 where every
/// other id of the ledger has 10, so the kinds never meet and `masq.ledger_entries` tells a
/// block from a message by its id alone.
pub fn block_uuid(source: &str, block: u64) -> Uuid {
    source_uuid(source_prefixes(source).1, block)
}

fn source_uuid(prefix: [u8; 11], n: u64) -> Uuid {
    let mut out = [0u8; 16];
    out[..11].copy_from_slice(&prefix);
    out[11..].copy_from_slice(&n.to_be_bytes()[3..]);
    Uuid(out)
}

/// The first 11 bytes of a source's line ids and of its block ids: SHA-256 of the source id,
/// with the version (8) and variant bits (10 for lines, 110 for blocks). A load's lines share
/// one source id, so the last one is remembered per thread: one hash per load, not one per
/// line.
fn source_prefixes(source: &str) -> ([u8; 11], [u8; 11]) {
    type Prefixes = ([u8; 11], [u8; 11]);
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, Prefixes)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((s, prefixes)) if s == source => *prefixes,
            _ => {
                let digest = Sha256::digest(source.as_bytes());
                let mut line = [0u8; 11];
                line.copy_from_slice(&digest[..11]);
                mark_version_8(&mut line);
                let mut block = line;
                block[8] = (block[8] & 0x1f) | 0xc0;
                *last = Some((source.to_string(), (line, block)));
                (line, block)
            }
        }
    })
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
    mark_version_8(&mut out);
    Uuid(out)
}

/// Sets the version nibble (byte 6) to 8 and the RFC variant bits (byte 8) of a UUID's
/// leading bytes.
fn mark_version_8(bytes: &mut [u8]) {
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
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
        for text in ["fixture:017", "fixture", "fixture:", "fixture:1x", "F"] {
            let digest = Sha256::digest(text.as_bytes());
            let mut expected = digest[..16].to_vec();
            expected[6] = (expected[6] & 0x0f) | 0x80;
            expected[8] = (expected[8] & 0x3f) | 0x80;
            assert_eq!(LedgerId::of(text).uuid.0.to_vec(), expected, "{text}");
        }
    }

    #[test]
    fn load_line_ids_are_the_source_hash_then_the_line_number() {
        let digest = Sha256::digest(b"fixture:a");
        let id = LedgerId::of("fixture:a:17");
        let mut expected = digest[..11].to_vec();
        expected[6] = (expected[6] & 0x0f) | 0x80;
        expected[8] = (expected[8] & 0x3f) | 0x80;
        expected.extend_from_slice(&[0, 0, 0, 0, 17]);
        assert_eq!(id.uuid.0.to_vec(), expected);
        assert_eq!(id.text.as_deref(), Some("fixture:a:17"));
        // Rising with the line number, so a load's claims append to its index.
        let lines: Vec<Uuid> = [1u64, 2, 9, 10, 255, 256, (1 << 40) - 1]
            .iter()
            .map(|n| LedgerId::of(&format!("f:{n}")).uuid)
            .collect();
        assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "{lines:?}");
        // Another source id, the cache notwithstanding, gets other ids.
        assert_ne!(LedgerId::of("g:1").uuid, LedgerId::of("f:1").uuid);
        assert_eq!(LedgerId::of("f:1").uuid, lines[0]);
        // Texts that are not the line form masq writes keep the full hash: "f:01" is not "f:1".
        assert_ne!(LedgerId::of("f:01").uuid, LedgerId::of("f:1").uuid);
        // From 2^40 on, the full hash too.
        let big = LedgerId::of("f:1099511627776").uuid;
        assert_eq!(big.0.to_vec(), named_uuid("f:1099511627776").0.to_vec());
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
