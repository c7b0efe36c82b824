//! masq behind PgBouncer 1.18 (Debian's) in transaction pooling mode, with fewer server
//! connections than masq has workers: consecutive transactions of one masq connection run on
//! different server connections, so a statement prepared outside the transaction that uses it
//! would be missing ("prepared statement \"s2\" does not exist") and every batch would retry.

use crate::login_data_set::{expected_rows, without_dates};
use crate::support::*;

/// PgBouncer's own settings, from its admin console (simple queries only).
async fn pgbouncer_setting(name: &str) -> String {
    let admin = pgbouncer_url()
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/pgbouncer"))
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PgBouncer at {admin}: {e}; run `just services`"));
    tokio::spawn(conn);
    let rows = client.simple_query("SHOW CONFIG").await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(name) => {
                r.get(1).map(String::from)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("PgBouncer shows no setting {name}"))
}

#[tokio::test]
async fn the_login_data_set_goes_through_pgbouncer_in_transaction_mode_exactly_once() {
    // The pooler as operators run it: transaction mode, 2 server connections for 4 workers.
    assert_eq!(pgbouncer_setting("pool_mode").await, "transaction");
    assert_eq!(pgbouncer_setting("default_pool_size").await, "2");

    let env = TestEnv::new("pgbouncer").await;
    let through = pgbouncer_url();
    let init = env
        .command(&["db", "init"])
        .env("DATABASE_URL", &through)
        .output()
        .await
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let file = fixture("fetch-login-queue/messages.jsonl");
    let seed = env.masq(&["seed", "--file", file.to_str().unwrap()]).await;
    assert!(seed.status.success());

    // Batches of 10 on 4 workers: about ten transactions, several at once, over 2 connections.
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
            "--workers",
            "4",
            "--batch-size",
            "10",
        ])
        .env("DATABASE_URL", &through)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("will retry").count(), 0, "{stderr}");
    assert!(!stderr.contains("prepared statement"), "{stderr}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary
            .contains("received 100, written 99, dead-lettered 1, dropped 0, duplicates skipped 0"),
        "{summary}"
    );

    // Exactly once: the data set's rows, each once, one ledger entry per message.
    let rows = env.rows().await;
    assert_eq!(without_dates(&rows), expected_rows(&env));
    assert_eq!(env.ledger_count().await, 100);
    assert_eq!(env.dead_letters().await.len(), 1);
    assert_eq!(env.depth().await, (0, 0));

    // The other commands through the pooler too: status reads the ledger.
    let status = env
        .command(&["status"])
        .env("DATABASE_URL", &through)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(report.contains("written 99"), "{report}");
    assert!(report.contains("dead_letter 1"), "{report}");
}
