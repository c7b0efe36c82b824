//! What a policy can reach from inside its sandbox: the `pseudonym`, `seal` and `log`
//! imports of both contracts (0.1 one value per call, 0.2 a column per call), an empty WASI
//! context, and the limits on its memory. One `Sandbox` lives for one batch. Log lines are
//! scrubbed of the batch's values here: the log is not masked.

use super::LogSecrets;
use super::contract_v01::masq::policy::{log, pseudonym, seal, types};
use super::contract_v02::masq::policy as v02;
use super::packed::{self, BadTexts};
use crate::keys::Pseudonymizer;
use anyhow::bail;
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::ResourceLimiter;
use wasmtime::component::Component;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Log lines a policy may write per batch; the rest are counted, so a chatty or hostile
/// policy cannot flood the operator's logs.
const LOG_LINES_PER_BATCH: u32 = 100;

pub struct Sandbox {
    /// Built on first use: most policies import no WASI at all, and building a context (it
    /// seeds random generators) costs more than the rest of a small batch.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pseudonymizer: Arc<Pseudonymizer>,
    policy_name: Arc<str>,
    memory_limit: usize,
    memory_used: usize,
    pub memory_denied: Option<usize>,
    log_lines: u32,
    pub log_dropped: u32,
    /// The batch the policy is running on, whose values its log lines must not carry. Set
    /// by the contract's `transform` before the call; `None` in `describe` and `configure`,
    /// which see no record.
    pub log_secrets: Option<Arc<dyn LogSecrets>>,
    /// The input fields the policy declared PII (0.2), scrubbed from any length.
    pub pii: Arc<[String]>,
}

impl Sandbox {
    pub fn new(
        pseudonymizer: Arc<Pseudonymizer>,
        policy_name: Arc<str>,
        memory_limit: usize,
    ) -> Sandbox {
        Sandbox {
            wasi: None,
            table: ResourceTable::new(),
            pseudonymizer,
            policy_name,
            memory_limit,
            memory_used: 0,
            memory_denied: None,
            log_lines: 0,
            log_dropped: 0,
            log_secrets: None,
            pii: Arc::from(Vec::new()),
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Nothing granted: no preopened directories, no environment, no arguments, no
        // sockets or name lookups, stdio closed. Clocks and random stay (harmless, and
        // language runtimes need them to start).
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtx::builder()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// Core instances, tables and memories one policy may create. Generous: a componentize-py
/// policy needs about a dozen instances; the point is a bound, not a squeeze.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for Sandbox {
    // Counts every memory of the component together: several memories must not add up to
    // more than the cap one memory is allowed.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used - current + desired;
        if total > self.memory_limit {
            self.memory_denied = Some(total);
            // Trapping (rather than letting memory.grow return -1) makes the cause certain;
            // an allocator that sees -1 usually traps anyway, with a vaguer message.
            wasmtime::bail!(
                "policy tried to grow its memory to {total} bytes, over the limit of {} bytes",
                self.memory_limit
            );
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl types::Host for Sandbox {}

impl pseudonym::Host for Sandbox {
    fn pseudonymize(&mut self, value: String) -> String {
        self.pseudonymizer.token(&value)
    }
}

impl seal::Host for Sandbox {
    fn seal(&mut self, value: String) -> wasmtime::Result<String> {
        match self.pseudonymizer.seal(&value) {
            Some(token) => Ok(token),
            // Unreachable through `PolicyHost::from_bytes`, which refuses a policy importing
            // `seal` without keys; a trap fails the batch rather than storing a raw value.
            None => {
                wasmtime::bail!("masq:policy/seal called without a key file (masq runs --unkeyed)")
            }
        }
    }
}

impl log::Host for Sandbox {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        self.write_log(level, message);
    }
}

impl v02::types::Host for Sandbox {}

impl v02::pseudonym::Host for Sandbox {
    fn pseudonymize_batch(&mut self, values: Vec<String>) -> Vec<String> {
        values.iter().map(|v| self.pseudonymizer.token(v)).collect()
    }

    fn pseudonymize_packed(
        &mut self,
        values: v02::types::Texts,
    ) -> wasmtime::Result<v02::types::Texts> {
        match packed::map(&values, self.memory_limit, |v| {
            Ok::<_, std::convert::Infallible>(self.pseudonymizer.token(v))
        }) {
            Ok(Ok(tokens)) => Ok(tokens),
            Err(BadTexts(why)) => wasmtime::bail!(
                "masq:policy/pseudonym.pseudonymize-packed was given a column packed wrongly: {why}"
            ),
        }
    }
}

impl v02::seal::Host for Sandbox {
    fn seal_batch(&mut self, values: Vec<String>) -> wasmtime::Result<Vec<String>> {
        let mut out = Vec::with_capacity(values.len());
        for value in &values {
            match self.pseudonymizer.seal(value) {
                Some(token) => out.push(token),
                // As for 0.1's `seal`: refused at load, so this only backs that check up.
                None => wasmtime::bail!(
                    "masq:policy/seal.seal-batch called without a key file (masq runs --unkeyed)"
                ),
            }
        }
        Ok(out)
    }

    fn seal_packed(&mut self, values: v02::types::Texts) -> wasmtime::Result<v02::types::Texts> {
        match packed::map(&values, self.memory_limit, |v| {
            self.pseudonymizer.seal(v).ok_or(())
        }) {
            Ok(Ok(tokens)) => Ok(tokens),
            // As for 0.1's `seal`: refused at load, so this only backs that check up.
            Ok(Err(())) => wasmtime::bail!(
                "masq:policy/seal.seal-packed called without a key file (masq runs --unkeyed)"
            ),
            Err(BadTexts(why)) => wasmtime::bail!(
                "masq:policy/seal.seal-packed was given a column packed wrongly: {why}"
            ),
        }
    }
}

impl v02::log::Host for Sandbox {
    fn log(&mut self, level: v02::log::Level, message: String) {
        let level = match level {
            v02::log::Level::Debug => tracing::Level::DEBUG,
            v02::log::Level::Info => tracing::Level::INFO,
            v02::log::Level::Warn => tracing::Level::WARN,
            v02::log::Level::Error => tracing::Level::ERROR,
        };
        self.write_log(level, message);
    }
}

/// Most characters of one policy log line that reach the log.
const LOG_LINE_CHARS: usize = 1000;
/// Longest policy log line masq scrubs and logs (cut to `LOG_LINE_CHARS`); longer ones are
/// dropped whole.
const LOG_LINE_SCRUB_BYTES: usize = 64 << 10;

impl Sandbox {
    /// Writes a policy's log line, scrubbed of the batch's values and cut to length. The
    /// policy is untrusted and its line is data: a record's value in it would reach masq's
    /// logs, which are not masked.
    fn write_log(&mut self, level: tracing::Level, message: String) {
        if self.log_lines >= LOG_LINES_PER_BATCH {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        // Scrubbed whole, then cut: a cut first could leave half a value no longer
        // recognised. A line too long to scrub cheaply is not logged at all.
        if message.len() > LOG_LINE_SCRUB_BYTES {
            let bytes = message.len();
            tracing::warn!(policy = %self.policy_name, bytes, "policy log line over {LOG_LINE_SCRUB_BYTES} bytes dropped");
            return;
        }
        let message = match &self.log_secrets {
            Some(secrets) => secrets.scrub(&message, &self.pii),
            None => message,
        };
        let message: String = message.chars().take(LOG_LINE_CHARS).collect();
        let policy = &*self.policy_name;
        match level {
            tracing::Level::DEBUG => tracing::debug!(policy, "{message}"),
            tracing::Level::INFO => tracing::info!(policy, "{message}"),
            tracing::Level::WARN => tracing::warn!(policy, "{message}"),
            _ => tracing::error!(policy, "{message}"),
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
pub(super) fn check_imports(
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
pub(super) fn is_seal_import(name: &str) -> bool {
    name == "masq:policy/seal" || name.starts_with("masq:policy/seal@")
}
