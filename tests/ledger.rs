//! The ledger stays the size of its retention: partitions past `--ledger-retention` are
//! dropped, a message delivered again within it is still skipped, consumers making partitions
//! at once do not collide, and `masq run` refuses a retention shorter than the queue can
//! redeliver a message.

use crate::support::*;
use std::collections::BTreeSet;

/// `days` days before today (UTC), as `--sent-at` takes it.
fn days_ago(days: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(days)).to_string()
}

/// A JSONL file of `n` logins in `dir`.
fn logins_file(dir: &TestDir, name: &str, n: usize) -> String {
    let path = dir.join(format!("{name}.jsonl"));
    let lines: Vec<String> = (0..n)
        .map(|i| {
            login(
                &format!("{name}-{i}"),
                &format!("10.9.0.{i}"),
                &format!("900-00-{i:04}"),
                "1.0.0",
                None,
            )
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

impl TestEnv {
    async fn target_id(&self) -> i32 {
        self.db
            .query_one(
                "SELECT id FROM masq.targets WHERE name = $1",
                &[&self.table],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The UTC days this table's ledger has a partition for, as masq.ledger_partitions says
    /// and as the catalog shows (both must agree).
    async fn partition_days(&self) -> BTreeSet<String> {
        let target = self.target_id().await;
        let listed: BTreeSet<String> = self
            .db
            .query(
                "SELECT day::text FROM masq.ledger_partitions WHERE target = $1",
                &[&target],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let attached: BTreeSet<String> = self
            .db
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'masq.ledger'::regclass AND c.relname LIKE $1",
                &[&format!("ledger\\_{target}\\_%")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                let day = name.rsplit('_').next().unwrap().to_string();
                format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..])
            })
            .collect();
        assert_eq!(listed, attached, "bookkeeping and catalog disagree");
        listed
    }

    /// (message id, send date) of every entry of this table's ledger, sorted.
    async fn entries(&self) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = self
            .db
            .query(
                "SELECT message_id, (sent_at AT TIME ZONE 'UTC')::date::text \
                 FROM masq.ledger_entries($1)",
                &[&self.table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        entries.sort();
        entries
    }
}

fn ids(source: &str, n: usize, date: &str) -> Vec<(String, String)> {
    (1..=n)
        .map(|line| (format!("{source}:{line}"), date.to_string()))
        .collect()
}

#[tokio::test]
async fn entries_past_the_retention_are_dropped_and_redeliveries_within_it_are_skipped() {
    let env = TestEnv::new("prune").await;
    let dir = tempdir("prune");
    let (old_day, recent_day) = (days_ago(40), days_ago(2));
    let old = logins_file(&dir, "old", 3);
    let recent = logins_file(&dir, "recent", 4);
    let retention = ["--ledger-retention", "30d"];

    // A backfill of messages sent 40 days ago, past the 30-day retention: its day gets a
    // partition all the same, kept for a whole retention after it was made.
    let mut args = vec!["--source-id", "old", "--sent-at", &old_day];
    args.extend(retention);
    let (ok, out, err) = env.load(&old, &args).await;
    assert!(ok && out.contains("written 3,"), "{out}{err}");
    let mut recent_args = vec!["--source-id", "recent", "--sent-at", &recent_day];
    recent_args.extend(retention);
    let (ok, out, err) = env.load(&recent, &recent_args).await;
    assert!(ok && out.contains("written 4,"), "{out}{err}");
    let mut both = ids("old", 3, &old_day);
    both.extend(ids("recent", 4, &recent_day));
    both.sort();
    assert_eq!(env.entries().await, both);
    let days = env.partition_days().await;
    assert!(
        days.contains(&old_day) && days.contains(&recent_day),
        "{days:?}"
    );

    // Delivered again within the retention: skipped, every one, nothing written twice.
    let (ok, out, err) = env.load(&recent, &recent_args).await;
    assert!(
        ok && out.contains("written 0, dead-lettered 0, dropped 0, duplicates skipped 4"),
        "{out}{err}"
    );
    assert_eq!(env.rows().await.len(), 7);

    // 31 days pass (simulated: the partitions say they were made 31 days ago). The next
    // consumer to start drops the partition of 40 days ago; the one of 2 days ago stays.
    let target = env.target_id().await;
    env.db
        .execute(
            "UPDATE masq.ledger_partitions SET created_at = created_at - interval '31 days' \
             WHERE target = $1",
            &[&target],
        )
        .await
        .unwrap();
    let (ok, out, err) = env.load(&recent, &recent_args).await;
    assert!(ok && out.contains("duplicates skipped 4"), "{out}{err}");
    let partition = format!("ledger_{target}_{}", old_day.replace('-', ""));
    assert!(
        err.contains("dropped an expired ledger partition") && err.contains(&partition),
        "{err}"
    );
    assert_eq!(env.entries().await, ids("recent", 4, &recent_day));
    let days = env.partition_days().await;
    assert!(
        !days.contains(&old_day) && days.contains(&recent_day),
        "{days:?}"
    );
    let gone: Option<String> = env
        .db
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("masq.{partition}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, None);

    let status = env.masq(&["status"]).await;
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(report.contains(&format!("oldest {recent_day}")), "{report}");
    assert!(report.contains("written 4"), "{report}");
}

#[tokio::test]
async fn consumers_making_the_same_partitions_at_once_do_not_collide() {
    let env = TestEnv::new("collide").await;
    let dir = tempdir("collide");
    // Eight loads at once, two for each of four days no partition exists for yet.
    let days: Vec<String> = (0..4).map(|d| days_ago(100 + d)).collect();
    let files: Vec<String> = (0..8)
        .map(|i| logins_file(&dir, &format!("c{i}"), 5))
        .collect();
    let loads = (0..8).map(|i| {
        let (file, day, env) = (&files[i], &days[i % 4], &env);
        async move {
            let source = format!("c{i}");
            env.load(file, &["--source-id", &source, "--sent-at", day])
                .await
        }
    });
    for (ok, out, err) in futures_util::future::join_all(loads).await {
        assert!(
            ok && out.contains("written 5, dead-lettered 0"),
            "{out}{err}"
        );
        assert_eq!(err.matches("will retry").count(), 0, "{err}");
    }
    assert_eq!(env.ledger_count().await, 40);
    assert_eq!(env.rows().await.len(), 40);
    let made = env.partition_days().await;
    for day in &days {
        assert!(made.contains(day), "{day} missing from {made:?}");
    }

    // Sixteen connections asking for the same six new days at once: each partition is made
    // exactly once, and every caller returns without an error.
    let target = env.target_id().await;
    let fresh: Vec<chrono::NaiveDate> = (0..6)
        .map(|d| chrono::Utc::now().date_naive() - chrono::Duration::days(200 + d))
        .collect();
    let calls = (0..16).map(|_| {
        let fresh = fresh.clone();
        async move {
            let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let made: i32 = client
                .query_one("SELECT masq.ledger_prepare($1, $2)", &[&target, &fresh])
                .await
                .unwrap()
                .get(0);
            made
        }
    });
    let made: Vec<i32> = futures_util::future::join_all(calls).await;
    assert_eq!(made.iter().sum::<i32>(), 6, "{made:?}");
    let all = env.partition_days().await;
    for day in &fresh {
        assert!(all.contains(&day.to_string()), "{day} missing");
    }
}

#[tokio::test]
async fn a_retention_shorter_than_the_queue_can_redeliver_is_refused() {
    let env = TestEnv::new("retfloor").await;
    use aws_sdk_sqs::types::QueueAttributeName as A;
    env.sqs
        .set_queue_attributes()
        .queue_url(&env.queue_url)
        .attributes(A::MessageRetentionPeriod, "172800")
        .attributes(A::VisibilityTimeout, "60")
        .send()
        .await
        .expect("fauxqs sets queue attributes");
    let bodies: Vec<String> = (0..3)
        .map(|i| login(&format!("rf-{i}"), "10.8.0.1", "800-00-0001", "1.0", None))
        .collect();
    env.send(&bodies).await;

    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let run = |retention: &'static str| {
        let (plugin, key) = (plugin.clone(), key.clone());
        let env = &env;
        async move {
            env.masq(&[
                "run",
                "--drain",
                "--plugin",
                plugin.to_str().unwrap(),
                "--key-file",
                &key,
                "--ledger-retention",
                retention,
            ])
            .await
        }
    };
    // Two days of retention plus a 60 s visibility timeout: one day is not enough.
    let refused = run("1d").await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(err.contains("--ledger-retention 1d (86400 s)"), "{err}");
    assert!(
        err.contains("MessageRetentionPeriod 2d (172800 s)"),
        "{err}"
    );
    assert!(err.contains("visibility timeout of 60 s"), "{err}");
    assert!(err.contains("at least 49h (172860 s)"), "{err}");
    // Refused before anything was received or any ledger entry dropped.
    assert_eq!(env.depth().await, (3, 0));
    assert_eq!(env.ledger_count().await, 0);
    assert_eq!(env.rows().await.len(), 0);

    let taken = run("49h").await;
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert!(
        String::from_utf8_lossy(&taken.stdout).contains("received 3, written 3"),
        "{}",
        String::from_utf8_lossy(&taken.stdout)
    );
    assert_eq!(env.ledger_count().await, 3);
    assert_eq!(env.depth().await, (0, 0));
}
