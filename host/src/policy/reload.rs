//! Hot reload: watches the policy file and the key file, and on a change (atomic rename, copy
//! in place, symlink flip) or SIGHUP checks the new version off the hot path and swaps it in
//! between batches. A version that fails any check is refused and the running one stays.
//!
//! Files are polled rather than watched with inotify: polling sees renames, copies, symlink
//! flips (Kubernetes ConfigMaps) and network filesystems alike, for two `stat`s every 100 ms.

use super::{ActivePolicy, Canary, PolicyHost, PolicyOptions, PolicyRuntime};
use crate::keys::{Keys, Pseudonymizer};
use crate::sink::schema::TableSchema;
use anyhow::bail;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the policy and key files are looked at (one `stat` each): what a swap waits for
/// at most before masq notices it.
const POLL: Duration = Duration::from_millis(50);
/// A file must look the same this long before masq reads it: a copy in progress keeps
/// changing size and time. One caught half-written anyway fails its checks and is looked at
/// again (`ATTEMPTS`), never refused for that.
const SETTLE: Duration = Duration::from_millis(50);
/// Checks of a file that fails before it is refused, in case it was caught mid-write.
const ATTEMPTS: u32 = 3;

/// Everything needed to check a policy version before it may serve.
#[derive(Clone)]
pub struct PolicyLoader {
    pub runtime: Arc<PolicyRuntime>,
    pub options: PolicyOptions,
    pub keys: Arc<Keys>,
    /// `--plugin-sha256`: refuse any other file.
    pub pin: Option<String>,
    pub schema: Arc<TableSchema>,
}

impl PolicyLoader {
    /// Loads and checks a version: pinned digest, the world, `describe`, `configure`, the
    /// table's columns, and (when given) a canary batch of recent records it must not trap on.
    pub fn load(
        &self,
        bytes: &[u8],
        origin: &str,
        canary: &[super::Record],
    ) -> anyhow::Result<PolicyHost> {
        if let Some(pin) = &self.pin {
            let actual = hex::encode(Sha256::digest(bytes));
            if !actual.eq_ignore_ascii_case(pin) {
                bail!(
                    "policy {origin} has SHA-256 {actual}, but --plugin-sha256 pins {pin}; refusing it"
                );
            }
        }
        let host = PolicyHost::from_bytes(
            self.runtime.clone(),
            bytes,
            origin,
            self.options.clone(),
            self.keys.clone(),
        )?;
        self.schema.check_writes(&host.info().name, host.writes())?;
        if !canary.is_empty()
            && let Err(e) = host.transform(canary)
        {
            bail!(
                "policy {origin} failed on a canary batch of {} recent records: {e}",
                canary.len()
            );
        }
        Ok(host)
    }
}

/// What a file looked like: a change to any of these is a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let m = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    })
}

/// Waits until the file stops changing; `None` while it is missing (mid-rename).
async fn settled(path: &Path) -> Option<Fingerprint> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = fingerprint(path);
        tokio::time::sleep(SETTLE).await;
        let after = fingerprint(path);
        if before == after || Instant::now() > deadline {
            return after;
        }
    }
}

/// Who hears of what a reload did, besides the log: metrics and `masq status` (see
/// `commands::run`). Every call comes after the log line that says the same.
pub trait ReloadReport: Send + Sync + 'static {
    fn swapped(&self, new: &PolicyHost) -> impl Future<Output = ()> + Send;
    fn refused(&self, serving: &PolicyHost, why: &str) -> impl Future<Output = ()> + Send;
    fn key_rotated(
        &self,
        serving: &PolicyHost,
        key_id: Option<&str>,
    ) -> impl Future<Output = ()> + Send;
    fn key_refused(&self, why: &str) -> impl Future<Output = ()> + Send;
}

pub struct Reloader<R> {
    pub loader: PolicyLoader,
    pub plugin: PathBuf,
    pub key_file: Option<PathBuf>,
    pub active: Arc<ActivePolicy>,
    pub canary: Arc<Canary>,
    pub report: R,
}

impl<R: ReloadReport> Reloader<R> {
    pub async fn watch(self, stop: CancellationToken) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads happen on file changes only");
                None
            }
        };
        let mut plugin_seen = fingerprint(&self.plugin);
        let mut key_seen = self.key_file.as_deref().and_then(fingerprint);
        loop {
            let forced = tokio::select! {
                _ = stop.cancelled() => return,
                _ = async { match hangup.as_mut() { Some(h) => { h.recv().await; }, None => std::future::pending().await } } => true,
                _ = tokio::time::sleep(POLL) => false,
            };
            if forced {
                tracing::info!("SIGHUP: checking the policy and key files");
            }
            let now = fingerprint(&self.plugin);
            if forced || (now.is_some() && now != plugin_seen) {
                plugin_seen = self.reload_policy(forced).await;
            }
            if let Some(key_file) = &self.key_file {
                let now = fingerprint(key_file);
                if forced || (now.is_some() && now != key_seen) {
                    key_seen = self.reload_keys(key_file).await;
                }
            }
        }
    }

    /// Checks and swaps in the policy file; returns the fingerprint it decided on.
    async fn reload_policy(&self, forced: bool) -> Option<Fingerprint> {
        let started = Instant::now();
        let origin = self.plugin.display().to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let seen = settled(&self.plugin).await;
            // Off the async threads (`masq run` has one per two cores): a policy is up to
            // tens of MB, on whatever disk the operator put it.
            let bytes = match tokio::fs::read(&self.plugin).await {
                Ok(b) => b,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, "policy file unreadable; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                Err(e) => {
                    self.refuse(&format!("cannot read policy {origin}: {e}"))
                        .await;
                    return seen;
                }
            };
            let current = self.active.current();
            if hex::encode(Sha256::digest(&bytes)) == current.digest() {
                if forced {
                    tracing::info!(version = %current.info().version, "policy file unchanged; nothing to swap");
                }
                return seen;
            }
            let loader = self.loader.clone();
            let canary = self.canary.sample();
            let origin_for_load = origin.clone();
            let checked =
                tokio::task::spawn_blocking(move || loader.load(&bytes, &origin_for_load, &canary))
                    .await
                    .expect("policy checks cannot panic the host");
            match checked {
                Ok(host) => {
                    let old = self.active.replace(host);
                    let new = self.active.current();
                    tracing::info!(
                        policy = %new.info().name,
                        from = %old.info().version,
                        to = %new.info().version,
                        sha256 = %new.digest(),
                        ms = started.elapsed().as_millis() as u64,
                        "policy swapped; batches in flight finish on the old version"
                    );
                    self.report.swapped(&new).await;
                    return seen;
                }
                // Changed while we checked it: a copy in progress; look again.
                Err(_) if fingerprint(&self.plugin) != seen => continue,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::debug!(error = %format!("{e:#}"), attempt, "new policy failed its checks; retrying in case it was mid-write");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => {
                    self.refuse(&format!("{e:#}")).await;
                    return seen;
                }
            }
        }
    }

    async fn refuse(&self, why: &str) {
        let current = self.active.current();
        tracing::error!(
            keeping = %current.info().version,
            sha256 = %current.digest(),
            "new policy refused, old one keeps serving: {why}"
        );
        self.report.refused(&current, why).await;
    }

    async fn reload_keys(&self, key_file: &Path) -> Option<Fingerprint> {
        let seen = settled(key_file).await;
        match Pseudonymizer::from_key_file(key_file) {
            Ok(p) => {
                let id = p.key_id().map(str::to_string);
                if id.as_deref() == self.loader.keys.current().key_id() {
                    tracing::info!(key_id = ?id, "key file changed; active key id unchanged");
                }
                self.loader.keys.replace(p);
                tracing::info!(key_id = ?id, "key file reloaded; new batches use its active key");
                self.report
                    .key_rotated(&self.active.current(), id.as_deref())
                    .await;
            }
            Err(e) => {
                tracing::error!("new key file refused, old key keeps serving: {e:#}");
                self.report.key_refused(&format!("{e:#}")).await;
            }
        }
        seen
    }
}
