//! PostgreSQL stopped hard (`pg_ctl stop -m immediate`) and started again while masq runs:
//! batches in flight fail, some after the server committed them but before masq heard so;
//! masq must retry, reconnect and still write each message once.

use crate::harness::*;
use std::time::Duration;

#[tokio::test]
async fn postgres_crashing_mid_run_loses_and_duplicates_nothing() {
    let _one_at_a_time = exclusive().await;
    let (messages, crashes) = if full() { (50_000, 5) } else { (5_000, 2) };
    let env = ChaosEnv::new("pgcrash", messages).await;
    let seed = random_u64();
    let mut rng = masq::source::synthetic::SplitMix(seed);
    let points = strike_points(env.sent, crashes, &mut rng);
    eprintln!("[pgcrash] crashing PostgreSQL at ledger counts {points:?} (dice seed {seed})");

    // Small batches, so that the run lasts long enough for the crashes to land mid-stream.
    let mut child = env.spawn_run(
        &sqs_endpoint(),
        "run",
        &["--wait-seconds", "1", "--batch-size", "20"],
    );
    for &point in &points {
        env.wait_for_ledger(point, Duration::from_secs(300)).await;
        pg_crash();
        let down = Duration::from_millis(500 + rng.next() % 2500);
        tokio::time::sleep(down).await;
        pg_start();
        eprintln!(
            "[pgcrash] PostgreSQL was down {down:?}; ledger now {:?}",
            env.ledger().await
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "masq gave up when PostgreSQL went away:\n{}",
            env.log("run")
        );
    }
    env.wait_for_ledger(env.sent as i64, Duration::from_secs(300))
        .await;
    env.stop(&mut child, "run").await;
    eprintln!("[pgcrash] run: {}", env.summary("run"));

    env.settle().await;
    env.assert_exactly_once().await;
}
