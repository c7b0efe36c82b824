//! `PolicyHost`: compiles a policy component once, checks it at load, and runs every batch in
//! a fresh instance so no state crosses batches. Each run is bounded by a wall-clock deadline
//! (epoch interruption: cheap, unlike fuel) and a memory cap.

use super::bindings::{PolicyPlugin, PolicyPluginPre};
use super::imports::Sandbox;
use super::{Outcome, PolicyInfo, Record};
use crate::keys::Keys;
use anyhow::bail;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap};

/// How often the epoch advances; the deadline is checked at this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits and settings for running a policy.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Wall-clock time one call may take before it is interrupted.
    pub deadline: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_limit: usize,
    /// The operator's settings, passed to `configure` on every instance.
    pub config: Vec<(String, String)>,
    /// Most fields one kept record may have.
    pub max_fields: usize,
    /// Most bytes one text or JSON value of a kept record may have.
    pub max_value_bytes: usize,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            deadline: Duration::from_secs(5),
            memory_limit: 64 << 20,
            config: Vec::new(),
            max_fields: 256,
            max_value_bytes: 1 << 20,
        }
    }
}

/// The imports a policy may have: masq's own interfaces, and the parts of WASI that reach
/// nothing outside the sandbox. Files, sockets and the environment are not on the list.
const ALLOWED_IMPORTS: &[&str] = &[
    "masq:policy/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-",
];

/// Refuses a component that imports anything not on the allowlist, naming each import.
fn check_imports(
    engine: &Engine,
    component: &Component,
    origin: &str,
) -> anyhow::Result<Vec<String>> {
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let forbidden: Vec<&String> = imports
        .iter()
        .filter(|name| {
            !ALLOWED_IMPORTS
                .iter()
                .any(|allowed| name.starts_with(allowed))
        })
        .collect();
    if !forbidden.is_empty() {
        bail!(
            "policy {origin} imports {}, which masq does not grant: a policy gets masq:policy/pseudonym, \
             masq:policy/seal, masq:policy/log and WASI without files, sockets or environment. \
             Rebuild it without that import (componentize-py: --stub-wasi; componentize-js: disableFeatures)",
            forbidden
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(imports)
}

/// Whether an import name is masq's `seal` interface, in any version.
fn is_seal_import(name: &str) -> bool {
    name == "masq:policy/seal" || name.starts_with("masq:policy/seal@")
}

/// Why a batch produced no outcomes. The pipeline retries the records of a failed batch one
/// at a time, and a record that fails alone becomes a dead letter with this as its reason.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("policy ran past its deadline of {} ms and was stopped after {} ms", .limit.as_millis(), .after.as_millis())]
    Deadline { limit: Duration, after: Duration },
    #[error("policy ran out of memory: it asked for {asked} bytes, the limit is {limit} bytes")]
    OutOfMemory { asked: usize, limit: usize },
    #[error("policy trapped: {0}")]
    Trap(String),
    #[error("policy refused its configuration: {0}")]
    Configure(String),
    #[error("policy returned {got} outcomes for {expected} records")]
    WrongCount { got: usize, expected: usize },
    #[error("policy output refused: {0}")]
    Output(String),
}

/// The engine every version of a policy runs on: compiled code, the linker with masq's
/// imports, and the epoch thread behind deadlines. Made once per process, so a hot swap only
/// compiles the new component.
pub struct PolicyRuntime {
    engine: Engine,
    linker: Linker<Sandbox>,
    _ticker: EpochTicker,
}

impl PolicyRuntime {
    pub fn new() -> anyhow::Result<PolicyRuntime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(512 << 10);
        // A trap's message is all masq reports (in the dead letter's reason); capturing a wasm
        // backtrace on every trap only slows the isolation of poisoned records.
        config.wasm_backtrace_max_frames(None);
        // A fresh instance per batch is only affordable if instantiating is cheap: the pooling
        // allocator reuses pre-reserved slots (and resets memory copy-on-write) instead of
        // mapping and unmapping memory for every batch. Limits: enough for every worker, a
        // reload's checks and the largest language runtimes (Python, JavaScript) at once;
        // the per-policy memory cap itself is enforced by the store's limiter.
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(64)
            .total_core_instances(512)
            .total_memories(128)
            .total_tables(512)
            .table_elements(200_000)
            .max_memory_size(4 << 30);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        // Compiled code is cached on disk by content hash: a Python or JavaScript policy
        // (12-18 MB) takes over 10 s to compile on two cores, and a restart or a swap back
        // to an earlier version should not pay that again.
        if let Some(dir) = compile_cache_dir() {
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(dir);
            match wasmtime::Cache::new(cache_config) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "compile cache unavailable; policies compile on every load")
                }
            }
        }
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot set up the WebAssembly engine: {e:#}"))?;
        let mut linker: Linker<Sandbox> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e:#}"))?;
        PolicyPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link masq's imports: {e:#}"))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(PolicyRuntime {
            engine,
            linker,
            _ticker: ticker,
        })
    }
}

pub struct PolicyHost {
    runtime: Arc<PolicyRuntime>,
    pre: PolicyPluginPre<Sandbox>,
    info: PolicyInfo,
    /// The fields the policy writes under the operator's configuration.
    writes: Vec<String>,
    imports: Vec<String>,
    compile: Duration,
    digest: String,
    options: PolicyOptions,
    keys: Arc<Keys>,
    name: Arc<str>,
    loaded_at: SystemTime,
}

impl PolicyHost {
    /// Compiles and checks a policy from the component's bytes: it must implement the world,
    /// import nothing else, answer `describe`, and accept the operator's configuration.
    /// `origin` names it in errors.
    pub fn from_bytes(
        runtime: Arc<PolicyRuntime>,
        bytes: &[u8],
        origin: &str,
        options: PolicyOptions,
        keys: Arc<Keys>,
    ) -> anyhow::Result<PolicyHost> {
        let digest = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let component = Component::new(&runtime.engine, bytes).map_err(|e| {
            anyhow::anyhow!(
                "{origin} is not a WebAssembly component masq can run: {e:#}. Build policies with \
                 `wasm-tools component new` (see docs/policy-authors.md)"
            )
        })?;
        let compile_ms = started.elapsed().as_millis();
        let imports = check_imports(&runtime.engine, &component, origin)?;
        if imports.iter().any(|name| is_seal_import(name)) && !keys.current().can_seal() {
            bail!(
                "policy {origin} imports masq:policy/seal, which needs a key to seal values with, \
                 and masq runs --unkeyed: run it with --key-file FILE instead (make one with \
                 `masq keygen > masq.key`), or use a policy that only pseudonymizes"
            );
        }
        let instance_pre = runtime.linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!(
                "policy {origin} imports something masq does not provide: {e:#}. A policy may \
                 import only masq:policy/pseudonym, masq:policy/seal, masq:policy/log and WASI"
            )
        })?;
        let pre = PolicyPluginPre::new(instance_pre).map_err(|e| {
            anyhow::anyhow!("policy {origin} does not implement the world masq:policy/policy-plugin@0.1.0: {e:#}")
        })?;

        let mut host = PolicyHost {
            runtime,
            pre,
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                writes: Vec::new(),
                settings: Vec::new(),
            },
            writes: Vec::new(),
            imports,
            compile: started.elapsed(),
            digest,
            options,
            keys,
            name: Arc::from(origin),
            loaded_at: SystemTime::now(),
        };
        let load_started = Instant::now();
        let (mut store, plugin) = host
            .instantiate(load_started)
            .map_err(|e| anyhow::anyhow!("policy {origin} failed to start: {e}"))?;
        let info = plugin
            .masq_policy_policy()
            .call_describe(&mut store)
            .map_err(|e| {
                anyhow::anyhow!(
                    "policy {origin}: `describe` failed: {}",
                    host.classify(e, &store, load_started)
                )
            })?;
        if info.name.trim().is_empty() || info.version.trim().is_empty() {
            bail!("policy {origin}: `describe` must return a name and a version");
        }
        // Both are stored with every ledger row and dead letter, and printed in logs.
        for (what, text) in [("name", &info.name), ("version", &info.version)] {
            if text.len() > 128 || text.chars().any(char::is_control) {
                bail!(
                    "policy {origin}: `describe` returned a {what} of {} bytes with {}; a {what} is at \
                     most 128 bytes of printable text",
                    text.len(),
                    if text.chars().any(char::is_control) {
                        "control characters"
                    } else {
                        "no control characters"
                    }
                );
            }
        }
        host.name = Arc::from(info.name.as_str());
        host.info = info;
        host.writes = host
            .configure(&mut store, &plugin, load_started)
            .map_err(|e| anyhow::anyhow!("policy {origin}: {e}"))?;
        tracing::debug!(
            policy = %host.info.name,
            version = %host.info.version,
            sha256 = %host.digest,
            compile_ms = compile_ms as u64,
            "policy compiled and checked"
        );
        Ok(host)
    }

    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The fields the policy writes with the operator's configuration.
    pub fn writes(&self) -> &[String] {
        &self.writes
    }

    /// What the component imports (all on the allowlist).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// How long compiling the component took.
    pub fn compile_time(&self) -> Duration {
        self.compile
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// SHA-256 of the component file, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Runs one batch in a fresh instance. Blocking and CPU-bound: call from a blocking thread.
    pub fn transform(&self, batch: &[Record]) -> Result<Vec<Outcome>, BatchError> {
        let started = Instant::now();
        let (mut store, plugin) = self.instantiate(started)?;
        self.configure(&mut store, &plugin, started)?;
        let outcomes = plugin
            .masq_policy_policy()
            .call_transform(&mut store, batch)
            .map_err(|e| self.classify(e, &store, started))?;
        if store.data().log_dropped > 0 {
            tracing::warn!(policy = %self.name, dropped = store.data().log_dropped, "policy logged too much; lines dropped");
        }
        if outcomes.len() != batch.len() {
            return Err(BatchError::WrongCount {
                got: outcomes.len(),
                expected: batch.len(),
            });
        }
        Ok(outcomes)
    }

    /// Runs a batch and, if it fails, finds the records that make it fail: each record gets
    /// its own outcome or its own error, and good records of a failed batch still get their
    /// outcome. A batch stopped by its deadline is retried record by record, so an endless
    /// loop costs one deadline per offending record; other failures are bisected, which finds
    /// a few bad records in a large batch with few calls.
    pub fn transform_isolated(&self, batch: &[Record]) -> Vec<Result<Outcome, BatchError>> {
        match self.transform(batch) {
            Ok(outcomes) => outcomes.into_iter().map(|o| self.check_output(o)).collect(),
            Err(e) if batch.len() == 1 => vec![Err(e)],
            Err(BatchError::Deadline { .. }) => batch
                .iter()
                .flat_map(|r| self.transform_isolated(std::slice::from_ref(r)))
                .collect(),
            Err(_) => self.bisect(batch),
        }
    }

    /// Splits a batch known to fail. When the left half succeeds the right half must hold
    /// the failure, so it is split again without running it whole: about 2n records run
    /// to find one bad record in n, instead of 3n.
    fn bisect(&self, failing: &[Record]) -> Vec<Result<Outcome, BatchError>> {
        if failing.len() == 1 {
            return self.transform_isolated(failing);
        }
        let (left, right) = failing.split_at(failing.len() / 2);
        let mut out = self.transform_isolated(left);
        let left_clean = out.iter().all(Result::is_ok);
        out.extend(if left_clean {
            self.bisect(right)
        } else {
            self.transform_isolated(right)
        });
        out
    }

    /// Holds a kept record to the output limits: field count, value sizes, name lengths.
    fn check_output(&self, outcome: Outcome) -> Result<Outcome, BatchError> {
        if let Outcome::Keep(fields) = &outcome {
            let o = &self.options;
            if fields.len() > o.max_fields {
                return Err(BatchError::Output(format!(
                    "{} fields, more than the {} allowed",
                    fields.len(),
                    o.max_fields
                )));
            }
            for f in fields {
                if f.name.is_empty() || f.name.len() > 63 {
                    return Err(BatchError::Output(format!(
                        "a field name of {} bytes; column names have 1 to 63",
                        f.name.len()
                    )));
                }
                let size = match &f.value {
                    super::Value::Text(t) | super::Value::Json(t) => t.len(),
                    _ => 0,
                };
                if size > o.max_value_bytes {
                    return Err(BatchError::Output(format!(
                        "field '{}' holds {size} bytes, more than the {} allowed",
                        f.name, o.max_value_bytes
                    )));
                }
            }
        }
        Ok(outcome)
    }

    fn instantiate(&self, started: Instant) -> Result<(Store<Sandbox>, PolicyPlugin), BatchError> {
        let sandbox = Sandbox::new(
            self.keys.current(),
            self.name.clone(),
            self.options.memory_limit,
        );
        let mut store = Store::new(&self.runtime.engine, sandbox);
        store.limiter(|s| s);
        let ticks = self
            .options
            .deadline
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64
            + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let plugin = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(e, &store, started))?;
        Ok((store, plugin))
    }

    /// Configures an instance; returns the fields this configuration writes.
    fn configure(
        &self,
        store: &mut Store<Sandbox>,
        plugin: &PolicyPlugin,
        started: Instant,
    ) -> Result<Vec<String>, BatchError> {
        plugin
            .masq_policy_policy()
            .call_configure(&mut *store, &self.options.config)
            .map_err(|e| self.classify(e, store, started))?
            .map_err(BatchError::Configure)
    }

    fn classify(
        &self,
        error: wasmtime::Error,
        store: &Store<Sandbox>,
        started: Instant,
    ) -> BatchError {
        if let Some(asked) = store.data().memory_denied {
            return BatchError::OutOfMemory {
                asked,
                limit: self.options.memory_limit,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => BatchError::Deadline {
                limit: self.options.deadline,
                after: started.elapsed(),
            },
            Some(trap) => BatchError::Trap(trap.to_string()),
            None => BatchError::Trap(
                format!("{error:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
        }
    }
}

/// `MASQ_COMPILE_CACHE` (empty to turn off), else `$XDG_CACHE_HOME/masq`, else `~/.cache/masq`.
fn compile_cache_dir() -> Option<std::path::PathBuf> {
    match std::env::var_os("MASQ_COMPILE_CACHE") {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(v.into()),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
            .map(|d| d.join("masq")),
    }
}

/// Advances the engine's epoch on a background thread so deadlines can fire.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("masq-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("cannot start the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
