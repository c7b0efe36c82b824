//! `masq plugin check FILE`: everything `masq run` checks about a policy at load, without a
//! queue, a database or a key: it is a component, implements the world, imports only what
//! masq grants, answers `describe`, accepts the configuration. Prints what it found, the
//! contract (0.1 or 0.2) first.

use crate::keys::{KeyRing, Keys, Pseudonymizer};
use crate::policy::{PolicyHost, PolicyOptions, PolicyRuntime};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

pub fn check(file: &Path, options: PolicyOptions) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(file).with_context(|| format!("cannot read policy {}", file.display()))?;
    // No key file is needed to check: describe and configure never see a key. A throwaway
    // in-memory key still lets a policy that imports `seal` load, as it would with --key-file.
    let keys = Arc::new(Keys::new(Pseudonymizer::Keyed(KeyRing::ephemeral()?)));
    let host = PolicyHost::from_bytes(
        Arc::new(PolicyRuntime::new()?),
        &bytes,
        &file.display().to_string(),
        options,
        keys,
    )?;
    let info = host.info();
    let mut out = String::new();
    let _ = writeln!(out, "ok: {} {}", info.name, info.version);
    let _ = writeln!(out, "  contract:    {}", host.contract());
    let _ = writeln!(
        out,
        "  file:        {} ({} bytes, sha256 {})",
        file.display(),
        bytes.len(),
        host.digest()
    );
    let _ = writeln!(out, "  compiled in: {} ms", host.compile_time().as_millis());
    let _ = writeln!(out, "  description: {}", info.description);
    let _ = writeln!(out, "  writes:      {}", host.writes().join(", "));
    if !host.pii().is_empty() {
        let _ = writeln!(out, "  pii:         {}", host.pii().join(", "));
    }
    let _ = writeln!(
        out,
        "  imports:     {}",
        if host.imports().is_empty() {
            "(none)".to_string()
        } else {
            host.imports().join(", ")
        }
    );
    for s in &info.settings {
        let _ = writeln!(
            out,
            "  setting {} (default {:?}): {}",
            s.name, s.default_value, s.description
        );
    }
    Ok(out)
}
