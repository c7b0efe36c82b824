//! `masq load` claims its lines in the ledger by blocks of 100 lines (one entry per block,
//! listing the lines it settled): a file that grew writes only its new lines, two loads of
//! one file at once (one through PgBouncer) write each line once, a line whose row the database refuses is a dead
//! letter in its block and `masq replay` moves it once, and `masq.ledger_entries` still shows
//! one entry per line.

use crate::support::*;

/// `n` logins from line `from` on, one per line; line numbers in `broken` get a body that is
/// not JSON (a dead letter).
fn logins(from: usize, n: usize, broken: &[usize]) -> Vec<String> {
    (from..from + n)
        .map(|line| match broken.contains(&line) {
            true => r#"{"user_id": "broken"#.to_string(),
            false => login(
                &format!("u{line}"),
                &format!("10.8.{}.{}", line / 256, line % 256),
                &format!("700-00-{line:04}"),
                "2.1.0",
                None,
            ),
        })
        .collect()
}

impl TestEnv {
    /// `masq load` of `file` with source id `src` and this test's key; panics unless it
    /// succeeds; returns its summary.
    async fn load_src(&self, file: &str, extra: &[&str]) -> String {
        let mut args = vec!["--source-id", "src"];
        args.extend(extra);
        let (ok, out, err) = self.load(file, &args).await;
        assert!(ok, "{err}");
        out
    }

    /// The text of every entry stored for this table (a block's lines), sorted, space-separated.
    async fn block_texts(&self) -> String {
        self.db
            .query_one(
                "SELECT string_agg(text_id, ' ' ORDER BY text_id) FROM masq.ledger \
                 WHERE target = (SELECT id FROM masq.targets WHERE name = $1)",
                &[&self.table],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Rows of this table's ledger partitions, as stored (a block is one).
    async fn stored_entries(&self) -> i64 {
        self.count(
            "masq.ledger WHERE target = (SELECT id FROM masq.targets WHERE name = '$table')",
        )
        .await
    }

    /// (message id, outcome) of every entry `masq.ledger_entries` lists, sorted by line.
    async fn entries_by_line(&self) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = self
            .db
            .query(
                "SELECT message_id, outcome FROM masq.ledger_entries($1)",
                &[&self.table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        entries.sort_by_key(|(id, _)| id[4..].parse::<u64>().unwrap());
        entries
    }
}

fn expected_entries(lines: usize, dead: &[usize]) -> Vec<(String, String)> {
    (1..=lines)
        .map(|line| {
            let outcome = if dead.contains(&line) { "dead_letter" } else { "written" };
            (format!("src:{line}"), outcome.to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_load_claims_lines_by_hundreds_and_a_grown_file_writes_only_its_new_lines() {
    let env = TestEnv::new("blocks").await;
    let mut bodies = logins(1, 150, &[7]);
    let file = env.jsonl("grow.jsonl", &bodies);
    let summary = env.load_src(&file, &[]).await;
    assert!(
        summary.contains("written 149, dead-lettered 1, dropped 0, duplicates skipped 0"),
        "{summary}"
    );
    // Two entries stored (lines 1-100, 101-150), 150 listed, line 7 as a dead letter.
    assert_eq!(env.stored_entries().await, 2);
    assert_eq!(env.entries_by_line().await, expected_entries(150, &[7]));
    assert_eq!(env.block_texts().await, "src:1-6,8-100/l7 src:101-150");

    // The file grows by 100 lines: the second block gets lines 151-200, a third block is
    // made, and only the new lines are written.
    bodies.extend(logins(151, 100, &[]));
    let file = env.jsonl("grow.jsonl", &bodies);
    let summary = env.load_src(&file, &[]).await;
    assert!(
        summary.contains("written 100, dead-lettered 0, dropped 0, duplicates skipped 150"),
        "{summary}"
    );
    assert_eq!(env.stored_entries().await, 3);
    assert_eq!(env.entries_by_line().await, expected_entries(250, &[7]));
    let rows = env.rows().await;
    assert_eq!(rows.len(), 249);
    let users: std::collections::BTreeSet<String> =
        rows.iter().filter_map(|r| r.user_id.clone()).collect();
    let expected: std::collections::BTreeSet<String> = (1..=250)
        .filter(|l| *l != 7)
        .map(|l| format!("u{l}"))
        .collect();
    assert_eq!(users, expected);
    assert_eq!(env.dead_letters().await.len(), 1);

    // And once more: nothing.
    let summary = env.load_src(&file, &[]).await;
    assert!(
        summary.contains("written 0, dead-lettered 0, dropped 0, duplicates skipped 250"),
        "{summary}"
    );
    assert_eq!(env.rows().await.len(), 249);
    assert_eq!(env.dead_letters().await.len(), 1);
}

#[tokio::test]
async fn two_loads_of_one_file_at_once_write_each_line_once() {
    let env = TestEnv::new("blockrace").await;
    let file = env.jsonl("race.jsonl", &logins(1, 2000, &[]));
    // One of them through PgBouncer in transaction mode (a pool of 2 for its 4 workers), where
    // nothing may outlive a transaction: the block locks and `SET LOCAL` do not.
    let pooled = pgbouncer_url();
    let through_pgbouncer = ["--database-url", pooled.as_str(), "--workers", "4"];
    let (a, b) = tokio::join!(
        env.load_src(&file, &[]),
        env.load_src(&file, &through_pgbouncer)
    );
    let written = |summary: &str| -> u64 {
        let at = summary.find("written ").expect(summary) + "written ".len();
        summary[at..].split(',').next().unwrap().replace(',', "").parse().unwrap()
    };
    assert_eq!(written(&a) + written(&b), 2000, "{a}\n{b}");
    let rows = env.rows().await;
    assert_eq!(rows.len(), 2000);
    let distinct: std::collections::BTreeSet<_> = rows.iter().map(|r| r.user_id.clone()).collect();
    assert_eq!(distinct.len(), 2000);
    assert_eq!(env.stored_entries().await, 20);
    assert_eq!(env.entries_by_line().await, expected_entries(2000, &[]));
}

#[tokio::test]
async fn a_line_the_database_refuses_is_a_dead_letter_in_its_block_and_replay_writes_it_once() {
    let env = TestEnv::new("blockreplay").await;
    let file = env.jsonl("replay.jsonl", &logins(1, 120, &[]));
    // The table refuses two rows that pass the policy: found row by row, dead-lettered.
    let refuse = format!(
        "ALTER TABLE {} ADD CONSTRAINT not_these CHECK (user_id NOT IN ('u5', 'u110'))",
        env.table
    );
    env.db.batch_execute(&refuse).await.unwrap();
    let summary = env.load_src(&file, &[]).await;
    assert!(summary.contains("written 118, dead-lettered 2"), "{summary}");
    assert_eq!(env.entries_by_line().await, expected_entries(120, &[5, 110]));
    assert_eq!(env.block_texts().await, "src:1-4,6-100/l5 src:101-109,111-120/l110");

    let policy = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let replay = async || {
        let args = ["replay", "--plugin", policy.to_str().unwrap(), "--key-file", &key];
        let out = env.masq(&args).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Replayed while the table still refuses them: still dead, and their blocks must still say
    // so (were they left saying written, the next replay would retire the dead letters as
    // stale, and the two lines would be lost).
    let report = replay().await;
    assert!(report.contains("written 0, dropped 0, still dead 2"), "{report}");
    assert_eq!(env.entries_by_line().await, expected_entries(120, &[5, 110]));
    assert_eq!(env.dead_letters().await.len(), 2);

    // The table fixed: replay writes both, moving them within their blocks.
    let fix = format!("ALTER TABLE {} DROP CONSTRAINT not_these", env.table);
    env.db.batch_execute(&fix).await.unwrap();
    let report = replay().await;
    assert!(report.contains("written 2, dropped 0, still dead 0"), "{report}");
    assert_eq!(env.rows().await.len(), 120);
    assert_eq!(env.dead_letters().await.len(), 0);
    assert_eq!(env.entries_by_line().await, expected_entries(120, &[]));
    assert_eq!(env.stored_entries().await, 2, "moved within the blocks, no entry per line");

    // Loading the file again, or replaying again, writes nothing.
    let summary = env.load_src(&file, &[]).await;
    assert!(
        summary.contains("written 0, dead-lettered 0, dropped 0, duplicates skipped 120"),
        "{summary}"
    );
    let report = replay().await;
    assert!(report.contains("written 0"), "{report}");
    assert_eq!(env.rows().await.len(), 120);
}
