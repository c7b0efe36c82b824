//! No raw PII at rest: after the real data set and every kind of bad message (each carrying
//! real-looking ip and device_id values) has gone through masq, neither a dump of the whole
//! database nor masq's log output, at every level of its own code, holds one of those values.
//! Key holders still get every dead letter back, byte for byte; a wrong key gets nothing.

use crate::support::*;
use std::collections::BTreeSet;

/// A database of this test's own, so its dump holds nothing but what this test wrote.
struct PrivateDatabase {
    name: String,
    url: String,
}

impl PrivateDatabase {
    async fn create(name: &str) -> PrivateDatabase {
        let name = format!("masq_{name}_{}", random_hex(4));
        let admin = database_url();
        let (db, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("the test database answers");
        tokio::spawn(conn);
        db.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin.rsplit_once('/').expect("a database URL ends in /NAME").0;
        PrivateDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// Everything in it, as `pg_dump` prints it: schema and data of every table.
    fn dump(&self) -> String {
        let out = std::process::Command::new("pg_dump")
            .arg(&self.url)
            .output()
            .expect("pg_dump runs (PostgreSQL's client tools, installed with the server)");
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn drop(self) {
        let (db, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        db.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// masq's own code logs at every level; the libraries under it at their defaults (masq caps
/// the ones that could carry payloads itself, whatever MASQ_LOG says).
const EVERY_LEVEL: &str = "trace,cranelift_codegen=info,cranelift_frontend=info,wasmtime=info,\
    wasmtime_cranelift=info,regalloc2=info,wasmtime_internal_cranelift=info";

/// Every kind of bad message, each with its own ip and device_id (where the shape allows).
/// The values are named so the test can look for each one.
fn bad_messages() -> Vec<String> {
    let huge_type = "x".repeat(200_000);
    vec![
        // Invalid JSON, cut off after the values.
        r#"{"user_id": "b-1", "ip": "172.16.91.1", "device_id": "901-11-0001", "app_"#.into(),
        // Not an object.
        r#"["172.16.91.2", "901-11-0002"]"#.into(),
        // Foreign, with the values under other names.
        r#"{"foo": "172.16.91.3", "bar": "901-11-0003"}"#.into(),
        // A missing field: no ip.
        r#"{"user_id": "b-4", "app_version": "2.3.0", "device_type": "ios", "locale": "US", "device_id": "901-11-0004"}"#.into(),
        // Wrong types: an IPv4 address as an integer (172.16.91.5), a device id as a number.
        r#"{"user_id": "b-5", "app_version": "2.3.0", "device_type": "ios", "ip": 2886753029, "locale": "US", "device_id": 901110005}"#.into(),
        // A null that is not allowed.
        r#"{"user_id": "b-6", "app_version": "2.3.0", "device_type": "ios", "ip": null, "locale": "US", "device_id": "901-11-0006"}"#.into(),
        // Too long for its column.
        login(&"u".repeat(129), "172.16.91.7", "901-11-0007", "1.0", None),
        // An unreadable version.
        login("b-8", "172.16.91.8", "901-11-0008", "2.x", None),
        // A NUL character in a field the policy quotes.
        login("b-9", "172.16.91.9", "901-11-0009", "2.0\u{0}", None),
        // A member name the table cannot have (over 63 bytes).
        format!(
            r#"{{"user_id": "b-10", "app_version": "1.0", "device_type": "ios", "ip": "172.16.91.10", "locale": null, "device_id": "901-11-0010", "{}": 1}}"#,
            "m".repeat(64)
        ),
        // 200 KB, too long for device_type.
        format!(
            r#"{{"user_id": "b-11", "app_version": "1.0", "device_type": "{huge_type}", "ip": "172.16.91.11", "locale": null, "device_id": "901-11-0011"}}"#
        ),
    ]
}

/// Every ip and device_id value the messages carry, as text, in the forms a leak would take.
fn secrets(bodies: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for body in bodies {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body)
        {
            for (name, value) in map {
                if name == "ip" || name == "device_id" || name == "foo" || name == "bar" {
                    match value {
                        serde_json::Value::String(s) => out.insert(s),
                        serde_json::Value::Number(n) => out.insert(n.to_string()),
                        _ => false,
                    };
                }
            }
        }
    }
    // The two bodies that do not parse.
    for i in [1, 2] {
        out.insert(format!("172.16.91.{i}"));
        out.insert(format!("901-11-000{i}"));
    }
    // Only what is a value of ip or device_id (the foreign message's "123" is neither).
    out.retain(|s| s.len() >= 7 && s.chars().any(|c| c.is_ascii_digit()));
    out
}

fn leaks<'a>(text: &str, secrets: &'a BTreeSet<String>) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn no_ip_or_device_id_reaches_the_database_or_the_logs_and_key_holders_get_every_body() {
    let db = PrivateDatabase::create("pii").await;
    let env = TestEnv::new_in("pii", &db.url).await;
    let mut bodies: Vec<String> = std::fs::read_to_string(fixture("fetch-login-queue/messages.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let bad = bad_messages();
    bodies.extend(bad.iter().cloned());
    let secrets = secrets(&bodies);
    assert!(
        secrets.len() > 150,
        "the data set's ip and device_id values: {}",
        secrets.len()
    );
    env.send(&bodies).await;

    let policy = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let run = env
        .command(&[
            "run", "--drain", "--plugin", policy.to_str().unwrap(), "--key-file", &key,
            "--batch-size", "50",
        ])
        .env("MASQ_LOG", EVERY_LEVEL)
        .output()
        .await
        .unwrap();
    let run_log = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "masq run failed:\n{run_log}");
    let list = env.masq(&["dead-letters", "list"]).await;
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout).into_owned();

    // What landed: the data set's 99 rows, one dead letter per bad message and the foreign one.
    assert_eq!(env.rows().await.len(), 99);
    let letters = env
        .db
        .query(
            "SELECT id, body IS NULL AND body_sealed IS NOT NULL AND key_id = $2 \
             FROM masq.dead_letters WHERE target_table = $1 ORDER BY id",
            &[&env.table, &env.key_id],
        )
        .await
        .unwrap();
    assert_eq!(letters.len(), bad.len() + 1);
    assert!(
        letters.iter().all(|r| r.get::<_, bool>(1)),
        "every dead letter is sealed under the active key, none in clear"
    );

    let dump = db.dump();
    assert!(dump.contains("masq.dead_letters"), "the dump covers masq's tables");
    assert_eq!(leaks(&dump, &secrets), Vec::<&str>::new(), "PII in pg_dump");
    assert_eq!(leaks(&run_log, &secrets), Vec::<&str>::new(), "PII in the log of masq run");
    assert_eq!(leaks(&list, &secrets), Vec::<&str>::new(), "PII in dead-letters list");
    assert!(list.contains("sealed("), "{list}");

    // Key holders: every body back, byte for byte.
    let ids: Vec<String> = letters.iter().map(|r| r.get::<_, i64>(0).to_string()).collect();
    let mut show_args = vec!["dead-letters", "show"];
    show_args.extend(ids.iter().map(String::as_str));
    let mut with_key = show_args.clone();
    with_key.extend(["--key-file", &key]);
    let shown = env.masq(&with_key).await;
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: BTreeSet<String> = String::from_utf8(shown.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["body"].as_str().unwrap().to_string()
        })
        .collect();
    let mut dead_bodies: BTreeSet<String> = bad.iter().cloned().collect();
    dead_bodies.insert(r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#.to_string());
    assert_eq!(shown.len(), dead_bodies.len());
    assert!(shown == dead_bodies, "the bodies shown are not the bodies sent");

    // A key file without the sealing key, and one with its id but other bytes: both fail
    // naming the key id, and print no body.
    let dir = tempdir("pii-keys");
    let other_id = dir.join("other-id.key");
    write_key_file(&other_id, "kother", &[7u8; 32]);
    let same_id = dir.join("same-id.key");
    write_key_file(&same_id, &env.key_id, &[9u8; 32]);
    for wrong in [&other_id, &same_id] {
        let mut args = show_args.clone();
        let wrong = wrong.display().to_string();
        args.extend(["--key-file", &wrong]);
        let out = env.masq(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a wrong key must fail");
        assert!(out.stdout.is_empty(), "a wrong key printed something");
        assert!(stderr.contains(&env.key_id), "{stderr}");
        assert_eq!(leaks(&stderr, &secrets), Vec::<&str>::new());
    }
    drop(env);
    db.drop().await;
}

#[tokio::test]
async fn a_policy_that_copies_the_ip_into_its_reason_stores_and_logs_none_of_it() {
    let env = TestEnv::new("leaky").await;
    let bodies = vec![
        login("l-1", "192.168.77.1", "777-00-0001", "1.0", None),
        login("l-2", "192.168.77.2", "", "1.0", None),
    ];
    env.send(&bodies).await;
    let policy = plugin("hostile-leaky-reason");
    let key = env.key_file.display().to_string();
    let run = env
        .command(&[
            "run", "--drain", "--plugin", policy.to_str().unwrap(), "--key-file", &key,
        ])
        .env("MASQ_LOG", EVERY_LEVEL)
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{log}");
    let mut reasons: Vec<String> = env.dead_letters().await.into_iter().map(|d| d.1).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "<field ip>",
            "leaked ip=<field ip> device=<field device_id> (again: [<field ip>])",
        ]
    );
    for secret in ["192.168.77.1", "192.168.77.2", "777-00-0001"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test]
async fn clear_dead_letters_of_an_earlier_masq_are_sealed_in_place_once() {
    let env = TestEnv::new("sealold").await;
    let body = login("o-1", "10.200.0.1", "555-00-0001", "2.x", None);
    // As an earlier masq stored it: the body in clear.
    env.db
        .execute(
            "INSERT INTO masq.dead_letters (target_table, message_id, body, reason, stage) \
             VALUES ($1, 'old-1', $2, 'field ''app_version'' is not MAJOR.MINOR', 'policy')",
            &[&env.table, &body],
        )
        .await
        .unwrap();
    let list = env.masq(&["dead-letters", "list"]).await;
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("CLEAR") && list.contains("dead-letters seal"), "{list}");
    let init = env.masq(&["db", "init"]).await;
    let init = String::from_utf8_lossy(&init.stdout);
    assert!(init.contains("hold their body in clear: seal them"), "{init}");

    let key = env.key_file.display().to_string();
    let seal = async || {
        let out = env.masq(&["dead-letters", "seal", "--key-file", &key]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(seal().await.contains("sealed 1 dead letter(s)"));
    assert!(seal().await.contains("sealed 0 dead letter(s)"));
    let clear = env
        .count("masq.dead_letters WHERE target_table = '$table' AND body IS NOT NULL")
        .await;
    assert_eq!(clear, 0);
    assert_eq!(env.dead_letters().await[0].0, body, "it opens to the same body");

    // And replay sends it through the policy from its sealed body.
    let policy = plugin("sha256-masker");
    let out = env
        .masq(&["replay", "--plugin", policy.to_str().unwrap(), "--key-file", &key])
        .await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("written 0, dropped 0, still dead 1"), "{report}");
}

#[tokio::test]
async fn without_a_key_file_dead_letters_keep_only_their_shape() {
    let env = TestEnv::new("shape").await;
    let body = login("s-1", "10.201.0.1", "555-01-0001", "2.x", Some("DE"));
    env.send(std::slice::from_ref(&body)).await;
    let run = env.command(&["run", "--drain", "--unkeyed", "--plugin",
        plugin("sha256-masker").to_str().unwrap()]).output().await.unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("run with --key-file to keep them recoverable"), "{log}");
    let (shape, reason, _) = env.dead_letters().await.remove(0);
    assert!(!shape.contains("10.201.0.1") && !shape.contains("555-01-0001"), "{shape}");
    let shape: serde_json::Value = serde_json::from_str(&shape).unwrap();
    assert_eq!(shape["length"], body.len());
    assert_eq!(
        shape["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()))
    );
    let members = shape["members"].as_array().unwrap();
    assert_eq!(members.len(), 6);
    assert!(members.contains(&serde_json::json!(["app_version", "string"])), "{members:?}");
    assert!(members.contains(&serde_json::json!(["ip", "string"])), "{members:?}");
    assert!(reason.contains("app_version"), "{reason}");
    // Nothing to replay: said, and the letter stays.
    let out = env
        .masq(&["replay", "--unkeyed", "--plugin", plugin("sha256-masker").to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("1 dead letter(s) hold only their body's shape"), "{report}");
    assert_eq!(env.dead_letters().await.len(), 1);
}
