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
use crate::sink::postgres::{Database, PostgresSink, WriteError, WriteReport};
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
    pub database: Database,
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
    /// How long masq may hold messages without moving before it says so (log, /healthz).
    pub stall_after: Duration,
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
    /// The held gauge and the progress clock behind /healthz.
    counters: Arc<Counters>,
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
    fn new(receivers: usize, counters: Arc<Counters>) -> Held {
        Held {
            inner: Mutex::new(HeldState {
                parked: vec![false; receivers],
                ..HeldState::default()
            }),
            wake: Notify::new(),
            counters,
        }
    }

    fn add(&self, messages: &[Message]) {
        let now = Instant::now();
        let mut s = self.inner.lock().expect("held lock");
        if s.receipts.is_empty() {
            // Holding nothing until now was not a stall: the clock starts with the holding.
            self.counters.progress();
        }
        for m in messages {
            s.receipts.insert(m.receipt.clone(), now);
        }
        self.counters
            .held
            .store(s.receipts.len() as u64, Ordering::Relaxed);
    }

    /// Forgets messages: deleted (`back_in_queue` false) or handed back to the queue (true,
    /// which wakes parked receivers to fetch them again).
    fn remove<'a>(&self, receipts: impl Iterator<Item = &'a str>, back_in_queue: bool) {
        let mut s = self.inner.lock().expect("held lock");
        for r in receipts {
            s.receipts.remove(r);
            s.shown.remove(r);
        }
        self.counters
            .held
            .store(s.receipts.len() as u64, Ordering::Relaxed);
        self.counters.progress();
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
        self.counters
            .held
            .store(s.receipts.len() as u64, Ordering::Relaxed);
        self.counters.progress();
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
        sinks.push(PostgresSink::connect(&config.database, schema.clone()).await?);
    }

    counters.set_stall_after(config.stall_after);
    let held = Arc::new(Held::new(config.receivers, counters.clone()));
    // A permanent error (a missing privilege, a dropped table) stops everything; it is kept
    // here and returned once every message is back in the queue.
    let fatal: Arc<Mutex<Option<anyhow::Error>>> = Arc::new(Mutex::new(None));
    let watchdog_stop = CancellationToken::new();
    let watchdog = tokio::spawn(watchdog_loop(
        counters.clone(),
        config.stall_after,
        watchdog_stop.clone(),
    ));
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
        let worker = Worker {
            sink: Some(sink),
            schema: schema.clone(),
            source: source.clone(),
            policy: policy.clone(),
            canary: canary.clone(),
            breaker: breaker.clone(),
            config: config.clone(),
            held: held.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            fatal: fatal.clone(),
        };
        workers.spawn(worker.run(rx.clone()));
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
    watchdog_stop.cancel();
    let _ = watchdog.await;
    match fatal.lock().expect("fatal lock").take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Says so in the log when masq holds messages and nothing moves (writes hang, a peer is
/// silent, the policy is stuck): once when it starts, once when it ends.
async fn watchdog_loop(counters: Arc<Counters>, stall_after: Duration, stop: CancellationToken) {
    if stall_after.is_zero() {
        return;
    }
    let period = (stall_after / 4).max(Duration::from_millis(250));
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {},
        }
        match counters.stalled() {
            Some(since) if !stalled => {
                stalled = true;
                tracing::error!(
                    held = Counters::get(&counters.held),
                    seconds = since.as_secs(),
                    "no progress while holding messages: the lines above say what is stuck \
                     (database, SQS or policy); /healthz now reports unhealthy"
                );
            }
            None if stalled => {
                stalled = false;
                tracing::info!("progress again; /healthz reports healthy");
            }
            _ => {}
        }
    }
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

/// One worker: takes batches, decides them, writes them, acknowledges them.
struct Worker {
    /// `None` after a timeout dropped the connection; the next write reconnects.
    sink: Option<PostgresSink>,
    schema: Arc<TableSchema>,
    source: SqsSource,
    policy: Arc<ActivePolicy>,
    canary: Arc<Canary>,
    breaker: Arc<Breaker>,
    config: PipelineConfig,
    held: Arc<Held>,
    counters: Arc<Counters>,
    stop: CancellationToken,
    fatal: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Worker {
    async fn run(mut self, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Message>>>>) {
        let mut acks = JoinSet::new();
        loop {
            let Some(batch) = next_batch(
                &rx,
                self.config.batch_size,
                self.config.batch_wait,
                &self.stop,
            )
            .await
            else {
                break;
            };
            let started = Instant::now();
            // The version in service when the batch starts decides all of it, even if a swap
            // happens meanwhile; the ledger names exactly this version.
            let policy = self.policy.current();
            let provenance = Provenance::of(&policy);
            let (items, health) =
                decide(&policy, self.source.queue_url(), batch, Some(&self.canary)).await;
            Counters::inc(
                &self.counters.policy_nanos,
                health.policy_time.as_nanos() as u64,
            );
            if let breaker::Verdict::Broken {
                failed,
                evaluated,
                back_off,
            } = self
                .breaker
                .judge(policy.digest(), health.failed, health.evaluated)
            {
                // Not bad data: the policy fails on most records. Dead-lettering would drain
                // the queue into the dead-letter table; leave the messages in the queue instead.
                self.counters.policy_broken.store(true, Ordering::Relaxed);
                Counters::inc(&self.counters.policy_broken_batches, 1);
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
                self.hand_back(&items, back_off.as_secs().min(43_200) as i32)
                    .await;
                if self.config.drain {
                    // A drain cannot finish with a broken policy: stop and say so (exit code 3).
                    self.stop.cancel();
                    break;
                }
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    _ = tokio::time::sleep(back_off) => continue,
                }
            }
            self.counters.policy_broken.store(false, Ordering::Relaxed);
            if self.config.dry_run {
                self.preview(&items).await;
                continue;
            }
            match self.write_with_retry(&items, &provenance).await {
                Ok(report) => {
                    crate::failpoint::crash_after_commit();
                    add_report(&self.counters, report);
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    self.counters.observe_batch(started.elapsed().as_secs_f64());
                    tracing::debug!(
                        messages = items.len(),
                        written = report.written,
                        dead_lettered = report.dead_lettered,
                        duplicates = report.duplicates,
                        ms = started.elapsed().as_millis() as u64,
                        "batch committed"
                    );
                    // Deleting after commit, off the worker's path: the next batch need not wait.
                    let source = self.source.clone();
                    let held = self.held.clone();
                    acks.spawn(async move {
                        let receipts: Vec<&str> =
                            items.iter().map(|i| i.message.receipt.as_str()).collect();
                        // Committed: no longer masq's to extend, whether or not the delete
                        // lands (a message that reappears is skipped by the ledger).
                        held.remove(receipts.iter().copied(), false);
                        source.delete(&receipts).await;
                    });
                }
                Err(Unwritten::Stopping) => {
                    // Stopping and the database never took the batch: give the messages back.
                    self.hand_back(&items, 0).await;
                }
                Err(Unwritten::Permanent(why)) => {
                    tracing::error!("{why}");
                    self.hand_back(&items, 0).await;
                    self.fatal
                        .lock()
                        .expect("fatal lock")
                        .get_or_insert_with(|| anyhow::anyhow!("{why}"));
                    self.stop.cancel();
                    break;
                }
            }
            while acks.try_join_next().is_some() {}
        }
        while acks.join_next().await.is_some() {}
    }

    /// Gives messages back to the queue, visible again after `seconds`.
    async fn hand_back(&self, items: &[Item], seconds: i32) {
        let receipts: Vec<&str> = items.iter().map(|i| i.message.receipt.as_str()).collect();
        self.source.set_visibility(&receipts, seconds).await;
        Counters::inc(&self.counters.released, receipts.len() as u64);
        self.held.remove(receipts.into_iter(), true);
    }

    /// Dry run: prints what the batch would do and keeps its messages until the end.
    async fn preview(&mut self, items: &[Item]) {
        let preview = match self.connected().await {
            Ok(sink) => sink.preview(items).await,
            Err(e) => Err(e),
        };
        match preview {
            Ok(lines) => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                for line in &lines {
                    let _ = writeln!(out, "{line}");
                }
                for line in &lines {
                    let counter = if line.get("row").is_some() {
                        &self.counters.written
                    } else if line.get("dead_letter").is_some() {
                        &self.counters.dead_lettered
                    } else if line.get("duplicate").is_some() {
                        &self.counters.duplicates
                    } else {
                        &self.counters.dropped
                    };
                    Counters::inc(counter, 1);
                }
                self.held
                    .shown(items.iter().map(|i| i.message.receipt.as_str()));
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "dry run: cannot read the ledger; handing the batch back");
                self.sink = None;
                self.hand_back(items, 0).await;
            }
        }
    }

    /// The worker's connection, made again if it broke or was dropped.
    async fn connected(&mut self) -> anyhow::Result<&mut PostgresSink> {
        if self.sink.as_ref().is_none_or(PostgresSink::is_closed) {
            self.sink = None;
            self.sink =
                Some(PostgresSink::connect(&self.config.database, self.schema.clone()).await?);
        }
        Ok(self.sink.as_mut().expect("connected above"))
    }

    /// Writes until the database takes the batch. Transient failures (a lost connection, a
    /// silent server, a restart) are retried with a log line each time; a permanent one
    /// (privileges, a dropped table) ends the retries at once, and so does a stop (after a
    /// grace period): the caller then hands the messages back to the queue.
    async fn write_with_retry(
        &mut self,
        items: &[Item],
        provenance: &Provenance,
    ) -> Result<WriteReport, Unwritten> {
        // Within the 25 s a stop may take, leave time to hand messages back.
        const GRACE_AFTER_STOP: Duration = Duration::from_secs(15);
        let mut backoff = Duration::from_millis(200);
        let mut stop_seen: Option<Instant> = None;
        let mut attempt = 0u32;
        // Duplicate copies of a message id in one batch would claim the id twice: write the first.
        let mut seen = HashSet::new();
        let unique: Vec<Item> = items
            .iter()
            .filter(|i| seen.insert(i.message.id.clone()))
            .cloned()
            .collect();
        loop {
            attempt += 1;
            let error = match self.connected().await {
                Err(e) => format!("{e:#}"),
                Ok(sink) => match sink.write(&unique, provenance).await {
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
                    Err(WriteError::Transient(why)) => {
                        // The connection is in an unknown state (a statement may still run on
                        // it): drop it, and retry on a fresh one.
                        self.sink = None;
                        why
                    }
                },
            };
            Counters::inc(&self.counters.postgres_errors, 1);
            tracing::warn!(
                attempt,
                messages = items.len(),
                retry_in_ms = backoff.as_millis() as u64,
                "batch not written, will retry: {error}"
            );
            if self.stop.is_cancelled() {
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if since.elapsed() >= GRACE_AFTER_STOP {
                    return Err(Unwritten::Stopping);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Why a batch was not written.
enum Unwritten {
    /// masq is stopping and the database did not take it in time.
    Stopping,
    /// Retrying cannot help; the message says what to fix.
    Permanent(String),
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
