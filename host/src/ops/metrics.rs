//! Counters of what masq did, the Prometheus text they are served as (see `http` for the
//! server), and the stall clock behind /healthz.

use crate::policy::ActivePolicy;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Upper bounds of the batch-latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub duplicates: AtomicU64,
    pub released: AtomicU64,
    pub batches: AtomicU64,
    pub sqs_errors: AtomicU64,
    pub postgres_errors: AtomicU64,
    pub policy_swaps: AtomicU64,
    pub policy_refusals: AtomicU64,
    pub key_reloads: AtomicU64,
    pub key_refusals: AtomicU64,
    /// Batches given back because the policy failed on most of their records.
    pub policy_broken_batches: AtomicU64,
    /// Whether the last batch found the policy broken.
    pub policy_broken: AtomicBool,
    /// Nanoseconds spent inside policies.
    pub policy_nanos: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros_sum: AtomicU64,
    pub ready: AtomicBool,
    /// Receivers running now, and the most that ran at once.
    pub receivers: AtomicU64,
    pub receivers_peak: AtomicU64,
    /// Messages masq holds right now: received, not yet deleted or handed back.
    pub held: AtomicU64,
    /// When the pipeline last moved (a batch committed, messages handed back), in ms since
    /// the Unix epoch.
    last_progress_ms: AtomicU64,
    /// How long the pipeline may hold messages without moving before /healthz fails; 0: never.
    stall_after_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn inc(c: &AtomicU64, by: u64) {
        c.fetch_add(by, Ordering::Relaxed);
    }

    pub fn set(c: &AtomicU64, to: u64) {
        c.store(to, Ordering::Relaxed);
    }

    pub fn max(c: &AtomicU64, seen: u64) {
        c.fetch_max(seen, Ordering::Relaxed);
    }

    /// The pipeline moved: messages left masq's hands.
    pub fn progress(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Sets how long the pipeline may hold messages without moving before it counts as stuck,
    /// and starts the clock.
    pub fn set_stall_after(&self, after: std::time::Duration) {
        self.stall_after_ms
            .store(after.as_millis() as u64, Ordering::Relaxed);
        self.progress();
    }

    /// `Some(how long)` when masq holds messages and has not moved for longer than allowed:
    /// writes hang, a peer went silent, the policy is stuck.
    pub fn stalled(&self) -> Option<std::time::Duration> {
        let limit = Self::get(&self.stall_after_ms);
        // A broken policy is said loudly and waits on purpose, for a fix or a swap that a
        // restart would not bring.
        if limit == 0 || Self::get(&self.held) == 0 || self.policy_broken.load(Ordering::Relaxed) {
            return None;
        }
        let since = now_ms().saturating_sub(Self::get(&self.last_progress_ms));
        (since > limit).then(|| std::time::Duration::from_millis(since))
    }

    pub fn observe_batch(&self, seconds: f64) {
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_micros_sum
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter and the active policy.
    pub fn render(&self, policy: Option<&ActivePolicy>) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 14] = [
            (
                "masq_messages_received_total",
                "Messages received from the queue.",
                &self.received,
            ),
            (
                "masq_rows_written_total",
                "Rows written to the target table.",
                &self.written,
            ),
            (
                "masq_messages_dropped_total",
                "Messages a policy dropped.",
                &self.dropped,
            ),
            (
                "masq_dead_letters_total",
                "Messages written to the dead letters.",
                &self.dead_lettered,
            ),
            (
                "masq_duplicates_skipped_total",
                "Redelivered messages the ledger skipped.",
                &self.duplicates,
            ),
            (
                "masq_messages_released_total",
                "Messages handed back to the queue unprocessed.",
                &self.released,
            ),
            ("masq_batches_total", "Batches committed.", &self.batches),
            (
                "masq_sqs_errors_total",
                "Failed SQS calls.",
                &self.sqs_errors,
            ),
            (
                "masq_postgres_errors_total",
                "Failed PostgreSQL writes.",
                &self.postgres_errors,
            ),
            (
                "masq_policy_swaps_total",
                "Policy versions put in service while running.",
                &self.policy_swaps,
            ),
            (
                "masq_policy_refusals_total",
                "New policy files refused; the old version kept serving.",
                &self.policy_refusals,
            ),
            (
                "masq_key_reloads_total",
                "Key files reloaded while running.",
                &self.key_reloads,
            ),
            (
                "masq_key_refusals_total",
                "Key files refused; the old key kept serving.",
                &self.key_refusals,
            ),
            (
                "masq_policy_broken_batches_total",
                "Batches handed back because the policy failed on most records.",
                &self.policy_broken_batches,
            ),
        ];
        for (name, help, value) in counters {
            metric(&mut out, "counter", name, help, Self::get(value));
        }
        metric(
            &mut out,
            "counter",
            "masq_policy_seconds_total",
            "Time spent inside policies.",
            Self::get(&self.policy_nanos) as f64 / 1e9,
        );
        metric(
            &mut out,
            "gauge",
            "masq_receivers",
            "Receive calls kept in flight now (adapted to the load unless --receivers is a number).",
            Self::get(&self.receivers),
        );
        metric(
            &mut out,
            "gauge",
            "masq_messages_held",
            "Messages received and not yet deleted or handed back.",
            Self::get(&self.held),
        );
        metric(
            &mut out,
            "gauge",
            "masq_last_progress_timestamp_seconds",
            "When a batch last committed or messages were last handed back.",
            Self::get(&self.last_progress_ms) as f64 / 1e3,
        );
        metric(
            &mut out,
            "gauge",
            "masq_policy_broken",
            "1 while the policy fails on most records.",
            u8::from(self.policy_broken.load(Ordering::Relaxed)),
        );
        let _ = writeln!(
            out,
            "# HELP masq_batch_seconds Batch latency, receive to commit.\n# TYPE masq_batch_seconds histogram"
        );
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "masq_batch_seconds_bucket{{le=\"{bound}\"}} {}",
                Self::get(bucket)
            );
        }
        let count = Self::get(&self.latency_count);
        let _ = writeln!(out, "masq_batch_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "masq_batch_seconds_sum {}",
            Self::get(&self.latency_micros_sum) as f64 / 1e6
        );
        let _ = writeln!(out, "masq_batch_seconds_count {count}");
        if let Some(active) = policy {
            let p = active.current();
            let loaded = p
                .loaded_at()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "# HELP masq_policy_info The policy in service.\n# TYPE masq_policy_info gauge\n\
                 masq_policy_info{{name=\"{}\",version=\"{}\",sha256=\"{}\"}} 1\n\
                 # HELP masq_policy_loaded_timestamp_seconds When the policy in service was loaded.\n\
                 # TYPE masq_policy_loaded_timestamp_seconds gauge\nmasq_policy_loaded_timestamp_seconds {loaded}",
                escape(&p.info().name),
                escape(&p.info().version),
                p.digest()
            );
        }
        out
    }
}

/// One metric in the Prometheus text format: its help, its type, its value.
fn metric(out: &mut String, kind: &str, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stalled_only_while_holding_messages_past_the_limit() {
        let c = Counters::default();
        assert_eq!(c.stalled(), None, "no limit set: never stalled");
        c.set_stall_after(Duration::from_millis(50));
        assert_eq!(c.stalled(), None);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.stalled(), None, "holding nothing is idle, not stalled");
        c.held.store(3, Ordering::Relaxed);
        assert!(c.stalled().is_some_and(|d| d >= Duration::from_millis(50)));
        c.policy_broken.store(true, Ordering::Relaxed);
        assert_eq!(c.stalled(), None, "a broken policy waits on purpose");
        c.policy_broken.store(false, Ordering::Relaxed);
        c.progress();
        assert_eq!(c.stalled(), None, "progress resets the clock");
        assert!(c.render(None).contains("masq_messages_held 3"));
    }
}
