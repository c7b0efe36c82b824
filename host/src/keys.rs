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

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

/// HKDF `info` for the sealing key. A new sealing scheme gets a new label (and a new token
/// separator), so its keys never coincide with these.
const SEAL_KDF_INFO: &[u8] = b"masq seal v1";

/// Bytes AES-SIV adds to a value: the synthetic IV, which is also the authentication tag.
pub const SEAL_OVERHEAD: usize = 16;

/// A key file: several keys by id, one of them active for new tokens. The others stay so
/// that values sealed under them still reveal after a rotation (`masq keygen --add-to`).
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
        Ok(KeyFile {
            active: id.clone(),
            keys: BTreeMap::from([(id, secret)]),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a key file always serialises") + "\n"
    }

    /// Reads and parses a key file; the keys are checked by `KeyRing::from_file`.
    pub fn read(path: &Path) -> anyhow::Result<KeyFile> {
        let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read key file {}: make one with `masq keygen > {}`",
                path.display(),
                path.display()
            )
        })?);
        serde_json::from_str(&text).map_err(|e| {
            // serde's message may quote the file; it must not quote a key.
            anyhow::anyhow!(
                "key file {} is not a masq key file (line {}, column {}): expected {{\"active\": ID, \"keys\": {{ID: BASE64}}}} as `masq keygen` writes it",
                path.display(),
                e.line(),
                e.column()
            )
        })
    }

    /// Adds a fresh random key and makes it the active one; every other key stays. Returns
    /// the new key's id.
    fn rotate(&mut self) -> anyhow::Result<String> {
        loop {
            let (id, secret) = new_key()?;
            // Ids are 24 random bits: a clash is rare, and would overwrite a key.
            if !self.keys.contains_key(&id) {
                self.keys.insert(id.clone(), secret);
                self.active = id.clone();
                return Ok(id);
            }
        }
    }
}

fn new_key() -> anyhow::Result<(String, String)> {
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *secret).context("the operating system gave no random bytes for a key")?;
    let mut id = [0u8; 3];
    getrandom::fill(&mut id).context("the operating system gave no random bytes for a key id")?;
    Ok((format!("k{}", hex::encode(id)), BASE64.encode(*secret)))
}

/// `masq keygen --add-to FILE`: adds a fresh key to an existing key file and makes it active,
/// keeping the older keys so their tokens still reveal. The file is replaced atomically (a
/// reader sees the old file or the new one, never half of one) with mode 0600. Returns the
/// new key id and the ids kept.
pub fn add_key(path: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let mut file = KeyFile::read(path)?;
    // Only a file masq can load gets a new key: rotating a broken file would hide the fault.
    KeyRing::from_file(&file, path)?;
    let kept: Vec<String> = file.keys.keys().cloned().collect();
    let id = file.rotate()?;
    write_private_atomically(path, Zeroizing::new(file.to_json()).as_bytes())?;
    Ok((id, kept))
}

/// Writes `contents` to a temporary file beside `path` (mode 0600), syncs it and renames it
/// over `path`, so a crash or a concurrent `masq run` reload never sees a partial key file.
fn write_private_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?
        .to_string_lossy();
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).context("the operating system gave no random bytes")?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
    let written = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&tmp)?;
        out.write_all(contents)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "cannot write key file {} ({e}); it is unchanged. Check that its directory is writable",
            path.display()
        );
    }
    Ok(())
}

/// One key of a key file, ready for both uses.
#[derive(Clone)]
struct Key {
    /// HMAC-SHA-256 keyed with the master key: pseudonyms.
    mac: Hmac<Sha256>,
    /// The AES-SIV key derived from the master key: sealing.
    seal: Zeroizing<[u8; 64]>,
}

impl Key {
    fn new(master: &[u8]) -> Key {
        let mut seal = Zeroizing::new([0u8; 64]);
        hkdf::Hkdf::<Sha256>::new(None, master)
            .expand(SEAL_KDF_INFO, &mut *seal)
            .expect("64 bytes is within HKDF-SHA256's 8160-byte limit");
        Key {
            mac: Hmac::<Sha256>::new_from_slice(master).expect("HMAC takes keys of any length"),
            seal,
        }
    }

    fn siv(&self) -> aes_siv::siv::Aes256Siv {
        use aes_siv::KeyInit as _;
        // Built per call: Siv needs `&mut self`, and its key schedule costs far less than the
        // round trip into the policy that asked for the token.
        aes_siv::siv::Aes256Siv::new(aes_siv::Key::<aes_siv::siv::Aes256Siv>::from_slice(
            &*self.seal,
        ))
    }
}

/// No associated data: a token depends on the key and the value only.
const NO_HEADERS: [&[u8]; 0] = [];

/// Every key of a key file, loaded and checked, and which one is active.
#[derive(Clone)]
pub struct KeyRing {
    active: String,
    keys: BTreeMap<String, Key>,
}

impl std::fmt::Debug for KeyRing {
    // Ids only, never key material, whatever the caller logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyRing(active {}, keys {})",
            self.active,
            self.ids().join(", ")
        )
    }
}

/// Why a token does not reveal. Says what about the token is wrong, never what a key is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    #[error("it is not a sealed masq token ({0}); sealed tokens are KEYID.BASE64URL")]
    Malformed(&'static str),
    #[error("its key id '{0}' is not in the key file")]
    UnknownKey(String),
    #[error(
        "it does not authenticate under key '{0}': the key file holds another key under that id, \
         or the token was changed"
    )]
    NotAuthentic(String),
}

impl RevealError {
    /// The key id the token names, when it names a valid one.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            RevealError::Malformed(_) => None,
            RevealError::UnknownKey(id) | RevealError::NotAuthentic(id) => Some(id),
        }
    }
}

impl KeyRing {
    /// Loads every key of a key file; checks ids, encodings and lengths of all of them.
    pub fn load(path: &Path) -> anyhow::Result<KeyRing> {
        let file = KeyFile::read(path)?;
        warn_if_readable_by_others(path);
        KeyRing::from_file(&file, path)
    }

    fn from_file(file: &KeyFile, path: &Path) -> anyhow::Result<KeyRing> {
        if !file.keys.contains_key(&file.active) {
            bail!(
                "key file {}: the active key id '{}' is not among its keys ({})",
                path.display(),
                file.active,
                file.keys.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let mut keys = BTreeMap::new();
        for (id, encoded) in &file.keys {
            if !valid_key_id(id) {
                bail!(
                    "key file {}: key id '{id}' must be 1 to 16 letters, digits, '-' or '_'",
                    path.display()
                );
            }
            let secret = Zeroizing::new(BASE64.decode(encoded.trim()).map_err(|_| {
                anyhow::anyhow!("key file {}: key '{id}' is not base64", path.display())
            })?);
            if secret.len() < 32 {
                bail!(
                    "key file {}: key '{id}' has {} bytes; use at least 32 (`masq keygen` makes 32)",
                    path.display(),
                    secret.len()
                );
            }
            keys.insert(id.clone(), Key::new(&secret));
        }
        Ok(KeyRing {
            active: file.active.clone(),
            keys,
        })
    }

    /// A ring of one random key that exists only in memory, for loading a policy where no
    /// token is kept (`masq plugin check`).
    pub fn ephemeral() -> anyhow::Result<KeyRing> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *secret)
            .context("the operating system gave no random bytes for a key")?;
        let id = "ephemeral".to_string();
        Ok(KeyRing {
            active: id.clone(),
            keys: BTreeMap::from([(id, Key::new(&*secret))]),
        })
    }

    /// The id of the key new tokens use.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Every key id, active or not.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    fn active(&self) -> &Key {
        &self.keys[&self.active]
    }

    /// `<key-id>:<hex HMAC-SHA-256(master key, value)>` under the active key.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = self.active().mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut token = String::with_capacity(self.active.len() + 1 + 64);
        token.push_str(&self.active);
        token.push(':');
        push_hex(&mut token, &digest);
        token
    }

    /// `<key-id>.<base64url, no padding, of AES-SIV(value)>` under the active key:
    /// deterministic, so equal values give equal tokens under one key.
    pub fn seal(&self, value: &str) -> String {
        let sealed = self
            .active()
            .siv()
            .encrypt(NO_HEADERS, value.as_bytes())
            .expect("AES-SIV encrypts any value when given no headers");
        let mut token =
            String::with_capacity(self.active.len() + 1 + (sealed.len() * 4).div_ceil(3));
        token.push_str(&self.active);
        token.push('.');
        BASE64URL.encode_string(&sealed, &mut token);
        token
    }

    /// The value a sealed token stands for, under whichever key of the ring its id names.
    pub fn reveal(&self, token: &str) -> Result<String, RevealError> {
        let Some((id, payload)) = token.split_once('.') else {
            return Err(RevealError::Malformed(if token.contains(':') {
                "KEYID:HEX is a pseudonym, which is one-way and cannot be revealed"
            } else {
                "no '.' after a key id"
            }));
        };
        if !valid_key_id(id) {
            return Err(RevealError::Malformed(
                "the part before '.' is not a key id",
            ));
        }
        let sealed = BASE64URL
            .decode(payload)
            .map_err(|_| RevealError::Malformed("the part after '.' is not unpadded base64url"))?;
        if sealed.len() < SEAL_OVERHEAD {
            return Err(RevealError::Malformed("too short to hold an AES-SIV tag"));
        }
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| RevealError::UnknownKey(id.to_string()))?;
        let plain = key
            .siv()
            .decrypt(NO_HEADERS, &sealed)
            .map_err(|_| RevealError::NotAuthentic(id.to_string()))?;
        // Authentic tokens hold what a policy sealed, which WIT guarantees is UTF-8.
        String::from_utf8(plain).map_err(|_| RevealError::NotAuthentic(id.to_string()))
    }
}

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
                ring.keys.len()
            ),
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

/// Lower-case hex of `bytes`, appended. Tokens are made twice per record, and the `hex`
/// crate's char iterator showed as 14% of a policy benchmark's profile; this is a table lookup.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 16
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
}
