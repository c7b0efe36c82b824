//! Three masq processes draining one queue into one table: SQS hands each message to one of
//! them at a time, and the ledger settles any message two of them end up holding.

use crate::harness::*;
use crate::support::faultproxy::FaultProxy;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn three_consumers_on_one_queue_write_each_message_once() {
    let _one_at_a_time = exclusive().await;
    let messages = if full() { 60_000 } else { 6_000 };
    let mut env = ChaosEnv::new("scaleout", 0).await;

    // All three must be polling before the first message exists, or the first to start
    // could take the lot (masq drains thousands of messages a second). Each talks to SQS
    // through a proxy of its own that injects nothing and counts its calls: a consumer is
    // polling once a ReceiveMessage of its went through.
    let mut proxies = Vec::new();
    let mut children = Vec::new();
    for i in 0..3 {
        let proxy = FaultProxy::start(json!({})).await;
        children.push(env.spawn_run(
            &proxy.endpoint(),
            &format!("consumer-{i}"),
            &["--wait-seconds", "1"],
        ));
        proxies.push(proxy);
    }
    let start = Instant::now();
    for (i, proxy) in proxies.iter().enumerate() {
        while proxy.stats().await["forwarded"]["ReceiveMessage"]
            .as_u64()
            .unwrap_or(0)
            == 0
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "consumer {i} made no receive within 120 s:\n{}",
                env.log(&format!("consumer-{i}"))
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    env.send_generated(messages).await;
    env.wait_for_ledger(env.sent as i64, Duration::from_secs(300))
        .await;

    let mut received = 0;
    let mut committed = 0;
    for (i, child) in children.iter_mut().enumerate() {
        let label = format!("consumer-{i}");
        env.stop(child, &label).await;
        let summary = env.summary(&label);
        eprintln!("[scaleout] consumer {i}: {summary}");
        let (mine, done) = (
            summary_count(&summary, "received"),
            summary_committed(&summary),
        );
        assert!(
            mine > 0 && done > 0,
            "consumer {i} did no part of the work (received {mine}, committed {done}): {summary}"
        );
        received += mine;
        committed += done;
    }
    assert!(
        received >= env.sent,
        "the consumers received {received} of {} messages",
        env.sent
    );

    let settled: u64 = env
        .settle()
        .await
        .iter()
        .map(|s| summary_committed(s))
        .sum();
    // Each message committed once: by one consumer, or (if one was left over) by a settling
    // drain; never by two.
    assert_eq!(
        committed + settled,
        env.sent,
        "the consumers committed {committed} and the settling drains {settled} messages, of {} sent",
        env.sent
    );
    env.assert_exactly_once().await;
}
