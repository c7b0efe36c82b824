//! The engine every version of a policy runs on: compiled code (cached on disk), the pooling
//! allocator, the linker with masq's imports, and the epoch ticker behind deadlines. Made once
//! per process, so a hot swap only compiles the new component.

use super::imports::Sandbox;
use super::{contract_v01, contract_v02};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

/// Dirty pages of a policy's memory (and table) kept mapped when its slot is reset for the
/// next instance, per slot: reset in place (only the pages written, found with Linux's
/// PAGEMAP_SCAN) instead of handed back to the kernel and faulted in again by the next batch.
/// Measured with `policy_cost` at batch 1: sha256-masker 48 -> 24 us per instance, js-masker
/// 1.6 -> 1.05 ms, python-masker 2.1 -> 1.6 ms. A bound, not a reservation: the default
/// policy dirties a few hundred KiB; a language runtime up to this much per slot in use.
const KEEP_RESIDENT: usize = 16 << 20;

/// How often the epoch advances; the deadline is checked at this granularity.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine every version of a policy runs on: compiled code, the linker with masq's
/// imports, and the epoch thread behind deadlines. Made once per process, so a hot swap only
/// compiles the new component.
pub struct PolicyRuntime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<Sandbox>,
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
        config.allocation_strategy(pooling());
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot set up the WebAssembly engine: {e:#}"))?;
        let mut linker: Linker<Sandbox> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e:#}"))?;
        // Both contracts' imports: their names carry the version (`masq:policy/log@0.1.0`,
        // `...@0.2.0`), so one linker serves 0.1 and 0.2 policies.
        contract_v01::PolicyPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link masq's 0.1 imports: {e:#}"))?;
        contract_v02::PolicyPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link masq's 0.2 imports: {e:#}"))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(PolicyRuntime {
            engine,
            linker,
            _ticker: ticker,
        })
    }
}

/// A fresh instance per batch is only affordable if instantiating is cheap: the pooling
/// allocator reuses pre-reserved slots (and resets memory copy-on-write) instead of mapping
/// and unmapping memory for every batch. Limits: enough for every worker, a reload's checks
/// and the largest language runtimes (Python, JavaScript) at once; the per-policy memory cap
/// itself is enforced by the store's limiter.
fn pooling() -> wasmtime::InstanceAllocationStrategy {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(64)
        .total_core_instances(512)
        .total_memories(128)
        .total_tables(512)
        .table_elements(200_000)
        .max_memory_size(4 << 30);
    // Resetting only the dirty pages needs Linux's PAGEMAP_SCAN (6.7+); without it, keeping
    // pages resident would cost a memset of KEEP_RESIDENT bytes per batch, so pages go back
    // to the kernel as before.
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Yes);
    }
    wasmtime::InstanceAllocationStrategy::Pooling(pool)
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
