//! Stopping on SIGINT or SIGTERM: stop receiving, finish what is in flight, hand the rest
//! back, and exit within 25 s; a second signal exits at once.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest a stop may take from signal to exit.
const STOP_DEADLINE: Duration = Duration::from_secs(25);

/// Cancels `stop` on the first SIGINT or SIGTERM.
pub fn stop_on_signal(stop: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!(
            "stopping: no new receives; finishing batches in flight, handing back the rest"
        );
        stop.cancel();
        // A stop must not hang: past the deadline, exit. Messages not yet deleted reappear
        // after their visibility timeout and the ledger skips those already written.
        std::thread::spawn(|| {
            std::thread::sleep(STOP_DEADLINE);
            crate::ops::logging::fatal(&format!(
                "stop took longer than {} s; exiting now",
                STOP_DEADLINE.as_secs()
            ));
            std::process::exit(2);
        });
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        crate::ops::logging::fatal("second signal: exiting now");
        std::process::exit(130);
    });
}
