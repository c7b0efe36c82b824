//! SIGTERM: masq stops receiving, commits what it holds, hands the rest back and exits in
//! time, losing nothing.

use crate::support::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_commits_in_flight_work_hands_back_the_rest_and_loses_nothing() {
    let env = TestEnv::new("shutdown").await;
    let out = env.masq(&["seed", "--count", "3000", "--seed", "11"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let child = env
        .command(&[
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--batch-size",
            "20",
            "--wait-seconds",
            "20",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it get going, then stop it mid-stream.
    let start = Instant::now();
    while env.ledger_count().await < 200 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "masq wrote nothing within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap().to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("masq did not exit within 30 s of SIGTERM")
        .unwrap();
    let took = signalled.elapsed();
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(25),
        "stop took {took:?}, over the 25 s promised"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.starts_with("stopped:"), "{summary}");

    // Everything not committed is back in the queue at once, not stuck invisible.
    let committed = env.ledger_count().await as u64;
    assert!(committed < 3000, "the stop came too late to test anything");
    let (visible, in_flight) = env.depth().await;
    assert_eq!(in_flight, 0, "messages left invisible after the stop");
    assert_eq!(
        visible + committed,
        3000,
        "committed {committed} + visible {visible} != 3000"
    );

    // A second run finishes the job; every message is handled exactly once.
    env.drain(&[]).await;
    assert_eq!(env.ledger_count().await, 3000);
    let rows = env.rows().await.len() as i64;
    let dead = env.dead_letters().await.len() as i64;
    assert_eq!(rows + dead, 3000);
    assert_eq!(
        env.count("(SELECT DISTINCT masked_ip FROM $table) d").await,
        rows,
        "a row was written twice"
    );
    assert_eq!(env.depth().await, (0, 0));
}
