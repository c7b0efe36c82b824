//! The policy authors' and operators' tools: `masq plugin test` (no services, catches PII
//! leaks), `masq run --dry-run` (touches nothing), `masq replay` (dead letters after a fix).

use crate::support::*;

fn fixture_path() -> String {
    fixture("fetch-login-queue/messages.jsonl")
        .display()
        .to_string()
}

#[tokio::test]
async fn plugin_test_prints_rows_and_fails_on_a_policy_that_leaks_pii() {
    let env = TestEnv::new("plugintest").await;
    let policy = plugin("sha256-masker");
    let policy = policy.to_str().unwrap();
    let input = fixture_path();

    // The default policy leaks nothing; output is one JSON line per message.
    let out = env
        .masq(&[
            "plugin",
            "test",
            policy,
            "--input",
            &input,
            "--pii",
            "ip,device_id",
            "--sent-at",
            "2024-01-31",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 100);
    assert_eq!(lines.iter().filter(|l| l.get("row").is_some()).count(), 99);
    let first = &lines[0]["row"];
    assert_eq!(first["user_id"], "424cdd21-063a-43a7-b91b-7ca1a833afae");
    use sha2::Digest;
    assert_eq!(
        first["masked_ip"],
        hex::encode(sha2::Sha256::digest(b"199.172.111.135"))
    );
    assert_eq!(first["create_date"], "2024-01-31");
    assert_eq!(
        lines[12]["dead_letter"]["reason"],
        "missing field(s): user_id, app_version, device_type, ip, locale, device_id"
    );

    // Configured to mask only device_id, the policy copies ip into its output as it is.
    let out = env
        .masq(&[
            "plugin",
            "test",
            policy,
            "--input",
            &input,
            "--pii",
            "ip,device_id",
            "--policy-config",
            "mask=device_id:masked_device_id",
        ])
        .await;
    assert!(!out.status.success(), "a leaking policy passed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"PII leak: line 1: output field 'ip' holds the value of input field 'ip' ("199.172.111.135")"#),
        "{err}"
    );
    assert!(err.contains("99 problem(s)"), "{err}");

    // --expect: the same output passes; a changed value fails, naming line and field.
    let dir = tempdir("plugintest");
    let expected = dir.join("expected.jsonl");
    let run = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "plugin",
            "test",
            policy,
            "--input",
            &input,
            "--sent-at",
            "2024-01-31",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        args
    };
    let out = env
        .masq(&run(vec![]).iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    std::fs::write(&expected, &out.stdout).unwrap();
    let expect_args = run(vec!["--expect".into(), expected.display().to_string()]);
    let out = env
        .masq(&expect_args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed = String::from_utf8_lossy(&std::fs::read(&expected).unwrap()).replacen(
        "\"app_version\":2003000",
        "\"app_version\":23",
        1,
    );
    std::fs::write(&expected, changed).unwrap();
    let out = env
        .masq(&expect_args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1: field 'app_version': expected 23, got 2003000"),
        "{err}"
    );
}

#[tokio::test]
async fn dry_run_leaves_queue_and_database_exactly_as_they_were() {
    let env = TestEnv::new("dryrun").await;
    // Some history: one message already written, so the dry run must report it as a duplicate
    // if it came again, and must not touch it.
    env.send(&[login("old", "10.0.0.1", "000-00-0001", "1.0", None)])
        .await;
    env.drain(&[]).await;
    let bodies = vec![
        login("u1", "10.0.0.2", "000-00-0002", "2.3.0", Some("US")),
        login("u2", "10.0.0.3", "000-00-0003", "2.x", None),
        r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#.to_string(),
        login(&"x".repeat(200), "10.0.0.4", "000-00-0004", "1.0", None),
    ];
    env.send(&bodies).await;

    // This test's table, and its entries in masq's tables (other tests share those).
    let snapshot = async || {
        (
            env.rows().await,
            env.ledger_count().await,
            env.dead_letters().await,
        )
    };
    let before = snapshot().await;
    let out = env.drain(&["--dry-run"]).await;
    let after = snapshot().await;
    assert_eq!(before, after, "the dry run changed the database");
    // Every message is back in the queue, visible at once.
    assert_eq!(env.depth().await, (4, 0));

    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    let rows: Vec<_> = lines.iter().filter_map(|l| l.get("row")).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user_id"], "u1");
    assert_eq!(rows[0]["masked_ip"], env.token("10.0.0.2"));
    let reasons: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["dead_letter"]["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("field 'app_version': '2.x'")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("missing field(s)")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r == &"field 'user_id': 200 characters do not fit varchar(128)"),
        "{reasons:?}"
    );
    assert!(out.contains("dry run"), "{out}");

    // The real run afterwards sees all four messages.
    let summary = env.drain(&[]).await;
    assert!(
        summary.contains("received 4, written 1, dead-lettered 3"),
        "{summary}"
    );
}

#[tokio::test]
async fn replay_writes_each_formerly_dead_message_exactly_once() {
    let env = TestEnv::new("replay").await;
    let out = env.masq(&["seed", "--file", &fixture_path()]).await;
    assert!(out.status.success());
    // A broken configuration: app_version left as a string, which the integer column
    // refuses, so every login dies (and the foreign message too, as always).
    let bad_config = "version-field=";
    env.drain(&["--policy-config", bad_config]).await;
    assert_eq!(env.rows().await.len(), 0);
    assert_eq!(env.dead_letters().await.len(), 100);
    // Replayed from sealed bodies: none is stored in clear.
    assert_eq!(
        env.count("masq.dead_letters WHERE target_table = '$table' AND body IS NULL AND body_sealed IS NOT NULL")
            .await,
        100
    );

    let policy = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let replay = async || {
        let out = env
            .masq(&[
                "replay",
                "--plugin",
                policy.to_str().unwrap(),
                "--key-file",
                &key,
            ])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = replay().await;
    assert!(
        report.contains("written 99, dropped 0, still dead 1, skipped 0"),
        "{report}"
    );
    let rows = env.rows().await;
    assert_eq!(rows.len(), 99);
    let first = rows
        .iter()
        .find(|r| r.user_id.as_deref() == Some("424cdd21-063a-43a7-b91b-7ca1a833afae"))
        .unwrap();
    assert_eq!(
        first.masked_ip.as_deref(),
        Some(env.token("199.172.111.135").as_str())
    );
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].1,
        "missing field(s): user_id, app_version, device_type, ip, locale, device_id"
    );
    assert_eq!(
        env.count("masq.ledger_entries('$table') WHERE outcome = 'written'")
            .await,
        99
    );

    // Again: nothing left to write, nothing written twice.
    let report = replay().await;
    assert!(
        report.contains("written 0, dropped 0, still dead 1"),
        "{report}"
    );
    assert_eq!(env.rows().await.len(), 99);
    assert_eq!(
        env.count(&format!("(SELECT DISTINCT user_id FROM {}) d", env.table))
            .await,
        99
    );
}

#[tokio::test]
async fn the_rust_template_builds_and_passes_its_own_expected_output() {
    let env = TestEnv::new("template").await;
    let dir = repo_root().join("plugins/rust-template/examples");
    let policy = plugin("rust-template");
    let out = env
        .masq(&[
            "plugin",
            "test",
            policy.to_str().unwrap(),
            "--input",
            dir.join("input.jsonl").to_str().unwrap(),
            "--expect",
            dir.join("expected.jsonl").to_str().unwrap(),
            "--pii",
            "email",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The expected file holds plain SHA-256 of the emails, computed here independently.
    use sha2::Digest;
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    assert!(
        expected.contains(&hex::encode(sha2::Sha256::digest(b"ada@example.com"))),
        "{expected}"
    );
}

#[tokio::test]
async fn load_writes_a_file_once_even_when_run_twice_and_reads_stdin() {
    let env = TestEnv::new("load").await;
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let file = fixture_path();
    let load = |extra: &[&str]| {
        let mut args = vec![
            "load",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--batch-size",
            "7",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = async |args: Vec<String>| {
        let out = env
            .masq(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run(load(&[
        "--input",
        &file,
        "--source-id",
        "fixture",
        "--sent-at",
        "2024-02-29",
    ]))
    .await;
    assert!(
        first.contains(
            "loaded 100 lines: written 99, dead-lettered 1, dropped 0, duplicates skipped 0"
        ),
        "{first}"
    );
    let again = run(load(&[
        "--input",
        &file,
        "--source-id",
        "fixture",
        "--sent-at",
        "2024-02-29",
    ]))
    .await;
    assert!(
        again.contains("written 0, dead-lettered 0, dropped 0, duplicates skipped 100"),
        "{again}"
    );
    let rows = env.rows().await;
    assert_eq!(rows.len(), 99);
    assert!(
        rows.iter()
            .all(|r| r.create_date.as_deref() == Some("2024-02-29"))
    );
    let first_row = rows
        .iter()
        .find(|r| r.user_id.as_deref() == Some("424cdd21-063a-43a7-b91b-7ca1a833afae"))
        .unwrap();
    assert_eq!(
        first_row.masked_ip.as_deref(),
        Some(env.token("199.172.111.135").as_str())
    );

    // stdin, under another source id: new message ids, so written again.
    let mut child = env
        .command(
            &load(&["--input", "-", "--source-id", "stdin-test"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(std::fs::read(&file).unwrap().as_slice())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("written 99, dead-lettered 1"));
    assert_eq!(env.rows().await.len(), 198);
    assert_eq!(env.ledger_count().await, 200);
}
