//! `PolicyHost`: compiles a policy component once, checks it at load, and runs every batch in
//! a fresh instance so no state crosses batches. Each run is bounded by a wall-clock deadline
//! (epoch interruption: cheap, unlike fuel) and a memory cap. A policy of either contract
//! (0.1 or 0.2) loads; which one it implements is decided once, at load.

use super::imports::{Sandbox, check_imports, is_seal_import};
use super::runtime::{EPOCH_TICK, PolicyRuntime};
use super::{Outcome, PolicyInfo, Record, contract_v01 as v01, contract_v02 as v02};
use crate::keys::Keys;
use anyhow::bail;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Component;
use wasmtime::{Store, Trap};

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
    #[error("policy's answer cannot be read as rows: {0}")]
    Malformed(String),
    #[error("policy output refused: {0}")]
    Output(String),
}

/// The policy contract a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `masq:policy@0.1.0`: a list of records, each field with its name.
    V01,
    /// `masq:policy@0.2.0`: a columnar batch, host calls a column at a time.
    V02,
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Contract::V01 => v01::CONTRACT,
            Contract::V02 => v02::CONTRACT,
        })
    }
}

/// A compiled, linked component, ready to instantiate, by contract.
enum Pre {
    V01(v01::PolicyPluginPre<Sandbox>),
    V02(v02::PolicyPluginPre<Sandbox>),
}

/// One instance of the policy, by contract.
enum Plugin {
    V01(v01::PolicyPlugin),
    V02(v02::PolicyPlugin),
}

/// What `configure` answered.
struct Configured {
    writes: Vec<String>,
    pii: Vec<String>,
}

pub struct PolicyHost {
    runtime: Arc<PolicyRuntime>,
    pre: Pre,
    info: PolicyInfo,
    /// The fields the policy writes under the operator's configuration.
    writes: Vec<String>,
    /// The input fields the policy declares PII under the operator's configuration (0.2;
    /// empty for 0.1, which cannot say).
    pii: Arc<[String]>,
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
        // 0.2 first: a component exports one contract's `policy`, and 0.2 is where new
        // policies are written.
        let pre = match v02::PolicyPluginPre::new(instance_pre.clone()) {
            Ok(pre) => Pre::V02(pre),
            Err(e02) => Pre::V01(v01::PolicyPluginPre::new(instance_pre).map_err(|e01| {
                anyhow::anyhow!(
                    "policy {origin} implements neither policy contract masq runs: as {} it fails with: {e02:#}; as {}: {e01:#}. Build it against \
                     wit/v0.2/policy.wit (world policy-plugin or pseudonym-policy-plugin), see \
                     docs/policy-authors.md",
                    v02::CONTRACT,
                    v01::CONTRACT
                )
            })?),
        };

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
            pii: Arc::from(Vec::new()),
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
        let info = match &plugin {
            Plugin::V01(p) => p.masq_policy_policy().call_describe(&mut store),
            Plugin::V02(p) => p
                .masq_policy_policy()
                .call_describe(&mut store)
                .map(v02::info),
        }
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
        let configured = host
            .configure(&mut store, &plugin, load_started)
            .map_err(|e| anyhow::anyhow!("policy {origin}: {e}"))?;
        host.writes = configured.writes;
        host.pii = Arc::from(configured.pii);
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

    /// The input fields the policy declares PII with the operator's configuration (0.2).
    pub fn pii(&self) -> &[String] {
        &self.pii
    }

    /// The contract the component implements.
    pub fn contract(&self) -> Contract {
        match self.pre {
            Pre::V01(_) => Contract::V01,
            Pre::V02(_) => Contract::V02,
        }
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
        store.data_mut().pii = self.pii.clone();
        let outcomes = match &plugin {
            Plugin::V01(p) => v01::transform(p, &mut store, batch)
                .map_err(|e| self.classify(e, &store, started))?,
            Plugin::V02(p) => v02::transform(p, &mut store, batch)
                .map_err(|e| self.classify(e, &store, started))?
                .map_err(|why| BatchError::Malformed(why.0))?,
        };
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

    fn instantiate(&self, started: Instant) -> Result<(Store<Sandbox>, Plugin), BatchError> {
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
        let plugin = match &self.pre {
            Pre::V01(pre) => pre.instantiate(&mut store).map(Plugin::V01),
            Pre::V02(pre) => pre.instantiate(&mut store).map(Plugin::V02),
        }
        .map_err(|e| self.classify(e, &store, started))?;
        Ok((store, plugin))
    }

    /// Configures an instance; returns the fields this configuration writes and those it
    /// declares PII.
    fn configure(
        &self,
        store: &mut Store<Sandbox>,
        plugin: &Plugin,
        started: Instant,
    ) -> Result<Configured, BatchError> {
        let config = &self.options.config;
        match plugin {
            Plugin::V01(p) => p
                .masq_policy_policy()
                .call_configure(&mut *store, config)
                .map(|r| {
                    r.map(|writes| Configured {
                        writes,
                        pii: Vec::new(),
                    })
                }),
            Plugin::V02(p) => p
                .masq_policy_policy()
                .call_configure(&mut *store, config)
                .map(|r| {
                    r.map(|c| Configured {
                        writes: c.writes,
                        pii: c.pii,
                    })
                }),
        }
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
