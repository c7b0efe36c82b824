//! kill -9 at random moments, then a restart, again and again: whatever a killed process had
//! committed but not deleted comes back and is skipped by the ledger; whatever it held
//! uncommitted comes back and is written once.

use crate::harness::*;
use std::time::Duration;

#[tokio::test]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let _one_at_a_time = exclusive().await;
    let (messages, kills) = if full() { (100_000, 20) } else { (5_000, 5) };
    let env = ChaosEnv::new("kill9", messages).await;
    let seed = random_u64();
    let mut rng = masq::source::synthetic::SplitMix(seed);
    eprintln!("[kill9] {kills} kills (dice seed {seed})");

    for i in 0..kills {
        let label = format!("run-{i}");
        let mut child = env.spawn_run(&sqs_endpoint(), &label, &["--wait-seconds", "1"]);
        // Each run gets a random share of what is left, so every kill lands mid-stream.
        let now = env.ledger().await.unwrap();
        let left = env.sent as i64 - now;
        let point = now + 1 + (rng.next() % (left / (kills - i + 1) as i64).max(1) as u64) as i64;
        env.wait_for_ledger(point, Duration::from_secs(300)).await;
        // Past the mark, strike anywhere within the next few batches: mid-receive,
        // mid-policy, mid-COPY, between commit and delete.
        tokio::time::sleep(Duration::from_millis(rng.next() % 30)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "masq ({label}) exited on its own before the kill:\n{}",
            env.log(&label)
        );
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        eprintln!(
            "[kill9] killed run {i} past ledger {point}, at {:?}",
            env.ledger().await
        );
    }

    let summaries = env.settle().await;
    let duplicates: u64 = summaries
        .iter()
        .map(|s| summary_count(s, "duplicates skipped"))
        .sum();
    eprintln!(
        "[kill9] settled; duplicates skipped after the kills: {duplicates}; drains: {summaries:#?}"
    );
    env.assert_exactly_once().await;
}
