//! One worker: batch -> decide -> judge -> write -> acknowledge. It gathers a batch from the
//! receivers, has the policy decide it, lets the breaker judge the policy, writes the batch
//! in one transaction, and only then acknowledges its messages to the source. Whatever it
//! cannot write it hands back, so a message is always committed or back in the source.

use super::backoff::Backoff;
use super::batch::{Item, Provenance};
use super::breaker::{self, Breaker};
use super::decide::Decide;
use super::held::Held;
use super::{Fatal, PipelineConfig};
use crate::ops::metrics::Counters;
use crate::sink::{Sink, WriteError, WriteReport};
use crate::source::{Message, Source};
use rustc_hash::FxHashSet as HashSet;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the workers of one pipeline share.
pub(super) struct Shared {
    pub config: PipelineConfig,
    /// One judgement of the policy for all workers.
    pub breaker: Breaker,
    pub held: Arc<Held>,
    pub counters: Arc<Counters>,
    pub stop: CancellationToken,
    /// A finite source has ended: a batch takes what is waiting and goes.
    pub input_ended: CancellationToken,
    pub fatal: Fatal,
}

pub(super) struct Worker<S, K, D> {
    pub sink: K,
    pub source: S,
    pub decider: Arc<D>,
    pub shared: Arc<Shared>,
}

/// Why a batch was not written.
enum Unwritten {
    /// masq is stopping and the database did not take it in time.
    Stopping,
    /// Retrying cannot help; the message says what to fix.
    Permanent(String),
}

pub(super) type Batches = Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Message>>>>;

impl<S: Source, K: Sink, D: Decide> Worker<S, K, D> {
    pub async fn run(mut self, rx: Batches) {
        let mut acks = JoinSet::new();
        while let Some(batch) = next_batch(
            &rx,
            self.shared.config.batch_size,
            self.shared.config.batch_wait,
            &self.shared.stop,
            &self.shared.input_ended,
        )
        .await
        {
            // The batch's latency runs from the receipt of its first message; `started` is
            // when this worker took it (the log gives both: the wait for a worker shows apart).
            let started = Instant::now();
            let received = batch
                .iter()
                .map(|m| m.received_at)
                .min()
                .unwrap_or_else(Instant::now);
            let decided = self.decider.decide(self.source.name(), batch).await;
            let (items, health, provenance) = (decided.items, decided.health, decided.provenance);
            Counters::inc(
                &self.shared.counters.policy_nanos,
                health.policy_time.as_nanos() as u64,
            );
            if let breaker::Verdict::Broken {
                failed,
                evaluated,
                back_off,
            } = self
                .shared
                .breaker
                .judge(&provenance.digest, health.failed, health.evaluated)
            {
                // Not bad data: the policy fails on most records. Dead-lettering would drain
                // the source into the dead-letter table; leave the messages where they are.
                self.shared
                    .counters
                    .policy_broken
                    .store(true, Ordering::Relaxed);
                Counters::inc(&self.shared.counters.policy_broken_batches, 1);
                tracing::error!(
                    policy = %provenance.name,
                    version = %provenance.version,
                    failed,
                    evaluated,
                    back_off_s = back_off.as_secs(),
                    last_error = %health.last_error,
                    "policy is BROKEN: it fails on most records. Messages stay in the queue, nothing is \
                     dead-lettered; fix or swap the policy (replace the file, or SIGHUP)"
                );
                self.hand_back(&items, back_off).await;
                if self.shared.config.drain {
                    // A drain cannot finish with a broken policy: stop and say so (exit code 3).
                    self.shared.stop.cancel();
                    break;
                }
                tokio::select! {
                    _ = self.shared.stop.cancelled() => break,
                    _ = tokio::time::sleep(back_off) => continue,
                }
            }
            self.shared
                .counters
                .policy_broken
                .store(false, Ordering::Relaxed);
            if self.shared.config.dry_run {
                self.preview(&items).await;
                continue;
            }
            match self.write_with_retry(&items, &provenance).await {
                Ok(report) => {
                    crate::ops::failpoint::crash_after_commit();
                    add_report(&self.shared.counters, report);
                    Counters::inc(&self.shared.counters.batches, 1);
                    self.shared
                        .counters
                        .observe_batch(received.elapsed().as_secs_f64());
                    tracing::debug!(
                        messages = items.len(),
                        written = report.written,
                        dead_lettered = report.dead_lettered,
                        duplicates = report.duplicates,
                        ms = received.elapsed().as_millis() as u64,
                        work_ms = started.elapsed().as_millis() as u64,
                        "batch committed"
                    );
                    // Acknowledging after commit, off the worker's path: the next batch need
                    // not wait.
                    let source = self.source.clone();
                    let held = self.shared.held.clone();
                    acks.spawn(async move {
                        let receipts: Vec<&str> =
                            items.iter().map(|i| i.message.receipt.as_str()).collect();
                        if source.acknowledge_unlocks() {
                            // FIFO: the group's next messages appear only once these are
                            // deleted, so an empty receive before then does not mean the queue
                            // is drained. Held until deleted, then the receivers are woken.
                            source.acknowledge(&receipts).await;
                            held.remove(receipts.iter().copied(), true);
                            return;
                        }
                        // Committed: no longer masq's to extend, whether or not the
                        // acknowledgement lands (a message that reappears is skipped by the
                        // ledger).
                        held.remove(receipts.iter().copied(), false);
                        source.acknowledge(&receipts).await;
                    });
                }
                Err(Unwritten::Stopping) => {
                    // Stopping and the database never took the batch: give the messages back.
                    self.hand_back(&items, Duration::ZERO).await;
                }
                Err(Unwritten::Permanent(why)) => {
                    tracing::error!("{why}");
                    self.hand_back(&items, Duration::ZERO).await;
                    self.shared.fatal.set(anyhow::anyhow!("{why}"));
                    self.shared.stop.cancel();
                    break;
                }
            }
            while acks.try_join_next().is_some() {}
        }
        while acks.join_next().await.is_some() {}
    }

    /// Gives messages back to the source, to be offered again after `delay`.
    async fn hand_back(&self, items: &[Item], delay: Duration) {
        let receipts: Vec<&str> = items.iter().map(|i| i.message.receipt.as_str()).collect();
        self.source.release(&receipts, delay).await;
        Counters::inc(&self.shared.counters.released, receipts.len() as u64);
        self.shared.held.remove(receipts.into_iter(), true);
    }

    /// Dry run: prints what the batch would do and keeps its messages until the end.
    async fn preview(&mut self, items: &[Item]) {
        match self.sink.preview(items).await {
            Ok(lines) => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                for line in &lines {
                    let _ = writeln!(out, "{line}");
                }
                for line in &lines {
                    let counter = if line.get("row").is_some() {
                        &self.shared.counters.written
                    } else if line.get("dead_letter").is_some() {
                        &self.shared.counters.dead_lettered
                    } else if line.get("duplicate").is_some() {
                        &self.shared.counters.duplicates
                    } else {
                        &self.shared.counters.dropped
                    };
                    Counters::inc(counter, 1);
                }
                self.shared
                    .held
                    .shown(items.iter().map(|i| i.message.receipt.as_str()));
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "dry run: cannot read the ledger; handing the batch back");
                self.hand_back(items, Duration::ZERO).await;
            }
        }
    }

    /// Writes until the sink takes the batch. Transient failures (a lost connection, a
    /// silent server, a restart) are retried with a log line each time; a permanent one
    /// (privileges, a dropped table) ends the retries at once, and so does a stop (after a
    /// grace period): the caller then hands the messages back to the source.
    async fn write_with_retry(
        &mut self,
        items: &[Item],
        provenance: &Provenance,
    ) -> Result<WriteReport, Unwritten> {
        // Within the 25 s a stop may take, leave time to hand messages back.
        const GRACE_AFTER_STOP: Duration = Duration::from_secs(15);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut stop_seen: Option<Instant> = None;
        // Duplicate copies of a message id in one batch would claim the id twice: write the first.
        // Most batches have none, and are written as they are, without a copy.
        let mut seen = HashSet::with_capacity_and_hasher(items.len(), Default::default());
        let unique: Cow<[Item]> = if items.iter().all(|i| seen.insert(i.message.id.as_str())) {
            Cow::Borrowed(items)
        } else {
            let mut seen = HashSet::default();
            Cow::Owned(
                items
                    .iter()
                    .filter(|i| seen.insert(i.message.id.as_str()))
                    .cloned()
                    .collect(),
            )
        };
        for attempt in 1.. {
            let error = match self.sink.write(&unique, provenance).await {
                Ok(report) => {
                    if attempt > 1 {
                        tracing::info!(
                            attempt,
                            messages = items.len(),
                            "batch written after retries"
                        );
                    }
                    return Ok(report);
                }
                Err(WriteError::Permanent(why)) => return Err(Unwritten::Permanent(why)),
                Err(WriteError::Transient(why)) => why,
            };
            Counters::inc(&self.shared.counters.postgres_errors, 1);
            let pause = backoff.next_delay();
            tracing::warn!(
                attempt,
                messages = items.len(),
                retry_in_ms = pause.as_millis() as u64,
                "batch not written, will retry: {error}"
            );
            if self.shared.stop.is_cancelled() {
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if since.elapsed() >= GRACE_AFTER_STOP {
                    return Err(Unwritten::Stopping);
                }
            }
            tokio::time::sleep(pause).await;
        }
        unreachable!("the attempts never run out")
    }
}

/// Takes the next batch: waits for a first chunk, then fills up for at most `wait`, or only
/// with what is already waiting once a finite source has ended (nothing more will come; the
/// last batch of a file would otherwise wait `wait` for nothing). `None` when stopping or
/// when receivers are gone and nothing is left.
async fn next_batch(
    rx: &Batches,
    size: usize,
    wait: Duration,
    stop: &CancellationToken,
    input_ended: &CancellationToken,
) -> Option<Vec<Message>> {
    let mut rx = rx.lock().await;
    let mut batch = tokio::select! {
        biased;
        _ = stop.cancelled() => return None,
        first = rx.recv() => first?,
    };
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < size {
        // A chunk is at most ten messages from SQS; a batch may end a little over `size`
        // rather than split a chunk.
        let more = tokio::select! {
            more = tokio::time::timeout_at(deadline, rx.recv()) => more.ok().flatten(),
            _ = input_ended.cancelled() => rx.try_recv().ok(),
        };
        match more {
            Some(more) => batch.extend(more),
            None => break,
        }
    }
    Some(batch)
}

fn add_report(c: &Counters, r: WriteReport) {
    Counters::inc(&c.written, r.written);
    Counters::inc(&c.dropped, r.dropped);
    Counters::inc(&c.dead_lettered, r.dead_lettered);
    Counters::inc(&c.duplicates, r.duplicates);
}
