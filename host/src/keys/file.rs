//! The key file: its JSON format, `masq keygen` (a new file, or a new active key added to one),
//! and atomic, private writes.

use super::ring::KeyRing;
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

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

pub(super) fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 16
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(unix)]
pub(super) fn warn_if_readable_by_others(path: &Path) {
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
pub(super) fn warn_if_readable_by_others(_: &Path) {}
