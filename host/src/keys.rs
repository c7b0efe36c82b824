//! Pseudonymisation keys: the key file, `masq keygen`, and the token function behind the
//! policies' `pseudonym` import. Keys live only here, in the host; no key byte is ever copied
//! into a policy's memory, logged, or put in an error message.

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// A key file: several keys by id, one of them active for new tokens.
///
/// ```json
/// {"active": "k3f9a2c", "keys": {"k3f9a2c": "<base64 of 32 random bytes>"}}
/// ```
#[derive(Serialize, Deserialize)]
pub struct KeyFile {
    pub active: String,
    pub keys: BTreeMap<String, String>,
}

impl KeyFile {
    /// A key file holding one fresh random key.
    pub fn generate() -> anyhow::Result<KeyFile> {
        let (id, secret) = new_key()?;
        Ok(KeyFile { active: id.clone(), keys: BTreeMap::from([(id, secret)]) })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a key file always serialises") + "\n"
    }
}

fn new_key() -> anyhow::Result<(String, String)> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).context("the operating system gave no random bytes for a key")?;
    let mut id = [0u8; 3];
    getrandom::fill(&mut id).context("the operating system gave no random bytes for a key id")?;
    Ok((format!("k{}", hex::encode(id)), BASE64.encode(secret)))
}

/// How the `pseudonym` import turns values into tokens.
#[derive(Clone)]
pub enum Pseudonymizer {
    /// `<key-id>:<hex HMAC-SHA-256>` under the active key.
    Keyed { key_id: String, mac: Hmac<Sha256> },
    /// Plain SHA-256 hex: reversible by brute force for small value spaces.
    Unkeyed,
}

impl std::fmt::Debug for Pseudonymizer {
    // Never prints key material, whatever the caller logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pseudonymizer::Keyed { key_id, .. } => write!(f, "Keyed({key_id})"),
            Pseudonymizer::Unkeyed => write!(f, "Unkeyed"),
        }
    }
}

impl Pseudonymizer {
    /// Loads the active key of a key file.
    pub fn from_key_file(path: &Path) -> anyhow::Result<Pseudonymizer> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read key file {}: make one with `masq keygen > {}`",
                path.display(),
                path.display()
            )
        })?;
        warn_if_readable_by_others(path);
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            // serde's message may quote the file; it must not quote a key.
            anyhow::anyhow!(
                "key file {} is not a masq key file (line {}, column {}): expected {{\"active\": ID, \"keys\": {{ID: BASE64}}}} as `masq keygen` writes it",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        let Some(encoded) = file.keys.get(&file.active) else {
            bail!(
                "key file {}: the active key id '{}' is not among its keys ({})",
                path.display(),
                file.active,
                file.keys.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        if !valid_key_id(&file.active) {
            bail!(
                "key file {}: key id '{}' must be 1 to 16 letters, digits, '-' or '_'",
                path.display(),
                file.active
            );
        }
        let secret = BASE64.decode(encoded.trim()).map_err(|_| {
            anyhow::anyhow!("key file {}: key '{}' is not base64", path.display(), file.active)
        })?;
        if secret.len() < 32 {
            bail!(
                "key file {}: key '{}' has {} bytes; use at least 32 (`masq keygen` makes 32)",
                path.display(),
                file.active,
                secret.len()
            );
        }
        let mac = Hmac::<Sha256>::new_from_slice(&secret).expect("HMAC takes keys of any length");
        Ok(Pseudonymizer::Keyed { key_id: file.active, mac })
    }

    /// The token for one value.
    pub fn token(&self, value: &str) -> String {
        match self {
            Pseudonymizer::Keyed { key_id, mac } => {
                let mut mac = mac.clone();
                mac.update(value.as_bytes());
                let digest = mac.finalize().into_bytes();
                let mut token = String::with_capacity(key_id.len() + 1 + 64);
                token.push_str(key_id);
                token.push(':');
                token.push_str(&hex::encode(digest));
                token
            }
            Pseudonymizer::Unkeyed => hex::encode(Sha256::digest(value.as_bytes())),
        }
    }

    /// The active key id, if keyed.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Pseudonymizer::Keyed { key_id, .. } => Some(key_id),
            Pseudonymizer::Unkeyed => None,
        }
    }

    /// What the log says about the mode (key id only, never the key).
    pub fn describe(&self) -> String {
        match self {
            Pseudonymizer::Keyed { key_id, .. } => format!("keyed HMAC-SHA-256, key id {key_id}"),
            Pseudonymizer::Unkeyed => "UNKEYED SHA-256".to_string(),
        }
    }
}

/// The pseudonymizer in use, replaceable while running (key rotation): a batch takes the
/// current one when it starts and keeps it to the end.
pub struct Keys {
    current: std::sync::RwLock<std::sync::Arc<Pseudonymizer>>,
}

impl Keys {
    pub fn new(p: Pseudonymizer) -> Keys {
        Keys { current: std::sync::RwLock::new(std::sync::Arc::new(p)) }
    }

    pub fn current(&self) -> std::sync::Arc<Pseudonymizer> {
        self.current.read().expect("keys lock").clone()
    }

    pub fn replace(&self, p: Pseudonymizer) {
        *self.current.write().expect("keys lock") = std::sync::Arc::new(p);
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 16
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            key_file = %path.display(),
            "key file is readable by other users: run `chmod 600 {}`",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_ne!(KeyFile::generate().unwrap().keys, kf.keys, "keys are random");
    }

    #[test]
    fn bad_key_files_say_what_is_wrong_without_quoting_keys() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
        let cases = [
            (format!(r#"{{"active":"k2","keys":{{"k1":"{secret}"}}}}"#), "'k2' is not among"),
            (r#"{"active":"k1","keys":{"k1":"c2hvcnQ="}}"#.to_string(), "at least 32"),
            (format!(r#"{{"active":"k1","keys":{{"k1":"{secret}""#), "not a masq key file"),
            (format!(r#"{{"active":"bad id!","keys":{{"bad id!":"{secret}"}}}}"#), "letters, digits"),
        ];
        for (contents, expected) in cases {
            let file = write_key_file(&contents);
            let err = format!("{:#}", Pseudonymizer::from_key_file(&file.0).unwrap_err());
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains(secret), "error quotes the key: {err}");
        }
        let err = format!("{:#}", Pseudonymizer::from_key_file(Path::new("/nonexistent/k")).unwrap_err());
        assert!(err.contains("masq keygen"), "{err}");
    }
}
