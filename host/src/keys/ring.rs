//! The keys of a key file at work: HMAC-SHA-256 pseudonyms, and AES-SIV sealing under keys
//! derived by HKDF; revealing sealed tokens for key holders.

use super::file::{KeyFile, valid_key_id, warn_if_readable_by_others};
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

/// HKDF `info` for the sealing key. A new sealing scheme gets a new label (and a new token
/// separator), so its keys never coincide with these.
const SEAL_KDF_INFO: &[u8] = b"masq seal v1";

/// Bytes AES-SIV adds to a value: the synthetic IV, which is also the authentication tag.
pub const SEAL_OVERHEAD: usize = 16;

/// HKDF `info` for the key that seals dead-letter bodies: a key of its own, so a sealed body
/// and a sealed token can never be swapped for one another.
const LETTER_KDF_INFO: &[u8] = b"masq dead letter v1";

/// Random bytes in front of every sealed dead letter: AES-SIV alone is deterministic, and two
/// dead letters with the same body must not show it.
const LETTER_NONCE: usize = 16;

/// One key of a key file, ready for both uses.
#[derive(Clone)]
struct Key {
    /// HMAC-SHA-256 keyed with the master key: pseudonyms.
    mac: Hmac<Sha256>,
    /// The AES-SIV key derived from the master key: sealing.
    seal: Zeroizing<[u8; 64]>,
    /// The master key itself, for the dead-letter key derived from it.
    master: Zeroizing<Vec<u8>>,
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
            master: Zeroizing::new(master.to_vec()),
        }
    }

    fn siv(&self) -> aes_siv::siv::Aes256Siv {
        siv_from(&self.seal)
    }

    /// The AES-SIV cipher for dead-letter bodies, derived when needed: dead letters are few.
    fn letter_siv(&self) -> aes_siv::siv::Aes256Siv {
        let mut key = Zeroizing::new([0u8; 64]);
        hkdf::Hkdf::<Sha256>::new(None, &*self.master)
            .expand(LETTER_KDF_INFO, &mut *key)
            .expect("64 bytes is within HKDF-SHA256's 8160-byte limit");
        siv_from(&key)
    }
}

fn siv_from(key: &[u8; 64]) -> aes_siv::siv::Aes256Siv {
    use aes_siv::KeyInit as _;
    // Built per call: Siv needs `&mut self`, and its key schedule costs far less than the
    // round trip into the policy that asked for the token.
    aes_siv::siv::Aes256Siv::new(aes_siv::Key::<aes_siv::siv::Aes256Siv>::from_slice(key))
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

    pub(super) fn from_file(file: &KeyFile, path: &Path) -> anyhow::Result<KeyRing> {
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

/// A dead letter's body sealed under one key of the ring: what `masq.dead_letters` stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedLetter {
    pub key_id: String,
    /// A random nonce, then the AES-SIV output (tag and ciphertext).
    pub bytes: Vec<u8>,
}

impl KeyRing {
    /// Seals a dead letter's body under the active key, bound to its message id: a sealed
    /// body moved to another message's row does not open.
    pub fn seal_letter(&self, body: &[u8], message_id: &str) -> SealedLetter {
        let mut nonce = [0u8; LETTER_NONCE];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let sealed = self
            .active()
            .letter_siv()
            .encrypt([message_id.as_bytes(), &nonce], body)
            .expect("AES-SIV encrypts any body");
        let mut bytes = Vec::with_capacity(LETTER_NONCE + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        SealedLetter {
            key_id: self.active.clone(),
            bytes,
        }
    }

    /// The body of a sealed dead letter, under the key of the ring its id names.
    pub fn open_letter(
        &self,
        letter: &SealedLetter,
        message_id: &str,
    ) -> Result<Vec<u8>, RevealError> {
        let key = self
            .keys
            .get(&letter.key_id)
            .ok_or_else(|| RevealError::UnknownKey(letter.key_id.clone()))?;
        if letter.bytes.len() < LETTER_NONCE + SEAL_OVERHEAD {
            return Err(RevealError::Malformed(
                "too short to hold a sealed dead letter",
            ));
        }
        let (nonce, sealed) = letter.bytes.split_at(LETTER_NONCE);
        key.letter_siv()
            .decrypt([message_id.as_bytes(), nonce], sealed)
            .map_err(|_| RevealError::NotAuthentic(letter.key_id.clone()))
    }
}

/// Lower-case hex of `bytes`, appended. Tokens are made twice per record, and the `hex`
/// crate's char iterator showed as 14% of a policy benchmark's profile; this is a table lookup.
pub(super) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}
