//! The acceptance run on the take-home's real data set (tests/fixtures/fetch-login-queue).

use crate::support::*;
use std::collections::HashSet;

/// The rows the data set must become under `env`'s key, computed from the raw lines
/// independently of masq, without their dates (the send date), sorted.
pub fn expected_rows(env: &TestEnv) -> Vec<LoginRow> {
    let mut expected: Vec<LoginRow> = fixture_lines()
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|v| v.get("user_id").is_some())
        .map(|v| {
            let s = |k: &str| v[k].as_str().map(String::from);
            LoginRow {
                user_id: s("user_id"),
                device_type: s("device_type"),
                masked_ip: Some(env.token(&s("ip").unwrap())),
                masked_device_id: Some(env.token(&s("device_id").unwrap())),
                locale: s("locale"),
                app_version: Some(expected_version(&s("app_version").unwrap())),
                create_date: None,
            }
        })
        .collect();
    expected.sort();
    expected
}

/// `rows` without their dates, sorted: to compare with `expected_rows`.
pub fn without_dates(rows: &[LoginRow]) -> Vec<LoginRow> {
    let mut rows: Vec<LoginRow> = rows
        .iter()
        .cloned()
        .map(|r| LoginRow {
            create_date: None,
            ..r
        })
        .collect();
    rows.sort();
    rows
}

/// Every raw ip and device id of the data set.
fn raw_values() -> Vec<String> {
    fixture_lines()
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|v| v.get("user_id").is_some())
        .flat_map(|v| {
            [
                v["ip"].as_str().unwrap().to_string(),
                v["device_id"].as_str().unwrap().to_string(),
            ]
        })
        .collect()
}

fn fixture_lines() -> Vec<String> {
    let text = std::fs::read_to_string(fixture("fetch-login-queue/messages.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn the_login_data_set_lands_masked_exactly_once() {
    let env = TestEnv::new("dataset").await;
    let day_before = utc_today();
    let file = fixture("fetch-login-queue/messages.jsonl");
    let out = env.masq(&["seed", "--file", file.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let day_after = utc_today();

    let summary = env.drain(&[]).await;
    assert!(
        summary.contains("received 100, written 99, dead-lettered 1"),
        "{summary}"
    );

    // Exact rows, computed independently from the raw lines and the test's own key.
    let rows = env.rows().await;
    assert_eq!(rows.len(), 99);
    for row in &rows {
        let date = row.create_date.clone().unwrap();
        assert!(
            date == day_before || date == day_after,
            "create_date {date} is not the send date"
        );
    }
    assert_eq!(without_dates(&rows), expected_rows(&env));

    // The data set's facts, as the issue states them.
    assert_eq!(rows.iter().filter(|r| r.locale.is_none()).count(), 29);
    assert_eq!(
        rows.iter()
            .map(|r| &r.masked_ip)
            .collect::<HashSet<_>>()
            .len(),
        99
    );
    assert_eq!(
        rows.iter()
            .map(|r| &r.masked_device_id)
            .collect::<HashSet<_>>()
            .len(),
        99
    );
    assert_eq!(
        rows.iter()
            .map(|r| r.app_version)
            .collect::<HashSet<_>>()
            .len(),
        94
    );

    // No raw ip or device id anywhere in the table, whole or in part of any column.
    let all_text: Vec<String> = env
        .db
        .query(&format!("SELECT t::text FROM {} t", env.table), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for raw in &raw_values() {
        assert!(
            !all_text.iter().any(|row| row.contains(raw.as_str())),
            "raw value {raw} is in the table"
        );
    }

    // The foreign message is the one dead letter, with the missing fields named.
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#);
    assert_eq!(
        dead[0].1,
        "missing field(s): user_id, app_version, device_type, ip, locale, device_id"
    );
    assert_eq!(dead[0].2, "policy");

    assert_eq!(env.ledger_count().await, 100);
    assert_eq!(env.depth().await, (0, 0), "queue not empty");
}

#[tokio::test]
async fn unkeyed_mode_stores_plain_sha256_and_warns() {
    let env = TestEnv::new("unkeyed").await;
    env.send(&[
        login("u1", "199.172.111.135", "593-47-5928", "2.3.0", Some("RU")),
        login("u2", "10.0.0.1", "104-25-0070", "0.2.8", None),
    ])
    .await;
    let plugin = plugin("sha256-masker");
    let out = env
        .masq(&[
            "run",
            "--drain",
            "--unkeyed",
            "--plugin",
            plugin.to_str().unwrap(),
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reversed in about a second on one GPU"),
        "{stderr}"
    );

    let rows = env.rows().await;
    assert_eq!(rows.len(), 2);
    // SHA-256 of the ASCII strings, computed with sha2 directly.
    use sha2::Digest;
    let sha = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    assert_eq!(
        rows[0].masked_ip.as_deref(),
        Some(sha("199.172.111.135").as_str())
    );
    assert_eq!(
        rows[0].masked_device_id.as_deref(),
        Some(sha("593-47-5928").as_str())
    );
    assert_eq!(rows[1].masked_ip.as_deref(), Some(sha("10.0.0.1").as_str()));
    assert_eq!(rows[1].app_version, Some(2_008));
    assert_eq!(rows[0].app_version, Some(2_003_000));
}
