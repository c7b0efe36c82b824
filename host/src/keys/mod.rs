//! Keys: the key file, `masq keygen`, and the host functions behind the policies' `pseudonym`
//! and `seal` imports. Keys live only here, in the host; no key byte is ever copied into a
//! policy's memory, logged, or put in an error message.
//!
//! Each master key of the key file serves two algorithms, never with the same bytes:
//! - pseudonyms: HMAC-SHA-256 keyed with the master key itself (the token format predates
//!   sealing, and tables hold such tokens, so it stays exactly as it was);
//! - sealing: AES-SIV (RFC 5297, `Aes256Siv`, no associated data) keyed with
//!   `HKDF-SHA256(salt = none, IKM = master key, info = "masq seal v1", L = 64)`, whose first
//!   32 bytes are the S2V (CMAC) key and the last 32 the CTR key. HKDF's output is
//!   independent of HMAC(master, ·) on the values policies hand in, so neither use weakens
//!   the other.
//!
//! - `file`: the key file's format, `keygen`, atomic writes
//! - `ring`: HMAC, HKDF, AES-SIV, reveal
//! - `pseudonymizer`: what the policy imports call
//! - `Keys`: the pseudonymizer in service, swapped on key rotation

mod file;
mod pseudonymizer;
mod ring;

pub use file::{KeyFile, add_key};
pub use pseudonymizer::Pseudonymizer;
pub use ring::{KeyRing, RevealError, SEAL_OVERHEAD, SealedLetter};

/// The pseudonymizer in use, replaceable while running (key rotation): a batch takes the
/// current one when it starts and keeps it to the end.
pub struct Keys {
    current: std::sync::RwLock<std::sync::Arc<Pseudonymizer>>,
}

impl Keys {
    pub fn new(p: Pseudonymizer) -> Keys {
        Keys {
            current: std::sync::RwLock::new(std::sync::Arc::new(p)),
        }
    }

    pub fn current(&self) -> std::sync::Arc<Pseudonymizer> {
        self.current.read().expect("keys lock").clone()
    }

    pub fn replace(&self, p: Pseudonymizer) {
        *self.current.write().expect("keys lock") = std::sync::Arc::new(p);
    }
}

#[cfg(test)]
mod tests {
    use super::file::add_key;
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn write_key_file(contents: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with_contents(contents)
    }

    // A tiny temp-file helper so the tests need no extra crate.
    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with_contents(contents: &str) -> TempPath {
                let mut id = [0u8; 8];
                getrandom::fill(&mut id).unwrap();
                let path = std::env::temp_dir().join(format!("masq-key-{}.json", hex::encode(id)));
                std::fs::write(&path, contents).unwrap();
                TempPath(path)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn unkeyed_tokens_are_plain_sha256_hex() {
        assert_eq!(
            Pseudonymizer::Unkeyed.token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keyed_tokens_are_hmac_sha256_with_the_key_id() {
        // RFC 4231 test case 2 uses a short key; ours must be 32 bytes, so check against
        // HMAC computed independently with a 32-byte key of 0x0b.
        let key = BASE64.encode([0x0bu8; 32]);
        let file = write_key_file(&format!(r#"{{"active":"k1","keys":{{"k1":"{key}"}}}}"#));
        let p = Pseudonymizer::from_key_file(&file.0).unwrap();
        let token = p.token("Hi There");
        assert!(token.starts_with("k1:"), "{token}");
        assert_eq!(token.len(), 3 + 64);
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0x0b; 32]).unwrap();
        mac.update(b"Hi There");
        assert_eq!(&token[3..], hex::encode(mac.finalize().into_bytes()));
        assert_eq!(p.token("Hi There"), token, "tokens are deterministic");
        assert_ne!(p.token("Hi there"), token);
    }

    #[test]
    fn generated_key_files_load() {
        let kf = KeyFile::generate().unwrap();
        let file = write_key_file(&kf.to_json());
        let p = Pseudonymizer::from_key_file(&file.0).unwrap();
        assert!(p.token("x").starts_with(&format!("{}:", kf.active)));
        assert_ne!(
            KeyFile::generate().unwrap().keys,
            kf.keys,
            "keys are random"
        );
    }

    fn key_file_of(keys: &[(&str, [u8; 32])], active: &str) -> tempfile_path::TempPath {
        let keys: BTreeMap<String, String> = keys
            .iter()
            .map(|(id, k)| (id.to_string(), BASE64.encode(k)))
            .collect();
        write_key_file(
            &KeyFile {
                active: active.into(),
                keys,
            }
            .to_json(),
        )
    }

    fn ring(keys: &[(&str, [u8; 32])], active: &str) -> KeyRing {
        KeyRing::load(&key_file_of(keys, active).0).unwrap()
    }

    #[test]
    fn sealed_tokens_match_an_independent_aes_siv_with_the_documented_kdf() {
        // Computed with Python's `cryptography` (HKDF-SHA256, salt none, info "masq seal v1",
        // 64 bytes; AESSIV(key).encrypt(value, None)), not with the crates used here.
        let r = ring(&[("k1", [0x0b; 32])], "k1");
        assert_eq!(
            r.seal("199.172.111.135"),
            "k1.7UO7jG00nHvOCw-55F_uQCKlJZMOtRkPCaKsZenZ_A"
        );
        assert_eq!(r.seal(""), "k1.I7exqWH4xU0XDHOEOglLTw");
        // The pseudonym of the same key is unchanged by sealing: HMAC with the raw master key.
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0x0b; 32]).unwrap();
        mac.update(b"199.172.111.135");
        assert_eq!(
            r.pseudonym("199.172.111.135"),
            format!("k1:{}", hex::encode(mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn sealing_is_deterministic_and_reveals() {
        let r = ring(&[("k1", [7; 32])], "k1");
        for value in ["", "10.0.0.1", "593-47-5928", "ünïcode ✓", "line\nbreak"] {
            let token = r.seal(value);
            assert_eq!(r.seal(value), token, "equal values give equal tokens");
            assert!(token.starts_with("k1."), "{token}");
            let payload = &token[3..];
            assert_eq!(
                payload.len(),
                ((SEAL_OVERHEAD + value.len()) * 4).div_ceil(3),
                "{token}"
            );
            assert!(!payload.contains(['=', '+', '/']), "{token}");
            assert_eq!(r.reveal(&token).as_deref(), Ok(value));
        }
        assert_ne!(r.seal("10.0.0.1"), r.seal("10.0.0.2"));
    }

    #[test]
    fn every_key_reveals_its_tokens_after_a_rotation() {
        let old = ring(&[("old", [1; 32])], "old");
        let rotated = ring(&[("old", [1; 32]), ("new", [2; 32])], "new");
        let old_token = old.seal("10.0.0.1");
        let new_token = rotated.seal("10.0.0.1");
        assert!(new_token.starts_with("new."), "{new_token}");
        assert_ne!(
            old_token[4..],
            new_token[4..],
            "another key gives another token"
        );
        assert_eq!(rotated.reveal(&old_token).as_deref(), Ok("10.0.0.1"));
        assert_eq!(rotated.reveal(&new_token).as_deref(), Ok("10.0.0.1"));
        assert_eq!(
            old.reveal(&new_token),
            Err(RevealError::UnknownKey("new".into()))
        );
    }

    #[test]
    fn reveal_refuses_wrong_keys_altered_and_foreign_tokens() {
        let r = ring(&[("k1", [1; 32])], "k1");
        let impostor = ring(&[("k1", [9; 32])], "k1");
        let token = r.seal("10.0.0.1");
        assert_eq!(
            impostor.reveal(&token),
            Err(RevealError::NotAuthentic("k1".into()))
        );
        // Flip one bit of the ciphertext: the tag no longer matches.
        let mut sealed = BASE64URL.decode(&token[3..]).unwrap();
        *sealed.last_mut().unwrap() ^= 1;
        let altered = format!("k1.{}", BASE64URL.encode(&sealed));
        assert_eq!(
            r.reveal(&altered),
            Err(RevealError::NotAuthentic("k1".into()))
        );
        for (bad, why) in [
            (r.pseudonym("10.0.0.1"), "pseudonym"),
            ("plain text".to_string(), "no '.'"),
            ("bad id!.AAAA".to_string(), "not a key id"),
            ("k1.AAAA".to_string(), "too short"),
            ("k1.not base64".to_string(), "base64url"),
            (format!("{token}="), "base64url"),
        ] {
            let err = r.reveal(&bad).unwrap_err();
            assert!(
                matches!(err, RevealError::Malformed(_)) && err.to_string().contains(why),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn add_key_rotates_atomically_and_privately() {
        let file = key_file_of(&[("k1", [1; 32])], "k1");
        let before = ring(&[("k1", [1; 32])], "k1");
        let (id, kept) = add_key(&file.0).unwrap();
        assert_eq!(kept, ["k1"]);
        assert_ne!(id, "k1");
        let after = KeyRing::load(&file.0).unwrap();
        assert_eq!(after.active_id(), id);
        assert_eq!(after.ids().len(), 2);
        assert_eq!(
            after.reveal(&before.seal("x")).as_deref(),
            Ok("x"),
            "the old key is kept"
        );
        assert_eq!(after.pseudonym("x")[..id.len() + 1], format!("{id}:"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file.0).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // No temporary file is left beside it.
        let dir = file.0.parent().unwrap();
        let name = file.0.file_name().unwrap().to_string_lossy().to_string();
        let leftovers = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!(".{name}."))
            })
            .count();
        assert_eq!(leftovers, 0);
        // A broken key file gets no new key, and stays as it was.
        let broken = write_key_file(r#"{"active":"k1","keys":{"k1":"c2hvcnQ="}}"#);
        assert!(format!("{:#}", add_key(&broken.0).unwrap_err()).contains("at least 32"));
        assert_eq!(
            std::fs::read_to_string(&broken.0).unwrap(),
            r#"{"active":"k1","keys":{"k1":"c2hvcnQ="}}"#
        );
    }

    #[test]
    fn debug_output_names_ids_never_keys() {
        let secret = [0x5a; 32];
        let p = Pseudonymizer::Keyed(ring(&[("k1", secret), ("k0", [3; 32])], "k1"));
        let shown = format!("{p:?} {}", p.describe());
        assert!(shown.contains("k1") && shown.contains("k0"), "{shown}");
        for leak in [
            BASE64.encode(secret),
            hex::encode(secret),
            "90, 90".to_string(),
        ] {
            assert!(!shown.contains(&leak), "{shown}");
        }
        assert_eq!(Pseudonymizer::Unkeyed.seal("x"), None);
        assert!(!Pseudonymizer::Unkeyed.can_seal() && p.can_seal());
    }

    #[test]
    fn retired_keys_are_checked_too() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
        let file = write_key_file(&format!(
            r#"{{"active":"k2","keys":{{"k2":"{secret}","k1":"c2hvcnQ="}}}}"#
        ));
        let err = format!("{:#}", Pseudonymizer::from_key_file(&file.0).unwrap_err());
        assert!(err.contains("key 'k1' has 5 bytes"), "{err}");
    }

    #[test]
    fn bad_key_files_say_what_is_wrong_without_quoting_keys() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
        let cases = [
            (
                format!(r#"{{"active":"k2","keys":{{"k1":"{secret}"}}}}"#),
                "'k2' is not among",
            ),
            (
                r#"{"active":"k1","keys":{"k1":"c2hvcnQ="}}"#.to_string(),
                "at least 32",
            ),
            (
                format!(r#"{{"active":"k1","keys":{{"k1":"{secret}""#),
                "not a masq key file",
            ),
            (
                format!(r#"{{"active":"bad id!","keys":{{"bad id!":"{secret}"}}}}"#),
                "letters, digits",
            ),
        ];
        for (contents, expected) in cases {
            let file = write_key_file(&contents);
            let err = format!("{:#}", Pseudonymizer::from_key_file(&file.0).unwrap_err());
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains(secret), "error quotes the key: {err}");
        }
        let err = format!(
            "{:#}",
            Pseudonymizer::from_key_file(Path::new("/nonexistent/k")).unwrap_err()
        );
        assert!(err.contains("masq keygen"), "{err}");
    }

    #[test]
    fn dead_letters_seal_per_message_and_open_only_with_their_key_and_id() {
        let keys = ring(&[("k1", [1; 32]), ("k2", [2; 32])], "k2");
        let body = br#"{"ip": "199.172.111.135"}"#;
        let sealed = keys.seal_letter(body, "m-1");
        assert_eq!(sealed.key_id, "k2");
        assert!(
            !sealed.bytes.windows(7).any(|w| w == b"199.172"),
            "sealed, not in clear"
        );
        assert_eq!(keys.open_letter(&sealed, "m-1").unwrap(), body);
        // The same body sealed twice looks different: equal bodies do not show.
        assert_ne!(keys.seal_letter(body, "m-1").bytes, sealed.bytes);
        // Bound to its message, its key, and every byte.
        assert!(matches!(
            keys.open_letter(&sealed, "m-2"),
            Err(RevealError::NotAuthentic(_))
        ));
        let other = ring(&[("k2", [9; 32])], "k2");
        assert!(matches!(
            other.open_letter(&sealed, "m-1"),
            Err(RevealError::NotAuthentic(_))
        ));
        let mut changed = sealed.clone();
        changed.bytes[20] ^= 1;
        assert!(keys.open_letter(&changed, "m-1").is_err());
        let unknown = SealedLetter {
            key_id: "k9".into(),
            ..sealed
        };
        assert!(matches!(
            keys.open_letter(&unknown, "m-1"),
            Err(RevealError::UnknownKey(_))
        ));
    }
}
