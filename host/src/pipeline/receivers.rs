//! The receivers as a pool: starts them, and with `Receivers::Auto` adds and retires them every
//! period by what `adapt` decides. A retired receiver finishes the receive it is in (its
//! messages are handed to the workers as usual) and stops before the next one.

use super::adapt::{self, Period, Receivers};
use super::held::Held;
use super::{Fatal, PipelineConfig, receive};
use crate::ops::metrics::Counters;
use crate::source::{Message, Source};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the number of receivers is reconsidered: a few round trips at 20 ms, and short
/// enough that a queue filling up is met within about a second.
const PERIOD: Duration = Duration::from_millis(100);
/// Receivers an adaptive pool starts with: today's fixed default, a fair guess anywhere.
const START: usize = 4;

/// What receivers report, read and reset every period.
#[derive(Default)]
pub(super) struct ReceiveStats {
    receives: AtomicU64,
    messages: AtomicU64,
    blocked_nanos: AtomicU64,
}

impl ReceiveStats {
    pub fn received(&self, messages: usize) {
        self.receives.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
    }

    pub fn blocked(&self, time: Duration) {
        self.blocked_nanos
            .fetch_add(time.as_nanos() as u64, Ordering::Relaxed);
    }

    fn take(&self, length: Duration, running: usize) -> Period {
        Period {
            receives: self.receives.swap(0, Ordering::Relaxed),
            messages: self.messages.swap(0, Ordering::Relaxed),
            blocked: Duration::from_nanos(self.blocked_nanos.swap(0, Ordering::Relaxed)),
            length,
            running,
        }
    }
}

/// The slots a pool has (its maximum) and how many run at the start, for `Held::new`.
pub(super) fn slots(receivers: Receivers, source_limit: usize) -> (usize, usize) {
    match receivers {
        Receivers::Fixed(n) => {
            let n = n.clamp(1, source_limit);
            (n, n)
        }
        Receivers::Auto { max } => {
            let max = max.clamp(1, source_limit);
            (max, START.min(max))
        }
    }
}

/// Everything a receiver needs, shared by the pool.
pub(super) struct Pool<S> {
    pub source: S,
    pub config: PipelineConfig,
    pub held: Arc<Held>,
    pub counters: Arc<Counters>,
    pub tx: mpsc::Sender<Vec<Message>>,
    pub receiving: CancellationToken,
    pub input_ended: CancellationToken,
    pub fatal: Fatal,
    pub stats: Arc<ReceiveStats>,
}

struct Running {
    task: JoinHandle<()>,
    retire: CancellationToken,
}

impl<S: Source> Pool<S> {
    /// Runs receivers until receiving stops (a stop, a drained source, a fatal error); returns
    /// once every receiver has.
    pub async fn run(self) {
        let (slots, start) = slots(self.config.receivers, self.source.max_receivers());
        let mut running: Vec<Option<Running>> = (0..slots).map(|_| None).collect();
        // Held counts the first `start` slots as running already.
        for (i, slot) in running.iter_mut().enumerate().take(start) {
            *slot = Some(self.spawn(i));
        }
        self.report(&running);
        let mut last = Instant::now();
        let mut controller = adapt::Controller::default();
        loop {
            tokio::select! {
                _ = self.receiving.cancelled() => break,
                _ = tokio::time::sleep(PERIOD) => {},
            }
            // Receivers that ended by themselves (drained, fatal) free their slot.
            for slot in running.iter_mut() {
                if slot.as_ref().is_some_and(|r| r.task.is_finished()) {
                    *slot = None;
                }
            }
            // Receivers still receiving (not the ones retiring).
            let count = running
                .iter()
                .flatten()
                .filter(|r| !r.retire.is_cancelled())
                .count();
            let period = self.stats.take(last.elapsed(), count);
            last = Instant::now();
            let Receivers::Auto { max } = self.config.receivers else {
                continue;
            };
            let target = controller.next(count, max.min(slots), &period);
            if target != count {
                tracing::debug!(
                    from = count,
                    to = target,
                    receives = period.receives,
                    messages = period.messages,
                    blocked_ms = period.blocked.as_millis() as u64,
                    "receivers"
                );
            }
            if target > count {
                let mut active = count;
                for (i, slot) in running.iter_mut().enumerate() {
                    if active >= target {
                        break;
                    }
                    if slot.is_none() && self.held.start(i) {
                        *slot = Some(self.spawn(i));
                        active += 1;
                    }
                }
            } else {
                // Retire from the highest slots down; each finishes its receive first.
                let active = running.iter().rev().flatten();
                for slot in active
                    .filter(|r| !r.retire.is_cancelled())
                    .take(count - target)
                {
                    slot.retire.cancel();
                }
            }
            self.report(&running);
        }
        for slot in running.into_iter().flatten() {
            let _ = slot.task.await;
        }
        Counters::set(&self.counters.receivers, 0);
    }

    fn spawn(&self, slot: usize) -> Running {
        let retire = CancellationToken::new();
        let task = tokio::spawn(receive::receive_loop(
            slot,
            self.source.clone(),
            self.config.clone(),
            self.held.clone(),
            self.counters.clone(),
            self.tx.clone(),
            receive::Stops {
                receiving: self.receiving.clone(),
                retire: retire.clone(),
                input_ended: self.input_ended.clone(),
                fatal: self.fatal.clone(),
            },
            self.stats.clone(),
        ));
        Running { task, retire }
    }

    fn report(&self, running: &[Option<Running>]) {
        let active = running
            .iter()
            .flatten()
            .filter(|r| !r.retire.is_cancelled())
            .count();
        Counters::set(&self.counters.receivers, active as u64);
        Counters::max(&self.counters.receivers_peak, active as u64);
    }
}
