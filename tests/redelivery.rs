//! A crash after the commit and before the delete makes SQS deliver the same messages again;
//! the ledger makes the second delivery write nothing.

use crate::support::*;
use std::time::Duration;

#[tokio::test]
async fn messages_redelivered_after_a_crash_are_not_written_twice() {
    let env = TestEnv::new("redeliver").await;
    let bodies: Vec<String> = (0..100)
        .map(|i| {
            login(
                &format!("r-{i}"),
                &format!("10.3.0.{i}"),
                &format!("700-00-{i:04}"),
                "1.0.0",
                None,
            )
        })
        .collect();
    env.send(&bodies).await;

    // First run dies right after its first commit, before deleting anything.
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let out = env
        .command(&[
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--visibility-timeout",
            "5",
            "--workers",
            "1",
            "--batch-size",
            "1000",
            "--batch-wait-ms",
            "1000",
        ])
        .env("MASQ_FAILPOINT", "crash-after-commit")
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "the failpoint should have killed masq"
    );
    let written_before_crash = env.rows().await.len();
    assert!(
        written_before_crash > 0,
        "nothing was committed before the crash"
    );
    let (visible, in_flight) = env.depth().await;
    assert_eq!(
        visible + in_flight,
        100,
        "a message was deleted or lost before the crash"
    );

    // SQS hands the undeleted messages out again once their 5 s visibility timeout passes.
    // (fauxqs updates its in-flight count only on receive, so wait rather than poll.)
    tokio::time::sleep(Duration::from_secs(6)).await;
    let summary = env.drain(&[]).await;
    assert!(summary.contains("received 100,"), "{summary}");
    assert!(
        summary.contains(&format!("duplicates skipped {written_before_crash},")),
        "{summary} (expected {written_before_crash} duplicates)"
    );

    let rows = env.rows().await;
    assert_eq!(rows.len(), 100);
    assert_eq!(
        env.count("(SELECT DISTINCT user_id FROM $table) d").await,
        100,
        "duplicate rows"
    );
    assert_eq!(env.ledger_count().await, 100);
    assert_eq!(env.depth().await, (0, 0));
}
