//! Says so when the pipeline is stuck: masq holds messages and nothing has moved (no batch
//! committed, nothing handed back) for longer than the stall timeout. /healthz reads the same
//! clock (`Counters::stalled`).

use crate::ops::metrics::Counters;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Says so in the log when masq holds messages and nothing moves (writes hang, a peer is
/// silent, the policy is stuck): once when it starts, once when it ends.
pub(super) async fn watchdog_loop(
    counters: Arc<Counters>,
    stall_after: Duration,
    stop: CancellationToken,
) {
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
