//! The loops that talk to the source while workers work: receivers keep receives in flight and
//! hand chunks of messages to the workers; the heartbeat keeps every held message claimed.

use super::backoff::Backoff;
use super::held::Held;
use super::receivers::ReceiveStats;
use super::{Fatal, PipelineConfig};
use crate::ops::metrics::Counters;
use crate::source::{Message, Source};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What ends a receiver.
pub(super) struct Stops {
    /// Receiving as a whole stops: a signal, a drained source, a fatal error.
    pub receiving: CancellationToken,
    /// This receiver is retired by the pool: it stops before its next receive.
    pub retire: CancellationToken,
    /// Cancelled when a finite source comes back empty: its input has ended.
    pub input_ended: CancellationToken,
    pub fatal: Fatal,
}

/// One receiver, in slot `me`: receives until it is stopped or retired or, draining, the
/// source is empty; then its slot no longer counts for the drain decision.
#[allow(clippy::too_many_arguments)]
pub(super) async fn receive_loop<S: Source>(
    me: usize,
    source: S,
    config: PipelineConfig,
    held: Arc<Held>,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Vec<Message>>,
    stops: Stops,
    stats: Arc<ReceiveStats>,
) {
    receive_until_stopped(me, &source, &config, &held, &counters, &tx, &stops, &stats).await;
    held.retire(me);
}

#[allow(clippy::too_many_arguments)]
async fn receive_until_stopped<S: Source>(
    me: usize,
    source: &S,
    config: &PipelineConfig,
    held: &Held,
    counters: &Counters,
    tx: &mpsc::Sender<Vec<Message>>,
    stops: &Stops,
    stats: &ReceiveStats,
) {
    let (receiving, fatal) = (&stops.receiving, &stops.fatal);
    // Draining, a receive waits at most a second, so the end of the queue is seen quickly.
    let wait = if config.drain {
        config.wait.min(Duration::from_secs(1))
    } else {
        config.wait
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        if stops.retire.is_cancelled() {
            return;
        }
        let receive = source.receive(wait);
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
                    source.release(&receipts, Duration::ZERO).await;
                    Counters::inc(&counters.received, receipts.len() as u64);
                    Counters::inc(&counters.released, receipts.len() as u64);
                }
                return;
            }
        };
        if let Ok(messages) = &received {
            stats.received(messages.len());
        }
        match received {
            Ok(messages) if messages.is_empty() => {
                backoff.reset();
                if source.finite() {
                    stops.input_ended.cancel();
                }
                if config.drain {
                    // Registered before parking, so a wake-up in between is not lost.
                    let woken = held.wake.notified();
                    if held.park(me) {
                        receiving.cancel();
                        return;
                    }
                    tokio::select! {
                        _ = receiving.cancelled() => return,
                        _ = stops.retire.cancelled() => return,
                        _ = woken => {},
                    }
                    if !held.unpark(me) {
                        receiving.cancel();
                        return;
                    }
                }
            }
            Ok(messages) => {
                backoff.reset();
                held.add(&messages);
                Counters::inc(&counters.received, messages.len() as u64);
                // Time spent here is time the workers were the bottleneck.
                let waiting = std::time::Instant::now();
                let permit = tokio::select! {
                    _ = receiving.cancelled() => Err(()),
                    permit = tx.reserve() => permit.map_err(|_| ()),
                };
                stats.blocked(waiting.elapsed());
                match permit {
                    Ok(permit) => permit.send(messages),
                    Err(()) => {
                        // Stopping, or workers gone: give these back now rather than let
                        // them sit invisible until their timeout.
                        let receipts: Vec<&str> =
                            messages.iter().map(|m| m.receipt.as_str()).collect();
                        source.release(&receipts, Duration::ZERO).await;
                        Counters::inc(&counters.released, receipts.len() as u64);
                        held.remove(receipts.into_iter(), true);
                        return;
                    }
                }
            }
            Err(e) if source.finite() => {
                // A file that cannot be read will not become readable by waiting.
                fatal.set(e.context(format!("cannot read {}", source.name())));
                receiving.cancel();
                return;
            }
            Err(e) => {
                Counters::inc(&counters.sqs_errors, 1);
                let pause = backoff.next_delay();
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64, "receive failed");
                tokio::select! {
                    _ = receiving.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {},
                }
            }
        }
    }
}

/// Claims held messages again before their hold runs out, at a third of the hold period, so
/// one failed extension still leaves time for the next. Nothing to do for a source nobody
/// else reads.
pub(super) async fn heartbeat_loop<S: Source>(source: S, held: Arc<Held>, stop: CancellationToken) {
    let Some(hold) = source.hold_period() else {
        return;
    };
    let period = hold / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {},
        }
        let receipts = held.older_than(period);
        if !receipts.is_empty() {
            let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
            source.extend(&refs).await;
        }
    }
}
