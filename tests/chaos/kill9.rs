//! kill -9 at random moments, then a restart, again and again: whatever a killed process had
//! committed but not deleted comes back and is skipped by the ledger; whatever it held
//! uncommitted comes back and is written once. A random kill may or may not land between a
//! commit and its delete, so the last run dies at exactly that moment
//! (`MASQ_FAILPOINT=crash-after-commit`), and the settling drains must skip what it left.

use crate::harness::*;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// What `std::process::abort` dies of (Linux).
const SIGABRT: i32 = 6;

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
        // Each run gets a random share of what is left, so every kill lands mid-stream. A kill
        // lands a few hundred messages past its mark (polls every 20 ms, a random sleep of up
        // to 30 ms, at ~16k messages/s), so the marks stay a margin short of the end: a run
        // that drained the queue before its kill would leave nothing for the last run.
        let margin = env.sent as i64 / 5;
        let now = env.ledger().await.unwrap();
        let left = (env.sent as i64 - margin - now).max(1);
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

    // The last run aborts right after its first commit, before deleting that batch: its
    // messages are in the ledger and still in the queue, invisible until their timeout, when
    // a settling drain receives them and must skip them.
    let before = env.ledger().await.unwrap();
    assert!(
        before < env.sent as i64,
        "the kills left nothing for the crash-after-commit run"
    );
    let mut child = env.spawn_run_env(
        &sqs_endpoint(),
        "crash-after-commit",
        &["--wait-seconds", "1"],
        &[("MASQ_FAILPOINT", "crash-after-commit")],
    );
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .expect("the crash-after-commit run neither committed nor died within 300 s")
        .unwrap();
    let log = env.log("crash-after-commit");
    assert!(
        status.signal() == Some(SIGABRT) && log.contains("failpoint crash-after-commit"),
        "the crash-after-commit run did not abort at the failpoint ({status}):\n{log}"
    );
    // Its batch may hold only messages a killed run had committed (then the ledger does not
    // move): either way every message of it is in the ledger and back in the queue soon.
    eprintln!(
        "[kill9] crash-after-commit run committed, then aborted; ledger {before} -> {:?}",
        env.ledger().await
    );

    let summaries = env.settle().await;
    let duplicates: u64 = summaries
        .iter()
        .map(|s| summary_count(s, "duplicates skipped"))
        .sum();
    eprintln!(
        "[kill9] settled; duplicates skipped after the kills: {duplicates}; drains: {summaries:#?}"
    );
    // At least the batch the last run committed but never deleted came back to a settling
    // drain, and the ledger skipped it.
    assert!(
        duplicates >= 1,
        "no settling drain skipped a message already committed: {summaries:#?}"
    );
    env.assert_exactly_once().await;
}
