//! `masq run --drain` must notice an empty queue even while some receives fail. It stops when
//! every receiver found the queue empty at once; retries and backoffs put the receivers out of
//! step, so a drain could go on for minutes after its last message.
//!
//! How long "soon" is depends on the machine, so the test counts instead: the receives that
//! reached the SQS server after the last message was committed. Each receiver needs at most
//! the one it had in flight and one that finds the queue empty; a drain that keeps polling
//! because its receivers never agree makes several a second.

use crate::harness::*;
use crate::support::faultproxy::FaultProxy;
use serde_json::json;
use std::time::{Duration, Instant};

/// Receive loops of the drain (masq's default, given explicitly since the bound uses it).
const RECEIVERS: u64 = 4;

#[tokio::test]
async fn a_drain_ends_soon_after_the_last_message_despite_receive_errors() {
    let _one_at_a_time = exclusive().await;
    let env = ChaosEnv::new("drainerr", 500).await;
    let proxy = FaultProxy::start(json!({"receive_5xx": 0.1, "receive_throttle": 0.1})).await;
    let receives =
        |stats: &serde_json::Value| stats["forwarded"]["ReceiveMessage"].as_u64().unwrap_or(0);

    let receivers = RECEIVERS.to_string();
    let mut child = env.spawn_run(
        &proxy.endpoint(),
        "run",
        &["--drain", "--receivers", &receivers],
    );
    env.wait_for_ledger(env.sent as i64, Duration::from_secs(300))
        .await;
    let done = Instant::now();
    let at_last_message = receives(&proxy.stats().await);
    // In flight at the last commit, plus one empty receive that parks it, per receiver; one
    // more each for slack.
    let bound = 3 * RECEIVERS;
    // Fails as soon as the count is over; the time limit is only a guard against a hang.
    let status = loop {
        if let Ok(status) = tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
            break status.unwrap();
        }
        let stats = proxy.stats().await;
        let after = receives(&stats) - at_last_message;
        assert!(
            after <= bound,
            "the drain is still running and made {after} receives after the last message was \
             written (at most {bound} expected: it keeps polling an empty queue); proxy {stats}; \
             log tail:\n{}",
            tail(&env.log("run"), 10)
        );
        assert!(
            done.elapsed() < Duration::from_secs(300),
            "masq --drain was still running 300 s after the last message was written ({stats}); \
             log tail:\n{}",
            tail(&env.log("run"), 10)
        );
    };
    let stats = proxy.stats().await;
    assert!(
        status.success(),
        "masq --drain failed ({status}):\n{}",
        env.log("run")
    );
    let after = receives(&stats) - at_last_message;
    eprintln!(
        "[drainerr] drain ended {:?} and {after} forwarded receives after the last message; \
         proxy {stats}; {}",
        done.elapsed(),
        env.summary("run")
    );
    assert!(
        after <= bound,
        "the drain made {after} receives after the last message was written (at most {bound} \
         expected: it kept polling an empty queue); proxy {stats}; log tail:\n{}",
        tail(&env.log("run"), 10)
    );
    env.assert_exactly_once().await;
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
