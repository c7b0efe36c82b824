//! `masq db init` on a database made by an earlier masq: the old ledger (one text row per
//! message, never pruned) moves into the partitioned one. Entries sent within the retention
//! are kept, so their messages stay exactly-once; older ones are dropped. Run again, it does
//! nothing more. Each run gets a database of its own, made in the earlier masq's layout.

use crate::support::*;

/// The earlier masq's ledger, as its `db init` created it.
const EARLIER_LEDGER: &str = "
CREATE SCHEMA masq;
CREATE TABLE masq.ledger (
    target_table    text        NOT NULL,
    message_id      text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('written', 'dropped', 'dead_letter')),
    policy_name     text        NOT NULL,
    policy_version  text        NOT NULL,
    policy_digest   text        NOT NULL,
    sent_at         timestamptz,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_table, message_id)
);";

/// A database of its own, dropped when the test passes.
struct Scratch {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl Scratch {
    async fn new() -> Scratch {
        let (admin, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
            .await
            .expect("the test database");
        tokio::spawn(conn);
        let name = format!("masq_migration_{}", random_hex(4));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = database_url()
            .rsplit_once('/')
            .map(|(server, _)| format!("{server}/{name}"))
            .unwrap();
        Scratch { admin, name, url }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    async fn drop_database(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// `masq db init` on a database, returning what it printed.
async fn db_init(url: &str, table: &str) -> String {
    let out = tokio::process::Command::new(MASQ)
        .args(["db", "init", "--database-url", url, "--table", table])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `masq load` of the first `lines` lines of a backfill (source id `backfill`, sent on `day`)
/// into `table`; returns its summary.
async fn load_backfill(url: &str, table: &str, lines: usize, day: &str) -> String {
    let dir = tempdir("migration");
    let input = dir.join("backfill.jsonl");
    let lines: Vec<String> = (0..lines)
        .map(|i| login(&format!("m-{i}"), "10.7.0.1", "700-00-0001", "1.0", None))
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let key = dir.join("test.key");
    write_key_file(&key, "kmig", &[7u8; 32]);
    let plugin = plugin("sha256-masker");
    let out = tokio::process::Command::new(MASQ)
        .args([
            "load",
            "--database-url",
            url,
            "--table",
            table,
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--source-id",
            "backfill",
            "--sent-at",
            day,
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn db_init_moves_an_earlier_ledger_and_keeps_its_messages_exactly_once() {
    let scratch = Scratch::new().await;
    let db = scratch.client().await;
    db.batch_execute(EARLIER_LEDGER).await.unwrap();
    let yesterday_date = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let yesterday = yesterday_date.to_string();
    let sqs_id = "5fea7756-0ea4-451a-a703-a558b933e274";
    db.execute(
        "INSERT INTO masq.ledger (target_table, message_id, outcome, policy_name, policy_version, \
           policy_digest, sent_at) VALUES \
         ('mig', 'backfill:1', 'written', 'sha256-masker', '0.1.0', 'abc', $1::date), \
         ('mig', 'backfill:2', 'dropped', 'sha256-masker', '0.1.0', 'abc', $1::date), \
         ('mig', $2, 'dead_letter', 'sha256-masker', '0.2.0', 'def', $1::date + interval '13 hours'), \
         ('other', 'x:1', 'written', 'seal-masker', '1.0.0', 'fed', $1::date), \
         ('mig', 'ancient:1', 'written', 'sha256-masker', '0.1.0', 'abc', now() - interval '40 days'), \
         ('mig', 'unknown:1', 'written', 'sha256-masker', '0.1.0', 'abc', NULL)",
        &[&yesterday_date, &sqs_id],
    )
    .await
    .unwrap();

    let init = |table: &'static str| db_init(&scratch.url, table);
    let first = init("mig").await;
    assert!(
        first.contains(
            "moved the ledger of an earlier masq into the partitioned one: 4 entries sent within \
             --ledger-retention 15d kept (their messages stay exactly-once), 2 older ones dropped"
        ),
        "{first}"
    );

    let entries = async |table: &str| -> Vec<(String, String, String, String, String, String)> {
        let mut rows: Vec<_> = db
            .query(
                "SELECT message_id, outcome, policy_name, policy_version, policy_digest, \
                   to_char(sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') \
                 FROM masq.ledger_entries($1)",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        rows.sort();
        rows
    };
    let entry = |id: &str, outcome: &str, name: &str, version: &str, digest: &str, at: &str| {
        (
            id.to_string(),
            outcome.to_string(),
            name.to_string(),
            version.to_string(),
            digest.to_string(),
            at.to_string(),
        )
    };
    let midnight = format!("{yesterday} 00:00");
    let expected_mig = vec![
        entry(
            sqs_id,
            "dead_letter",
            "sha256-masker",
            "0.2.0",
            "def",
            &format!("{yesterday} 13:00"),
        ),
        entry(
            "backfill:1",
            "written",
            "sha256-masker",
            "0.1.0",
            "abc",
            &midnight,
        ),
        entry(
            "backfill:2",
            "dropped",
            "sha256-masker",
            "0.1.0",
            "abc",
            &midnight,
        ),
    ];
    assert_eq!(entries("mig").await, expected_mig);
    assert_eq!(
        entries("other").await,
        vec![entry(
            "x:1",
            "written",
            "seal-masker",
            "1.0.0",
            "fed",
            &midnight
        )]
    );
    let left: Option<String> = db
        .query_one("SELECT to_regclass('masq.ledger_v1')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, None, "the earlier ledger is gone");
    // The SQS id is kept as its 16 bytes; the others keep their text.
    let texts: i64 = db
        .query_one("SELECT count(text_id) FROM masq.ledger", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(texts, 3);

    // Again: nothing more to move, nothing changed.
    let again = init("mig").await;
    assert!(!again.contains("moved"), "{again}");
    assert_eq!(entries("mig").await, expected_mig);

    // The database computes a text id's uuid as masq does (sink/ledger/key.rs), in each of
    // its forms: a load's line id, any other text, an SQS id.
    for text in [
        "backfill:1",
        "backfill.jsonl:123456",
        "a:b:1099511627775",
        "backfill:1099511627776",
        "backfill:01",
        ":7",
        "backfill",
        "5FEA7756-0EA4-451A-A703-A558B933E274",
        "5fea7756-0ea4-451a-a703-a558b933e274",
        "données:3",
    ] {
        let in_sql: String = db
            .query_one("SELECT masq.message_uuid($1)::text", &[&text])
            .await
            .unwrap()
            .get(0);
        let in_masq = masq::sink::ledger::key::LedgerId::of(text).uuid;
        assert_eq!(in_sql.replace('-', ""), hex::encode(in_masq.0), "{text}");
    }

    // The same backfill loaded again with the new masq: the two lines the earlier one settled
    // are skipped, the third is written.
    let summary = load_backfill(&scratch.url, "mig", 3, &yesterday).await;
    assert!(
        summary.contains("written 1, dead-lettered 0, dropped 0, duplicates skipped 2"),
        "{summary}"
    );
    let users: Vec<String> = db
        .query("SELECT user_id FROM mig", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, ["m-2"]);

    drop(db);
    scratch.drop_database().await;
}

