//! FIFO queues: 3 message groups of 300 messages each, 2 workers, batches of 100. Each group's
//! rows are written in send order (a sequence number in the body, checked against the order
//! the rows went into the table), exactly once, also when masq is killed with -9 mid-run.

use crate::support::aws::create_fifo_queue;
use crate::support::*;
use std::time::Duration;

const GROUPS: usize = 3;
const PER_GROUP: usize = 300;

/// A FIFO test env: its queue is a fresh `.fifo` queue, its table has the body's `grp` and
/// `seq`, and `row_no`, which numbers the rows in the order they were written.
async fn fifo_env(name: &str) -> TestEnv {
    let mut env = TestEnv::new(name).await;
    env.queue_url = create_fifo_queue(&env.sqs, name).await;
    env.db
        .batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN grp text, ADD COLUMN seq integer, ADD COLUMN row_no bigserial",
            env.table
        ))
        .await
        .unwrap();
    env
}

/// Seeds message i into group `group-{i % 3}` (masq seed --fifo-groups 3) with its place in
/// that group in the body.
async fn seed_groups(env: &TestEnv) {
    let bodies: Vec<String> = (0..GROUPS * PER_GROUP)
        .map(|i| {
            let mut v: serde_json::Value = serde_json::from_str(&login(
                &format!("fifo-{i}"),
                &format!("10.50.{}.{}", i / 256, i % 256),
                &format!("500-00-{i:04}"),
                "2.0.1",
                Some("US"),
            ))
            .unwrap();
            v["grp"] = format!("group-{}", i % GROUPS).into();
            v["seq"] = ((i / GROUPS) as i64).into();
            v.to_string()
        })
        .collect();
    let file = env.jsonl("groups.jsonl", &bodies);
    let groups = GROUPS.to_string();
    let out = env
        .masq(&["seed", "--file", &file, "--fifo-groups", &groups])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every group's rows, in the order they were written, are its sequence 0..300; nothing
/// missing, nothing twice.
async fn assert_groups_in_send_order(env: &TestEnv) {
    assert_eq!(env.count("$table").await, (GROUPS * PER_GROUP) as i64);
    assert_eq!(
        env.count("(SELECT DISTINCT user_id FROM $table) d").await,
        (GROUPS * PER_GROUP) as i64,
        "a message was written twice"
    );
    for g in 0..GROUPS {
        let seqs: Vec<i32> = env
            .db
            .query(
                &format!(
                    "SELECT seq FROM {} WHERE grp = $1 ORDER BY row_no",
                    env.table
                ),
                &[&format!("group-{g}")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected: Vec<i32> = (0..PER_GROUP as i32).collect();
        assert_eq!(seqs, expected, "group-{g} was not written in send order");
    }
    assert_eq!(env.ledger_count().await, (GROUPS * PER_GROUP) as i64);
    assert!(env.dead_letters().await.is_empty());
    assert_eq!(env.depth().await, (0, 0), "queue not empty");
}

#[tokio::test]
async fn fifo_groups_are_written_in_send_order_exactly_once() {
    let env = fifo_env("fifo-order").await;
    seed_groups(&env).await;
    let out = env
        .masq(&[
            "run",
            "--drain",
            "--plugin",
            plugin("sha256-masker").to_str().unwrap(),
            "--key-file",
            env.key_file.to_str().unwrap(),
            "--workers",
            "2",
            "--batch-size",
            "100",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("FIFO queue"),
        "masq did not say the queue is FIFO:\n{stderr}"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("received 900, written 900, dead-lettered 0"),
        "{summary}"
    );
    assert_groups_in_send_order(&env).await;
}

#[tokio::test]
async fn fifo_order_and_exactly_once_survive_kill_9() {
    let env = fifo_env("fifo-kill9").await;
    seed_groups(&env).await;
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--workers",
            "2",
            "--batch-size",
            "100",
            "--visibility-timeout",
            "5",
            "--wait-seconds",
            "1",
        ];
        args.extend(extra);
        env.command(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("masq starts")
    };
    // Killed twice mid-run at different depths (a third and two thirds in), then a run that
    // dies between a commit and its deletes.
    for mark in [300, 600] {
        let mut child = run(&[]);
        let start = std::time::Instant::now();
        while env.ledger_count().await < mark {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "no progress to {mark}"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "masq exited before the kill"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
    }
    let mut child = env
        .command(&[
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--workers",
            "2",
            "--batch-size",
            "100",
            "--visibility-timeout",
            "5",
            "--wait-seconds",
            "1",
        ])
        .env("MASQ_FAILPOINT", "crash-after-commit")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the crash-after-commit run neither committed nor died")
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(6),
        "the run did not abort at the failpoint"
    );

    // What the killed runs held comes back after the visibility timeout; drain until done.
    // The batch committed but never deleted comes back too, and the ledger skips it.
    let mut duplicates = 0;
    for _ in 0..20 {
        let summary = env
            .drain(&[
                "--workers",
                "2",
                "--batch-size",
                "100",
                "--visibility-timeout",
                "5",
            ])
            .await;
        duplicates += number_after(&summary, "duplicates skipped ");
        if env.ledger_count().await == (GROUPS * PER_GROUP) as i64 && env.depth().await == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    assert!(
        duplicates >= 1,
        "no drain met a message committed before a crash"
    );
    assert_groups_in_send_order(&env).await;
}

fn number_after(summary: &str, label: &str) -> u64 {
    let at = summary
        .find(label)
        .unwrap_or_else(|| panic!("no '{label}' in {summary}"));
    summary[at + label.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
