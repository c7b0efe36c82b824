//! SQL that cannot succeed stops masq with what to fix; odd but legal names just work.

use crate::support::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_column_named_with_a_quote_is_written_like_any_other() {
    let env = TestEnv::new("quotecol").await;
    env.db
        .batch_execute(&format!(
            r#"ALTER TABLE {} ADD COLUMN "a""b" text DEFAULT 'none'"#,
            env.table
        ))
        .await
        .unwrap();
    // The default policy passes unknown members through: this one lands in column a"b.
    let mut with: serde_json::Value =
        serde_json::from_str(&login("q-1", "10.3.0.1", "100-00-0001", "1.0", None)).unwrap();
    with["a\"b"] = serde_json::json!("quoted");
    env.send(&[
        with.to_string(),
        login("q-2", "10.3.0.2", "100-00-0002", "1.0", None),
    ])
    .await;
    env.drain(&["--batch-wait-ms", "300"]).await;
    let got: Vec<(String, String)> = env
        .db
        .query(
            &format!(
                r#"SELECT user_id, "a""b" FROM {} ORDER BY user_id"#,
                env.table
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        got,
        [
            ("q-1".to_string(), "quoted".to_string()),
            ("q-2".into(), "none".into())
        ]
    );
    assert!(env.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_missing_insert_privilege_stops_masq_and_keeps_every_message_in_the_queue() {
    let env = TestEnv::new("noinsert").await;
    let role = format!("masq_writer_{}", &env.table[env.table.len() - 8..]);
    // A role that may do everything masq does except insert into the target table.
    env.db
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; \
             GRANT USAGE ON SCHEMA masq TO {role}; \
             GRANT SELECT, INSERT, UPDATE ON masq.ledger, masq.dead_letters, masq.policy_events, \
               masq.targets, masq.policy_versions, masq.loads TO {role}; \
             GRANT SELECT ON masq.ledger_packed TO {role}; \
             GRANT EXECUTE ON FUNCTION masq.ledger_prepare, masq.ledger_prune TO {role}; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA masq TO {role}; \
             GRANT SELECT ON {table} TO {role};",
            table = env.table
        ))
        .await
        .unwrap();
    let bodies: Vec<String> = (0..25)
        .map(|i| login(&format!("np-{i}"), "10.3.1.1", "100-01-0001", "1.0", None))
        .collect();
    env.send(&bodies).await;

    let url = database_url().replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    assert_ne!(url, database_url());
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        env.masq(&[
            "run",
            "--drain",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--database-url",
            &url,
        ]),
    )
    .await
    .unwrap_or_else(|_| panic!("masq did not stop within 10 s"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("permission denied for table {}", env.table))
            && err.contains("grant the database user INSERT on"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(env.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert_eq!(env.ledger_count().await, 0);
    assert_eq!(env.rows().await.len(), 0);
    assert_eq!(
        env.depth().await,
        (25, 0),
        "every message back in the queue"
    );
    env.db
        .batch_execute(&format!(
            "REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .await
        .unwrap();
}
