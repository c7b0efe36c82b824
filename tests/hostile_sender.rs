//! A sender cannot stop masq: whatever a message holds (NUL characters, long or odd member
//! names, duplicate members) costs that message one dead letter, never its batch, never the
//! policy's standing with the breaker. Checked through `run`, `load` and `run --dry-run`.

use crate::support::*;
use std::collections::BTreeMap;

/// Good logins, and bad ones that each carry a NUL where a reason will quote it.
fn nul_mix() -> (Vec<String>, Vec<(&'static str, String, &'static str)>) {
    let good: Vec<String> = (0..30)
        .map(|i| {
            login(
                &format!("nul-good-{i}"),
                &format!("10.9.0.{i}"),
                &format!("700-00-{i:04}"),
                "4.5.6",
                Some("FR"),
            )
        })
        .collect();
    let bad = vec![
        (
            "NUL in app_version",
            r#"{"user_id": "bad-1", "app_version": "2.0\u0000", "device_type": "ios", "ip": "10.9.1.1", "locale": "US", "device_id": "701-00-0001"}"#.to_string(),
            "policy",
        ),
        (
            "NUL in a member name",
            r#"{"user_id": "bad-2", "app_version": "2.0", "device_type": "ios", "ip": "10.9.1.2", "locale": "US", "device_id": "701-00-0002", "a\u0000b": "x"}"#.to_string(),
            "sink",
        ),
        (
            "NUL in a duplicate member name",
            r#"{"user_id": "bad-3", "x\u0000y": 1, "x\u0000y": 2, "app_version": "2.0", "device_type": "ios", "ip": "10.9.1.3", "locale": "US", "device_id": "701-00-0003"}"#.to_string(),
            "decode",
        ),
    ];
    (good, bad)
}

fn interleave(good: &[String], bad: &[String]) -> Vec<String> {
    let mut bodies = Vec::new();
    for (i, g) in good.iter().enumerate() {
        bodies.push(g.clone());
        if i % 7 == 3
            && let Some(b) = bad.get(i / 7)
        {
            bodies.push(b.clone());
        }
    }
    assert_eq!(bodies.len(), good.len() + bad.len());
    bodies
}

/// Dead letters by body: (reason, stage).
async fn letters_by_body(env: &TestEnv) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for (body, reason, stage) in env.dead_letters().await {
        assert!(
            out.insert(body.clone(), (reason, stage)).is_none(),
            "two dead letters for one body: {body}"
        );
    }
    out
}

#[tokio::test]
async fn nul_characters_cost_their_own_message_only_in_run_and_dry_run() {
    let env = TestEnv::new("nulrun").await;
    let (good, bad) = nul_mix();
    let bad_bodies: Vec<String> = bad.iter().map(|(_, b, _)| b.clone()).collect();
    env.send(&interleave(&good, &bad_bodies)).await;

    // The dry run first: it predicts, writes nothing, and gives every message back.
    let predicted = env
        .drain(&["--dry-run", "--batch-size", "100", "--batch-wait-ms", "300"])
        .await;
    let predicted: Vec<serde_json::Value> = predicted
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        predicted.len(),
        good.len() + bad.len(),
        "one line per message"
    );
    assert_eq!(env.rows().await.len(), 0, "a dry run writes nothing");
    assert_eq!(env.ledger_count().await, 0);

    let summary = env
        .drain(&["--batch-size", "100", "--batch-wait-ms", "300"])
        .await;
    assert!(summary.starts_with("drained"), "{summary}");

    let rows = env.rows().await;
    let mut users: Vec<String> = rows.iter().map(|r| r.user_id.clone().unwrap()).collect();
    users.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("nul-good-{i}")).collect();
    expected.sort();
    assert_eq!(users, expected, "every good message written, once");

    let letters = letters_by_body(&env).await;
    assert_eq!(letters.len(), bad.len());
    for (label, body, stage) in &bad {
        let (reason, got_stage) = letters
            .get(body)
            .unwrap_or_else(|| panic!("{label}: no dead letter"));
        assert_eq!(got_stage, stage, "{label}: {reason}");
        assert!(!reason.contains('\0'));
        if *stage == "policy" {
            // The policy quoted the value; the host cut it out and named the field.
            assert!(
                reason.contains("'<field app_version>'") && !reason.contains("2.0"),
                "{label}: {reason:?}"
            );
        } else {
            // Member names are named, NUL and all, shown escaped.
            assert!(
                reason.contains("\\u0000"),
                "{label}: the NUL is shown escaped in {reason:?}"
            );
        }
    }
    assert_eq!(env.ledger_count().await, (good.len() + bad.len()) as i64);
    assert_eq!(env.depth().await, (0, 0));

    // The dry run said exactly this: the same rows, the same dead letters with the same
    // reasons and stages, by message id.
    let stored: BTreeMap<String, (String, String)> = env
        .db
        .query(
            "SELECT message_id, reason, stage FROM masq.dead_letters WHERE target_table = $1",
            &[&env.table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let mut predicted_letters = BTreeMap::new();
    let mut predicted_rows = 0;
    for line in &predicted {
        let id = line["id"].as_str().unwrap().to_string();
        if let Some(dl) = line.get("dead_letter") {
            predicted_letters.insert(
                id,
                (
                    dl["reason"].as_str().unwrap().to_string(),
                    dl["stage"].as_str().unwrap().to_string(),
                ),
            );
        } else {
            assert!(line.get("row").is_some(), "{line}");
            predicted_rows += 1;
        }
    }
    assert_eq!(predicted_letters, stored);
    assert_eq!(predicted_rows, rows.len());
}

#[tokio::test]
async fn nul_characters_cost_their_own_line_only_in_load() {
    let env = TestEnv::new("nulload").await;
    let (good, bad) = nul_mix();
    let bad_bodies: Vec<String> = bad.iter().map(|(_, b, _)| b.clone()).collect();
    let dir = tempdir("nulload");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, interleave(&good, &bad_bodies).join("\n")).unwrap();
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let args = [
        "load",
        "--plugin",
        plugin.to_str().unwrap(),
        "--key-file",
        &key,
        "--input",
        input.to_str().unwrap(),
        "--batch-size",
        "100",
    ];
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), env.masq(&args))
        .await
        .expect("masq load must finish");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.rows().await.len(), good.len());
    let letters = letters_by_body(&env).await;
    for (label, body, stage) in &bad {
        let (reason, got_stage) = letters.get(body).unwrap_or_else(|| panic!("{label}"));
        assert_eq!(got_stage, stage, "{label}: {reason}");
    }
    assert_eq!(letters.len(), bad.len());
    // Loading again writes nothing twice.
    let again = env.masq(&args).await;
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains(&format!("duplicates skipped {}", good.len() + bad.len())),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(env.rows().await.len(), good.len());
}

#[tokio::test]
async fn long_member_names_are_dead_letters_and_never_break_the_policy() {
    let env = TestEnv::new("longnames").await;
    let long_name = "n".repeat(64);
    let mut bodies: Vec<String> = (0..12)
        .map(|i| {
            let mut v: serde_json::Value = serde_json::from_str(&login(
                &format!("long-{i}"),
                "10.8.0.1",
                "600-00-0001",
                "1.0",
                None,
            ))
            .unwrap();
            v[&long_name] = serde_json::json!("x");
            v.to_string()
        })
        .collect();
    bodies.insert(5, login("fine-1", "10.8.0.2", "600-00-0002", "1.0", None));
    bodies.push(login("fine-2", "10.8.0.3", "600-00-0003", "1.0", None));
    env.send(&bodies).await;

    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let out = env
        .masq(&[
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--batch-size",
            "100",
            "--batch-wait-ms",
            "300",
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}: {stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.starts_with("drained"), "{stdout}");
    assert!(
        !stderr.contains("BROKEN") && !stdout.contains("BROKEN"),
        "{stderr}"
    );

    let rows = env.rows().await;
    let users: Vec<&str> = rows.iter().map(|r| r.user_id.as_deref().unwrap()).collect();
    assert_eq!(users, ["fine-1", "fine-2"]);
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 12);
    for (_, reason, stage) in &letters {
        assert_eq!(stage, "policy");
        assert!(reason.contains("field name of 64 bytes"), "{reason}");
    }
    assert_eq!(env.depth().await, (0, 0));
}

#[tokio::test]
async fn a_not_null_column_nobody_writes_is_refused_at_start() {
    let env = TestEnv::new("notnull").await;
    env.db
        .batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN region text NOT NULL",
            env.table
        ))
        .await
        .unwrap();
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let out = env
        .masq(&[
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
        ])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("column region NOT NULL without a default") && err.contains(&env.table),
        "{err}"
    );
    // With a default, the same table is fine.
    env.db
        .batch_execute(&format!(
            "ALTER TABLE {} ALTER COLUMN region SET DEFAULT 'eu'",
            env.table
        ))
        .await
        .unwrap();
    env.send(&[login("nn-1", "10.7.0.1", "500-00-0001", "1.0", None)])
        .await;
    env.drain(&[]).await;
    assert_eq!(
        env.count("$table WHERE region = 'eu' AND user_id = 'nn-1'")
            .await,
        1
    );
}

#[tokio::test]
async fn logs_to_a_file_are_plain_and_json_logs_are_json_to_the_last_line() {
    let env = TestEnv::new("logfmt").await;
    env.send(&[
        login("log-1", "10.6.0.1", "400-00-0001", "1.0", None),
        "not json".to_string(),
    ])
    .await;
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    // Standard error to a file, as a service manager or `2> masq.log` would have it.
    let dir = tempdir("logfmt");
    let log = dir.join("masq.log");
    let status = env
        .command(&[
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("masq running"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file: {text:?}"
    );

    // JSON: a normal run, and runs that end in fatal errors, every line parses.
    let missing = env.queue_url.replace("logfmt", "no-such-queue-logfmt");
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "--log-format",
            "json",
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
        ],
        vec![
            "--log-format",
            "json",
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--queue-url",
            &missing,
        ],
        vec![
            "--log-format",
            "json",
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
        ],
        vec!["--log-format", "json", "run", "--no-such-flag"],
    ];
    for args in runs {
        let out = env.masq(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?}");
        for line in stderr.lines() {
            let parsed: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {line}"));
            assert!(parsed["level"].is_string(), "{line}");
        }
    }

    // A missing queue is one sentence naming the queue and the endpoint.
    let out = env
        .masq(&[
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--queue-url",
            &missing,
        ])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error_line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error_line.contains(&format!("queue {missing} does not exist at {}", endpoint())),
        "{error_line}"
    );
    assert!(
        error_line.len() < 300,
        "{} characters: {error_line}",
        error_line.len()
    );
}

#[tokio::test]
async fn plugin_test_fails_on_a_pii_field_no_record_has() {
    let dir = tempdir("piimissing");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, login("p-1", "10.5.0.1", "300-00-0001", "1.0", None)).unwrap();
    let plugin = plugin("sha256-masker");
    let run = |pii: &'static str| {
        let (plugin, input) = (plugin.clone(), input.clone());
        async move {
            tokio::process::Command::new(MASQ)
                .args([
                    "plugin",
                    "test",
                    plugin.to_str().unwrap(),
                    "--input",
                    input.to_str().unwrap(),
                    "--pii",
                    pii,
                ])
                .output()
                .await
                .unwrap()
        }
    };
    let out = run("ip,device_id").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("ipp").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pii field 'ipp' is in no input record"),
        "{err}"
    );
}

#[tokio::test]
async fn db_init_takes_the_dead_letters_away_from_everyone_but_their_owner() {
    // A database of its own: default privileges are per database and role.
    let env = TestEnv::new("deadacl").await;
    let admin = &env.db;
    let suffix = format!("{:08x}", std::process::id() ^ rand_u32());
    let (db_name, role) = (
        format!("masq_acl_{suffix}"),
        format!("masq_reader_{suffix}"),
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {db_name}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {role}"))
        .await
        .unwrap();
    let url = database_url().rsplit_once('/').unwrap().0.to_string() + "/" + &db_name;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    // Every table postgres creates from now on is readable by the reader role.
    db.batch_execute(&format!(
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO {role}; \
         CREATE SCHEMA masq; ALTER DEFAULT PRIVILEGES IN SCHEMA masq GRANT SELECT ON TABLES TO PUBLIC"
    ))
    .await
    .unwrap();
    let out = tokio::process::Command::new(MASQ)
        .args(["db", "init", "--database-url", &url])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("revoked") && stdout.contains(&role) && stdout.contains("PUBLIC"),
        "{stdout}"
    );
    for who in [role.as_str(), "public"] {
        let can: bool = db
            .query_one(
                "SELECT has_table_privilege($1, 'masq.dead_letters', 'SELECT')",
                &[&who],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!can, "{who} can still read the dead letters");
    }
    // The rows themselves stay readable where the default privilege put them.
    let can: bool = db
        .query_one(
            "SELECT has_table_privilege($1, 'user_logins', 'SELECT')",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(can);
    drop(db);
    let _ = conn.await;
    admin
        .batch_execute(&format!("DROP DATABASE {db_name}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    u32::from_le_bytes(b)
}
