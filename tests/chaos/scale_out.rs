//! Three masq processes draining one queue into one table: SQS hands each message to one of
//! them at a time, and the ledger settles any message two of them end up holding.

use crate::harness::*;
use std::time::Duration;

#[tokio::test]
async fn three_consumers_on_one_queue_write_each_message_once() {
    let _one_at_a_time = exclusive().await;
    let messages = if full() { 60_000 } else { 6_000 };
    let env = ChaosEnv::new("scaleout", messages).await;

    let mut children: Vec<_> = (0..3)
        .map(|i| env.spawn_run(&sqs_endpoint(), &format!("consumer-{i}"), &["--drain"]))
        .collect();
    let mut received = 0;
    for (i, child) in children.iter_mut().enumerate() {
        let label = format!("consumer-{i}");
        let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
            .await
            .unwrap_or_else(|_| panic!("consumer {i} did not finish its drain in 300 s"))
            .unwrap();
        assert!(
            status.success(),
            "consumer {i} failed:\n{}",
            env.log(&label)
        );
        let summary = env.summary(&label);
        eprintln!("[scaleout] consumer {i}: {summary}");
        received += summary_count(&summary, "received");
    }
    assert!(
        received >= env.sent,
        "the consumers received {received} of {} messages",
        env.sent
    );

    env.settle().await;
    env.assert_exactly_once().await;
}
