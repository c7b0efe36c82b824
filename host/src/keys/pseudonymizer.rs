//! How the `pseudonym` and `seal` imports turn values into tokens: keyed (a key ring) or
//! unkeyed (plain SHA-256).

use super::ring::{KeyRing, push_hex};
use sha2::{Digest, Sha256};
use std::path::Path;

/// How the `pseudonym` and `seal` imports turn values into tokens.
#[derive(Clone, Debug)]
pub enum Pseudonymizer {
    /// Pseudonyms `<key-id>:<hex HMAC-SHA-256>` and sealed tokens `<key-id>.<base64url>`
    /// under the active key; every key of the file loaded for revealing.
    Keyed(KeyRing),
    /// Plain SHA-256 hex: reversible by brute force for small value spaces. Cannot seal.
    Unkeyed,
}

impl Pseudonymizer {
    /// Loads every key of a key file; the active one makes new tokens.
    pub fn from_key_file(path: &Path) -> anyhow::Result<Pseudonymizer> {
        Ok(Pseudonymizer::Keyed(KeyRing::load(path)?))
    }

    /// The token for one value (the `pseudonym` import).
    pub fn token(&self, value: &str) -> String {
        match self {
            Pseudonymizer::Keyed(ring) => ring.pseudonym(value),
            Pseudonymizer::Unkeyed => {
                let mut token = String::with_capacity(64);
                push_hex(&mut token, &Sha256::digest(value.as_bytes()));
                token
            }
        }
    }

    /// The sealed token for one value (the `seal` import), or None without keys.
    pub fn seal(&self, value: &str) -> Option<String> {
        match self {
            Pseudonymizer::Keyed(ring) => Some(ring.seal(value)),
            Pseudonymizer::Unkeyed => None,
        }
    }

    /// Whether `seal` works: a policy importing it loads only then.
    pub fn can_seal(&self) -> bool {
        matches!(self, Pseudonymizer::Keyed(_))
    }

    /// The active key id, if keyed.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Pseudonymizer::Keyed(ring) => Some(ring.active_id()),
            Pseudonymizer::Unkeyed => None,
        }
    }

    /// What the log says about the mode (key ids only, never a key).
    pub fn describe(&self) -> String {
        match self {
            Pseudonymizer::Keyed(ring) => format!(
                "keyed HMAC-SHA-256 pseudonyms and AES-SIV sealing, active key id {} ({} key(s) loaded)",
                ring.active_id(),
                ring.ids().len()
            ),
            Pseudonymizer::Unkeyed => "UNKEYED SHA-256".to_string(),
        }
    }
}
