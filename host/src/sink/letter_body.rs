//! What of a dead letter's body reaches the database. A dead letter is a message masq could
//! not mask, so its body still holds every PII value it was sent with: it is never stored in
//! clear unless the operator asks for it.
//!
//! - With a key file: sealed (AES-SIV under a key derived from the active key, bound to the
//!   message id), with the key's id beside it. Key holders read it (`masq dead-letters show`)
//!   and replay it (`masq replay --key-file`); a rotation seals new letters under the new key.
//! - Without one: only the body's shape (length, SHA-256, member names and value types), which
//!   says what was wrong with it but cannot give a value back.
//! - `--dead-letter-plaintext` (without a key file): in clear, as masq did before. Warned at
//!   start.

use crate::keys::{Keys, Pseudonymizer, SealedLetter};
use crate::source::decode::body_shape;
use std::sync::Arc;

/// How a sink keeps dead-letter bodies. The key is read for each letter, so a key rotated
/// while masq runs seals the next letter under the new key.
#[derive(Clone)]
pub struct LetterBodies {
    keys: Arc<Keys>,
    plaintext: bool,
}

/// A body as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredBody {
    Sealed(SealedLetter),
    Shape(serde_json::Value),
    Clear(String),
}

impl LetterBodies {
    /// `plaintext` applies only without a key: with one, bodies are always sealed.
    pub fn new(keys: Arc<Keys>, plaintext: bool) -> LetterBodies {
        LetterBodies { keys, plaintext }
    }

    /// The body of the message `message_id` as it is to be stored.
    pub fn store(&self, body: &str, message_id: &str) -> StoredBody {
        match &*self.keys.current() {
            Pseudonymizer::Keyed(ring) => {
                StoredBody::Sealed(ring.seal_letter(body.as_bytes(), message_id))
            }
            Pseudonymizer::Unkeyed if self.plaintext => StoredBody::Clear(body.to_string()),
            Pseudonymizer::Unkeyed => StoredBody::Shape(body_shape(body)),
        }
    }

    /// For the start-up log: where dead-letter bodies go, and how to make them recoverable.
    pub fn describe(&self) -> &'static str {
        match (&*self.keys.current(), self.plaintext) {
            (Pseudonymizer::Keyed(_), _) => {
                "dead-letter bodies are sealed under the key file's active key"
            }
            (Pseudonymizer::Unkeyed, false) => {
                "no key file: dead letters keep only their body's shape (length, SHA-256, member \
                 names and types), not the body; run with --key-file to keep them recoverable"
            }
            (Pseudonymizer::Unkeyed, true) => {
                "--dead-letter-plaintext: dead-letter bodies are stored IN CLEAR, PII included; \
                 anyone who can read masq.dead_letters reads them. Use --key-file to seal them"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;

    const BODY: &str = r#"{"user_id":"u1","ip":"10.0.0.1","device_id":"d-1234"}"#;

    #[test]
    fn keyed_bodies_are_sealed_and_open_only_for_their_message() {
        let ring = KeyRing::ephemeral().unwrap();
        let bodies = LetterBodies::new(Arc::new(Keys::new(Pseudonymizer::Keyed(ring.clone()))), true);
        let StoredBody::Sealed(letter) = bodies.store(BODY, "m-1") else {
            panic!("a keyed sink must seal, even when plaintext is asked for");
        };
        assert_eq!(letter.key_id, ring.active_id());
        assert!(!String::from_utf8_lossy(&letter.bytes).contains("10.0.0.1"));
        assert_eq!(ring.open_letter(&letter, "m-1").unwrap(), BODY.as_bytes());
        assert!(ring.open_letter(&letter, "m-2").is_err());
    }

    #[test]
    fn unkeyed_bodies_keep_only_their_shape() {
        let bodies = LetterBodies::new(Arc::new(Keys::new(Pseudonymizer::Unkeyed)), false);
        let StoredBody::Shape(shape) = bodies.store(BODY, "m-1") else {
            panic!("unkeyed without plaintext must store the shape");
        };
        let text = shape.to_string();
        assert!(!text.contains("10.0.0.1") && !text.contains("d-1234"), "{text}");
        assert_eq!(shape["length"], BODY.len());
        assert_eq!(
            shape["members"],
            serde_json::json!([["user_id", "string"], ["ip", "string"], ["device_id", "string"]])
        );
    }

    #[test]
    fn plaintext_is_stored_in_clear_only_when_asked() {
        let bodies = LetterBodies::new(Arc::new(Keys::new(Pseudonymizer::Unkeyed)), true);
        assert_eq!(bodies.store(BODY, "m-1"), StoredBody::Clear(BODY.to_string()));
    }
}
