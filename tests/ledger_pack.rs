//! Packing past days (`masq db pack`, and each consumer's hourly upkeep): a day's entries move
//! from its partition into sorted arrays in masq.ledger_packed. Nothing about exactly-once may
//! change: a packed message delivered again is skipped, packing while consumers claim loses
//! nothing and writes nothing twice, the ledger lists every entry as before, and a day that
//! outgrows its buckets is split again, and dropped whole with its partition.

use crate::support::*;
use std::collections::BTreeSet;
use std::time::Duration;

impl TestEnv {
    async fn target_of(&self, table: &str) -> i32 {
        self.db
            .query_one("SELECT id FROM masq.targets WHERE name = $1", &[&table])
            .await
            .unwrap()
            .get(0)
    }

    /// (message id, outcome) of every entry `masq.ledger_entries` lists for `table`.
    async fn entries_of(&self, table: &str) -> BTreeSet<(String, String)> {
        self.db
            .query(
                "SELECT message_id, outcome FROM masq.ledger_entries($1)",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// (entries still in the table's partitions, entries packed).
    async fn live_and_packed(&self, table: &str) -> (i64, i64) {
        let target = self.target_of(table).await;
        let row = self
            .db
            .query_one(
                "SELECT (SELECT count(*) FROM masq.ledger WHERE target = $1), \
                        (SELECT coalesce(sum(cardinality(ids)), 0)::bigint FROM masq.ledger_packed \
                         WHERE target = $1)",
                &[&target],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// `masq db pack` of `days`; returns its report.
    async fn pack(&self, table: &str, days: &[&str]) -> String {
        let mut args = vec!["db", "pack", "--table", table];
        for day in days {
            args.extend(["--day", day]);
        }
        let out = self.masq(&args).await;
        assert!(
            out.status.success(),
            "masq db pack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A run that dies right after its first commit, before deleting anything; returns how
    /// many rows it wrote.
    async fn crash_after_first_commit(&self) -> usize {
        let out = self
            .drain_command(&[
                "--visibility-timeout",
                "5",
                "--workers",
                "1",
                "--batch-size",
                "100",
                "--batch-wait-ms",
                "1000",
            ])
            .env("MASQ_FAILPOINT", "crash-after-commit")
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "the failpoint should have killed masq");
        let written = self.rows().await.len();
        assert!(written > 0, "nothing was committed before the crash");
        written
    }
}

fn logins(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            login(
                &format!("{prefix}-{i}"),
                &format!("10.4.{}.{}", i / 250, i % 250),
                &format!("800-00-{i:04}"),
                "1.0.0",
                None,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_packed_day_still_skips_redeliveries_and_lists_every_entry() {
    let env = TestEnv::new("pack-redeliver").await;
    let table = env.table.clone();
    let today = utc_today();
    env.send(&logins("pr", 300)).await;
    let written_before = env.crash_after_first_commit().await;
    let before = env.entries_of(&table).await;
    assert_eq!(before.len(), written_before);

    let report = env.pack(&table, &[&today]).await;
    assert!(
        report.contains(&format!("packed {today}: {written_before} entries moved")),
        "{report}"
    );
    assert_eq!(env.live_and_packed(&table).await, (0, written_before as i64));
    assert_eq!(env.entries_of(&table).await, before, "packing changed the entries");

    // The undeleted messages come back after their 5 s visibility timeout; their claims are
    // packed, so they must be skipped, and the rest written once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let summary = env.drain(&[]).await;
    assert!(summary.contains("received 300,"), "{summary}");
    assert!(
        summary.contains(&format!("duplicates skipped {written_before},")),
        "{summary} (expected {written_before} duplicates)"
    );
    assert_eq!(env.rows().await.len(), 300);
    assert_eq!(
        env.count("(SELECT DISTINCT user_id FROM $table) d").await,
        300,
        "duplicate rows"
    );
    // The new claims went to the partition; packing again merges them into the buckets.
    assert_eq!(
        env.live_and_packed(&table).await,
        (300 - written_before as i64, written_before as i64)
    );
    let report = env.pack(&table, &[&today]).await;
    assert!(
        report.contains(&format!("packed {today}: {} entries moved", 300 - written_before)),
        "{report}"
    );
    assert_eq!(env.live_and_packed(&table).await, (0, 300));
    let entries = env.entries_of(&table).await;
    assert_eq!(entries.len(), 300);
    assert!(entries.iter().all(|(_, outcome)| outcome == "written"));
    assert!(before.is_subset(&entries));

    let status = env.masq(&["status"]).await;
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("packed (1 days)"), "{status}");
    assert!(status.contains("written 300"), "{status}");
}

#[tokio::test]
async fn packing_while_consumers_claim_loses_nothing_and_writes_nothing_twice() {
    let env = TestEnv::new("pack-race").await;
    let table = env.table.clone();
    let today = utc_today();
    env.send(&logins("pc", 1500)).await;
    let written_before = env.crash_after_first_commit().await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Small batches, two workers: many claims, redeliveries among them, while the day is
    // packed again and again under them.
    let mut drain = env
        .drain_command(&["--batch-size", "10", "--workers", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut packs = 0;
    let status = loop {
        env.pack(&table, &[&today]).await;
        packs += 1;
        if let Some(status) = drain.try_wait().unwrap() {
            break status;
        }
    };
    let out = drain.wait_with_output().await.unwrap();
    assert!(status.success(), "masq run failed ({status}) after {packs} packs");
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(summary.contains("received 1500,"), "{summary}");
    assert!(
        summary.contains(&format!("duplicates skipped {written_before},")),
        "{summary} (expected {written_before} duplicates, {packs} packs ran)"
    );
    assert_eq!(env.rows().await.len(), 1500, "{packs} packs ran");
    assert_eq!(
        env.count("(SELECT DISTINCT user_id FROM $table) d").await,
        1500,
        "duplicate rows"
    );
    eprintln!("{packs} packs ran while masq drained");
    env.pack(&table, &[&today]).await;
    assert_eq!(env.live_and_packed(&table).await, (0, 1500));
    assert_eq!(env.ledger_count().await, 1500);
    assert_eq!(env.depth().await, (0, 0));
}

#[tokio::test]
async fn a_day_that_outgrows_its_buckets_is_split_again_and_dropped_with_its_partition() {
    let env = TestEnv::new("pack-split").await;
    // A table of its own whose ledger this test writes directly: 23,000 entries on one day
    // 40 days ago, in two goes.
    let table = format!("{}_synthetic", env.table);
    let day = (chrono::Utc::now().date_naive() - chrono::Duration::days(40)).to_string();
    env.db
        .batch_execute(&format!(
            "INSERT INTO masq.targets (name) VALUES ('{table}'); \
             INSERT INTO masq.policy_versions (name, version, digest) VALUES ('pack-test', '1', 'x') \
               ON CONFLICT (name, version, digest) DO NOTHING"
        ))
        .await
        .unwrap();
    let target = env.target_of(&table).await;
    env.db
        .execute(
            &format!("SELECT masq.ledger_prepare({target}, ARRAY['{day}'::date])"),
            &[],
        )
        .await
        .unwrap();
    let add = async |n: i32| {
        env.db
            .execute(
                &format!(
                    "INSERT INTO masq.ledger (sent_at, id, target, policy, outcome) \
                     SELECT ('{day}'::timestamp AT TIME ZONE 'UTC') + (i * 3) * interval '1 millisecond', \
                            gen_random_uuid(), {target}, \
                            (SELECT id FROM masq.policy_versions WHERE name = 'pack-test'), \
                            CASE WHEN i % 10 = 0 THEN 'd' ELSE 'w' END \
                     FROM generate_series(1, {n}) AS i"
                ),
                &[],
            )
            .await
            .unwrap();
    };
    let bits = async || -> i16 {
        env.db
            .query_one(
                "SELECT packed_bits FROM masq.ledger_partitions WHERE target = $1",
                &[&target],
            )
            .await
            .unwrap()
            .get(0)
    };

    add(3000).await;
    let report = env.pack(&table, &[&day]).await;
    assert!(report.contains(&format!("packed {day}: 3000 entries moved")), "{report}");
    assert_eq!(bits().await, 2, "3,000 entries: 4 buckets of about 750");
    add(20_000).await;
    let report = env.pack(&table, &[&day]).await;
    assert!(report.contains(&format!("packed {day}: 20000 entries moved")), "{report}");
    assert_eq!(bits().await, 5, "23,000 entries: split again into 32 buckets");
    assert_eq!(env.live_and_packed(&table).await, (0, 23_000));

    // Every bucket holds its own ids only, sorted, and nothing twice.
    let misplaced: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM masq.ledger_packed k, \
               LATERAL unnest(k.ids) WITH ORDINALITY AS m(id, n) \
             WHERE k.target = $1 AND (masq.ledger_bucket(m.id, 5) <> masq.ledger_bucket(k.low, 5) \
               OR (n > 1 AND k.ids[n - 1] >= m.id))",
            &[&target],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(misplaced, 0);
    let buckets = env
        .count(&format!("masq.ledger_packed WHERE target = {target}"))
        .await;
    assert_eq!(buckets, 32);

    // The lookup claims use finds every packed id, and none of 1,000 others.
    let found: i64 = env
        .db
        .query_one(
            "WITH e AS (SELECT message_id::uuid AS id, sent_at FROM masq.ledger_entries($1) \
                        UNION ALL SELECT gen_random_uuid(), $2::date::timestamp AT TIME ZONE 'UTC' \
                        FROM generate_series(1, 1000)) \
             SELECT count(*) FROM masq.ledger_packed_ids($3, \
               (SELECT array_agg(sent_at ORDER BY id) FROM e), (SELECT array_agg(id ORDER BY id) FROM e), \
               ARRAY[$2::date])",
            &[&table, &chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").unwrap(), &target],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 23_000);
    let outcomes = env
        .count(&format!(
            "masq.ledger_entries('{table}') WHERE outcome = 'dropped'"
        ))
        .await;
    assert_eq!(outcomes, 2_300);

    // Past the retention, the day goes whole: partition and packed rows.
    env.db
        .execute(
            "UPDATE masq.ledger_partitions SET created_at = now() - interval '40 days' WHERE target = $1",
            &[&target],
        )
        .await
        .unwrap();
    let dropped: bool = env
        .db
        .query_one(
            "SELECT dropped FROM masq.ledger_prune($1, interval '15 days')",
            &[&target],
        )
        .await
        .unwrap()
        .get(0);
    assert!(dropped);
    assert_eq!(env.live_and_packed(&table).await, (0, 0));
    assert_eq!(env.ledger_count_of(&table).await, 0);
}

#[tokio::test]
async fn a_dead_letter_whose_entry_is_packed_as_settled_is_retired_not_written_again() {
    let env = TestEnv::new("pack-stale").await;
    let table = env.table.clone();
    let today = utc_today();
    // The table refuses one of five rows: its message becomes a dead letter.
    env.db
        .batch_execute(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT not_this CHECK (user_id <> 'ps-3')"
        ))
        .await
        .unwrap();
    env.send(&logins("ps", 5)).await;
    let summary = env.drain(&[]).await;
    assert!(summary.contains("written 4, dead-lettered 1,"), "{summary}");
    // Settled meanwhile by another writer (a stale dead letter): its entry says written. Then
    // the day is packed, entry included.
    let target = env.target_of(&table).await;
    let settled = env
        .db
        .execute(
            "UPDATE masq.ledger SET outcome = 'w' WHERE target = $1 AND outcome = 'l'",
            &[&target],
        )
        .await
        .unwrap();
    assert_eq!(settled, 1);
    env.pack(&table, &[&today]).await;
    assert_eq!(env.live_and_packed(&table).await, (0, 5));

    // Replayed once the table takes it: the packed entry says the message was settled, so the
    // dead letter is retired and nothing is written a second time.
    env.db
        .batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT not_this"))
        .await
        .unwrap();
    let policy = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let out = env
        .masq(&["replay", "--plugin", policy.to_str().unwrap(), "--key-file", &key])
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("written 0,"), "{report}");
    assert_eq!(env.rows().await.len(), 4);
    assert!(env.dead_letters().await.is_empty());
    assert_eq!(env.live_and_packed(&table).await, (0, 5));
    assert_eq!(env.ledger_count().await, 5);
}
