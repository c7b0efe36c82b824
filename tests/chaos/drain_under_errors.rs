//! `masq run --drain` must notice an empty queue even while some receives fail. It stops when
//! every receiver found the queue empty at once; retries and backoffs put the receivers out of
//! step, so a drain could go on for minutes after its last message.

use crate::harness::*;
use crate::proxy::FaultProxy;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_drain_ends_soon_after_the_last_message_despite_receive_errors() {
    let _one_at_a_time = exclusive().await;
    let env = ChaosEnv::new("drainerr", 500).await;
    let proxy = FaultProxy::start(json!({"receive_5xx": 0.1, "receive_throttle": 0.1})).await;

    let mut child = env.spawn_run(&proxy.endpoint(), "run", &["--drain"]);
    env.wait_for_ledger(env.sent as i64, Duration::from_secs(120))
        .await;
    let done = Instant::now();
    // A drain's receives wait 1 s; with SDK retries (3 attempts, backoff up to a few seconds)
    // and masq's own backoff, 30 s after the last message is ample.
    let finished = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let stats = proxy.stats().await;
    assert!(
        finished.is_ok(),
        "masq --drain was still running 30 s after the last message was written (injected: {}); \
         log tail:\n{}",
        stats["injected"],
        tail(&env.log("run"), 10)
    );
    eprintln!(
        "[drainerr] drain ended {:?} after the last message; {}",
        done.elapsed(),
        env.summary("run")
    );
    env.assert_exactly_once().await;
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
