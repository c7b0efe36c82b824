//! decode -> transform -> write -> acknowledge.
//!
//! Receivers keep several long polls in flight and hand chunks of messages to workers; each
//! worker gathers a batch, decodes it, runs the policy in a fresh sandbox, writes rows, ledger
//! and dead letters in one transaction, and only then deletes the messages. A heartbeat keeps
//! every message masq holds invisible to other consumers until it is deleted or handed back.
//! The loops end on a stop signal or, with `--drain`, when the queue is empty; they never end
//! because of one bad message.

use crate::batch::{Item, Provenance};
use crate::breaker::{self, Breaker};
use crate::decide::decide;
use crate::metrics::Counters;
use crate::policy::{ActivePolicy, Canary};
use crate::sink::postgres::{PostgresSink, WriteReport};
use crate::sink::schema::TableSchema;
use crate::source::Message;
use crate::source::sqs::SqsSource;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How the pipeline runs; built from the CLI by `main`.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub database_url: String,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub receivers: usize,
    pub workers: usize,
    pub visibility_timeout: i32,
    pub wait_seconds: i32,
    pub drain: bool,
    /// Print what would be written instead of writing; hold every message until the end,
    /// then hand all of them back.
    pub dry_run: bool,
}

/// Every message masq holds, from receipt until it is deleted or handed back. The heartbeat
/// extends these. In drain mode it also decides when the queue is empty: a receiver whose
/// receive comes back empty parks (stops polling); the queue is drained when every receiver
/// is parked and masq holds nothing. A receiver mid-receive is never parked, so messages it
/// is about to bring in cannot be missed; a receiver retrying after errors simply parks
/// later. Parked receivers wake when messages are handed back to the queue.
struct Held {
    inner: Mutex<HeldState>,
    /// Wakes parked receivers: messages went back to the queue, or the queue is drained.
    wake: Notify,
}

#[derive(Default)]
struct HeldState {
    receipts: HashMap<String, Instant>,
    /// Dry run: messages already shown, kept invisible until the end so none is shown twice,
    /// but no longer counted as work in progress.
    shown: HashMap<String, Instant>,
    parked: Vec<bool>,
    drained: bool,
}

impl HeldState {
    fn check_drained(&mut self) -> bool {
        if !self.drained && self.receipts.is_empty() && self.parked.iter().all(|p| *p) {
            self.drained = true;
        }
        self.drained
    }
}

impl Held {
    fn new(receivers: usize) -> Held {
        Held {
            inner: Mutex::new(HeldState {
                parked: vec![false; receivers],
                ..HeldState::default()
            }),
            wake: Notify::new(),
        }
    }

    fn add(&self, messages: &[Message]) {
        let now = Instant::now();
        let mut s = self.inner.lock().expect("held lock");
        for m in messages {
            s.receipts.insert(m.receipt.clone(), now);
        }
    }

    /// Forgets messages: deleted (`back_in_queue` false) or handed back to the queue (true,
    /// which wakes parked receivers to fetch them again).
    fn remove<'a>(&self, receipts: impl Iterator<Item = &'a str>, back_in_queue: bool) {
        let mut s = self.inner.lock().expect("held lock");
        for r in receipts {
            s.receipts.remove(r);
            s.shown.remove(r);
        }
        if back_in_queue {
            s.parked.iter_mut().for_each(|p| *p = false);
        }
        let drained = s.check_drained();
        drop(s);
        if back_in_queue || drained {
            self.wake.notify_waiters();
        }
    }

    fn older_than(&self, age: Duration) -> Vec<String> {
        let s = self.inner.lock().expect("held lock");
        s.receipts
            .iter()
            .chain(&s.shown)
            .filter(|(_, t)| t.elapsed() >= age)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Dry run: keeps messages invisible (heartbeat) without counting them as work in progress.
    fn shown<'a>(&self, receipts: impl Iterator<Item = &'a str>) {
        let mut s = self.inner.lock().expect("held lock");
        for r in receipts {
            if let Some(t) = s.receipts.remove(r) {
                s.shown.insert(r.to_string(), t);
            }
        }
        if s.check_drained() {
            drop(s);
            self.wake.notify_waiters();
        }
    }

    /// A receiver found the queue empty: parks it, and says whether the queue is drained.
    fn park(&self, receiver: usize) -> bool {
        let mut s = self.inner.lock().expect("held lock");
        s.parked[receiver] = true;
        let drained = s.check_drained();
        drop(s);
        if drained {
            self.wake.notify_waiters();
        }
        drained
    }

    /// Unparks a receiver that woke up; false if the queue is drained meanwhile.
    fn unpark(&self, receiver: usize) -> bool {
        let mut s = self.inner.lock().expect("held lock");
        if s.drained {
            return false;
        }
        s.parked[receiver] = false;
        true
    }
}

/// Runs until `stop` is cancelled or, in drain mode, the queue is empty.
pub async fn run(
    config: PipelineConfig,
    source: SqsSource,
    policy: Arc<ActivePolicy>,
    canary: Arc<Canary>,
    schema: Arc<TableSchema>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // Connect every worker before receiving anything, so a bad DATABASE_URL holds no message.
    let mut sinks = Vec::with_capacity(config.workers);
    for _ in 0..config.workers {
        sinks.push(PostgresSink::connect(&config.database_url, schema.clone()).await?);
    }

    let held = Arc::new(Held::new(config.receivers));
    // Receiving stops on `stop` or when drained; workers finish what they hold, then stop.
    let receiving = stop.child_token();
    let (tx, rx) = mpsc::channel::<Vec<Message>>(
        config.workers * config.batch_size.div_ceil(10) + config.receivers,
    );
    let rx = Arc::new(tokio::sync::Mutex::new(rx));

    let mut receivers = JoinSet::new();
    for receiver in 0..config.receivers {
        receivers.spawn(receive_loop(
            receiver,
            source.clone(),
            config.clone(),
            held.clone(),
            counters.clone(),
            tx.clone(),
            receiving.clone(),
        ));
    }
    drop(tx);

    let heartbeat_stop = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat_loop(
        source.clone(),
        held.clone(),
        config.visibility_timeout,
        heartbeat_stop.clone(),
    ));

    let breaker = Arc::new(Breaker::default());
    let mut workers = JoinSet::new();
    for sink in sinks {
        workers.spawn(worker_loop(
            sink,
            source.clone(),
            policy.clone(),
            canary.clone(),
            breaker.clone(),
            config.clone(),
            held.clone(),
            counters.clone(),
            rx.clone(),
            stop.clone(),
        ));
    }

    // Only workers may hold the receiving end: when they stop, senders must see it closed.
    drop(rx);
    while receivers.join_next().await.is_some() {}
    while workers.join_next().await.is_some() {}
    // Messages still held were received but never started (stop came first): hand them back.
    let leftovers: Vec<String> = held.older_than(Duration::ZERO);
    if !leftovers.is_empty() {
        let refs: Vec<&str> = leftovers.iter().map(String::as_str).collect();
        source.set_visibility(&refs, 0).await;
        counters
            .released
            .fetch_add(refs.len() as u64, Ordering::Relaxed);
        held.remove(refs.into_iter(), true);
    }
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    Ok(())
}

async fn receive_loop(
    me: usize,
    source: SqsSource,
    config: PipelineConfig,
    held: Arc<Held>,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Vec<Message>>,
    receiving: CancellationToken,
) {
    let wait = if config.drain {
        config.wait_seconds.min(1)
    } else {
        config.wait_seconds
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        let receive = source.receive(wait, config.visibility_timeout);
        tokio::pin!(receive);
        let received = tokio::select! {
            r = &mut receive => r,
            _ = receiving.cancelled() => {
                // A receive cut off mid-flight may already have taken messages, which would
                // then stay invisible for a whole timeout. With messages waiting it returns
                // within milliseconds, so let it finish briefly and hand back what it got.
                if let Ok(Ok(messages)) = tokio::time::timeout(Duration::from_secs(2), &mut receive).await
                    && !messages.is_empty()
                {
                    let receipts: Vec<&str> = messages.iter().map(|m| m.receipt.as_str()).collect();
                    source.set_visibility(&receipts, 0).await;
                    counters.received.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                    counters.released.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                }
                return;
            }
        };
        match received {
            Ok(messages) if messages.is_empty() => {
                backoff = Duration::from_millis(500);
                if config.drain {
                    // Registered before parking, so a wake-up in between is not lost.
                    let woken = held.wake.notified();
                    if held.park(me) {
                        receiving.cancel();
                        return;
                    }
                    tokio::select! {
                        _ = receiving.cancelled() => return,
                        _ = woken => {},
                    }
                    if !held.unpark(me) {
                        receiving.cancel();
                        return;
                    }
                }
            }
            Ok(messages) => {
                backoff = Duration::from_millis(500);
                held.add(&messages);
                counters
                    .received
                    .fetch_add(messages.len() as u64, Ordering::Relaxed);
                let permit = tokio::select! {
                    _ = receiving.cancelled() => Err(()),
                    permit = tx.reserve() => permit.map_err(|_| ()),
                };
                match permit {
                    Ok(permit) => permit.send(messages),
                    Err(()) => {
                        // Stopping, or workers gone: give these back now rather than let
                        // them sit invisible until their timeout.
                        let receipts: Vec<&str> =
                            messages.iter().map(|m| m.receipt.as_str()).collect();
                        source.set_visibility(&receipts, 0).await;
                        counters
                            .released
                            .fetch_add(receipts.len() as u64, Ordering::Relaxed);
                        held.remove(receipts.into_iter(), true);
                        return;
                    }
                }
            }
            Err(e) => {
                Counters::inc(&counters.sqs_errors, 1);
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "receive failed");
                tokio::select! {
                    _ = receiving.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn heartbeat_loop(
    source: SqsSource,
    held: Arc<Held>,
    visibility_timeout: i32,
    stop: CancellationToken,
) {
    // Extend at a third of the timeout, so one failed extension still leaves time for the next.
    let period = Duration::from_secs(visibility_timeout as u64) / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {},
        }
        let receipts = held.older_than(period);
        if !receipts.is_empty() {
            tracing::debug!(
                messages = receipts.len(),
                "extending visibility of held messages"
            );
            let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
            source.set_visibility(&refs, visibility_timeout).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn worker_loop(
    mut sink: PostgresSink,
    source: SqsSource,
    policy: Arc<ActivePolicy>,
    canary: Arc<Canary>,
    breaker: Arc<Breaker>,
    config: PipelineConfig,
    held: Arc<Held>,
    counters: Arc<Counters>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Message>>>>,
    stop: CancellationToken,
) {
    let mut acks = JoinSet::new();
    loop {
        let Some(batch) = next_batch(&rx, config.batch_size, config.batch_wait, &stop).await else {
            break;
        };
        let started = Instant::now();
        // The version in service when the batch starts decides all of it, even if a swap
        // happens meanwhile; the ledger names exactly this version.
        let policy = policy.current();
        let provenance = Provenance::of(&policy);
        let (items, health) = decide(&policy, source.queue_url(), batch, Some(&canary)).await;
        Counters::inc(&counters.policy_nanos, health.policy_time.as_nanos() as u64);
        if let breaker::Verdict::Broken {
            failed,
            evaluated,
            back_off,
        } = breaker.judge(policy.digest(), health.failed, health.evaluated)
        {
            // Not bad data: the policy fails on most records. Dead-lettering would drain the
            // queue into the dead-letter table; leave the messages in the queue instead.
            counters.policy_broken.store(true, Ordering::Relaxed);
            Counters::inc(&counters.policy_broken_batches, 1);
            tracing::error!(
                policy = %policy.info().name,
                version = %policy.info().version,
                failed,
                evaluated,
                back_off_s = back_off.as_secs(),
                last_error = %health.last_error,
                "policy is BROKEN: it fails on most records. Messages stay in the queue, nothing is \
                 dead-lettered; fix or swap the policy (replace the file, or SIGHUP)"
            );
            let receipts: Vec<&str> = items.iter().map(|i| i.message.receipt.as_str()).collect();
            source
                .set_visibility(&receipts, back_off.as_secs().min(43_200) as i32)
                .await;
            Counters::inc(&counters.released, receipts.len() as u64);
            held.remove(receipts.into_iter(), true);
            if config.drain {
                // A drain cannot finish with a broken policy: stop and say so (exit code 3).
                stop.cancel();
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(back_off) => continue,
            }
        }
        counters.policy_broken.store(false, Ordering::Relaxed);
        if config.dry_run {
            match sink.preview(&items).await {
                Ok(lines) => {
                    use std::io::Write as _;
                    let mut out = std::io::stdout().lock();
                    for line in &lines {
                        let _ = writeln!(out, "{line}");
                    }
                    for line in &lines {
                        let counter = if line.get("row").is_some() {
                            &counters.written
                        } else if line.get("dead_letter").is_some() {
                            &counters.dead_lettered
                        } else if line.get("duplicate").is_some() {
                            &counters.duplicates
                        } else {
                            &counters.dropped
                        };
                        Counters::inc(counter, 1);
                    }
                    held.shown(items.iter().map(|i| i.message.receipt.as_str()));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "dry run: cannot read the ledger; handing the batch back");
                    let receipts: Vec<&str> =
                        items.iter().map(|i| i.message.receipt.as_str()).collect();
                    source.set_visibility(&receipts, 0).await;
                    held.remove(receipts.into_iter(), true);
                }
            }
            continue;
        }
        match write_with_retry(
            &mut sink,
            &items,
            &provenance,
            &config.database_url,
            &counters,
            &stop,
        )
        .await
        {
            Some(report) => {
                crate::failpoint::crash_after_commit();
                add_report(&counters, report);
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.observe_batch(started.elapsed().as_secs_f64());
                tracing::debug!(
                    messages = items.len(),
                    written = report.written,
                    dead_lettered = report.dead_lettered,
                    duplicates = report.duplicates,
                    ms = started.elapsed().as_millis() as u64,
                    "batch committed"
                );
                // Deleting after commit, off the worker's path: the next batch need not wait.
                let source = source.clone();
                let held = held.clone();
                acks.spawn(async move {
                    let receipts: Vec<&str> =
                        items.iter().map(|i| i.message.receipt.as_str()).collect();
                    // Committed: no longer masq's to extend, whether or not the delete lands (a
                    // message that reappears is skipped by the ledger).
                    held.remove(receipts.iter().copied(), false);
                    source.delete(&receipts).await;
                });
            }
            None => {
                // Stopping and the database never took the batch: give the messages back.
                let receipts: Vec<&str> =
                    items.iter().map(|i| i.message.receipt.as_str()).collect();
                source.set_visibility(&receipts, 0).await;
                counters
                    .released
                    .fetch_add(receipts.len() as u64, Ordering::Relaxed);
                held.remove(receipts.into_iter(), true);
            }
        }
        while acks.try_join_next().is_some() {}
    }
    while acks.join_next().await.is_some() {}
}

/// Takes the next batch: waits for a first chunk, then fills up for at most `wait`.
/// `None` when stopping or when receivers are gone and nothing is left.
async fn next_batch(
    rx: &tokio::sync::Mutex<mpsc::Receiver<Vec<Message>>>,
    size: usize,
    wait: Duration,
    stop: &CancellationToken,
) -> Option<Vec<Message>> {
    let mut rx = rx.lock().await;
    let mut batch = tokio::select! {
        biased;
        _ = stop.cancelled() => return None,
        first = rx.recv() => first?,
    };
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < size {
        // A chunk is at most ten messages; a batch may end a little over `size` rather than
        // split a chunk.
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(more)) => batch.extend(more),
            Ok(None) | Err(_) => break,
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

/// Writes until the database takes the batch. Gives up only when stopping (after a grace
/// period), returning `None`: the caller then hands the messages back to the queue.
async fn write_with_retry(
    sink: &mut PostgresSink,
    items: &[Item],
    provenance: &Provenance,
    database_url: &str,
    counters: &Counters,
    stop: &CancellationToken,
) -> Option<WriteReport> {
    // Within the 25 s a stop may take, leave time to hand messages back.
    const GRACE_AFTER_STOP: Duration = Duration::from_secs(15);
    let mut backoff = Duration::from_millis(200);
    let mut stop_seen: Option<Instant> = None;
    // Duplicate copies of a message id in one batch would claim the id twice: write the first.
    let mut seen = HashSet::new();
    let unique: Vec<Item> = items
        .iter()
        .filter(|i| seen.insert(i.message.id.clone()))
        .cloned()
        .collect();
    loop {
        if sink.is_closed() {
            match PostgresSink::connect(database_url, sink.schema()).await {
                Ok(new) => *sink = new,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot reconnect to PostgreSQL")
                }
            }
        }
        if !sink.is_closed() {
            match sink.write(&unique, provenance).await {
                Ok(report) => return Some(report),
                Err(e) => {
                    Counters::inc(&counters.postgres_errors, 1);
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "batch not written; retrying")
                }
            }
        }
        if stop.is_cancelled() {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if since.elapsed() >= GRACE_AFTER_STOP {
                return None;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
