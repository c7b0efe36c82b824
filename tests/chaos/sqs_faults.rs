//! SQS misbehaving (through tools/faultproxy): receives that fail with 5xx or throttling,
//! batch deletes that fail for some entries, connections dropped before the server sees a
//! call and after it acted on one. masq must retry without losing or repeating a message.

use crate::harness::*;
use crate::support::faultproxy::FaultProxy;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn sqs_errors_and_dropped_connections_lose_and_duplicate_nothing() {
    let _one_at_a_time = exclusive().await;
    let messages = if full() { 30_000 } else { 3_000 };
    let env = ChaosEnv::new("sqsfaults", messages).await;
    let proxy = FaultProxy::start(json!({
        "receive_5xx": 0.05,
        "receive_throttle": 0.05,
        "delete_partial": 0.2,
        "drop_before": 0.01,
        "drop_after": 0.01,
    }))
    .await;

    // Not --drain: how fast a drain notices the end under errors is its own test
    // (drain_under_errors); this one waits for the ledger, then stops masq.
    let mut child = env.spawn_run(&proxy.endpoint(), "run", &["--wait-seconds", "1"]);
    env.wait_for_ledger(
        env.sent as i64,
        Duration::from_secs(if full() { 1200 } else { 240 }),
    )
    .await;
    env.stop(&mut child, "run").await;
    let stats = proxy.stats().await;
    eprintln!(
        "[sqsfaults] run: {}\n[sqsfaults] proxy: {stats}",
        env.summary("run")
    );
    for fault in [
        "receive_5xx",
        "receive_throttle",
        "delete_partial_entries",
        "drop_before",
        "drop_after",
    ] {
        assert!(
            stats["injected"][fault].as_u64().unwrap() > 0,
            "no {fault} was injected: {stats}"
        );
    }

    env.settle().await;
    env.assert_exactly_once().await;
}
