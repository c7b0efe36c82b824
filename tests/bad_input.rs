//! Every kind of bad message becomes exactly one dead letter with a specific reason, in the
//! same batch as good messages, none of which is lost.

use crate::support::*;

#[tokio::test]
async fn each_bad_message_is_one_dead_letter_and_good_ones_in_its_batch_are_written() {
    let env = TestEnv::new("badinput").await;
    // SQS's limit is 262,144 bytes per message: this body is just under it.
    let huge_device_type = "x".repeat(262_144 - 200);
    let huge = format!(
        r#"{{"user_id": "u-huge", "app_version": "1.0", "device_type": "{huge_device_type}", "ip": "1.1.1.1", "locale": null, "device_id": "000-00-0000"}}"#
    );
    assert!(huge.len() <= 262_144 && huge.len() > 256_000);
    let bad: Vec<(&str, String, String, &str)> = vec![
        ("invalid JSON", r#"{"user_id": "u-1", "ip": "#.into(), "invalid JSON".into(), "decode"),
        ("not an object", r#"["a", "b"]"#.into(), "message body is a JSON array, not an object".into(), "decode"),
        ("foreign", r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#.into(),
            "missing field(s): user_id, app_version, device_type, ip, locale, device_id".into(), "policy"),
        ("missing field", r#"{"user_id": "u-2", "app_version": "2.3.0", "device_type": "ios", "locale": "US", "device_id": "111-11-1111"}"#.into(),
            "missing field(s): ip".into(), "policy"),
        ("wrong type", r#"{"user_id": "u-3", "app_version": 7, "device_type": "ios", "ip": "2.2.2.2", "locale": "US", "device_id": "222-22-2222"}"#.into(),
            "field 'app_version' must be a version string such as \"2.3.0\", got integer 7".into(), "policy"),
        ("null not allowed", r#"{"user_id": "u-4", "app_version": "2.3.0", "device_type": "ios", "ip": null, "locale": "US", "device_id": "333-33-3333"}"#.into(),
            "field 'ip' is null and may not be".into(), "policy"),
        ("too long for its column", login(&"u".repeat(129), "3.3.3.3", "444-44-4444", "1.0", None),
            "field 'user_id': 129 characters do not fit varchar(128)".into(), "sink"),
        ("unreadable version", login("u-5", "4.4.4.4", "555-55-5555", "2.x", None),
            "field 'app_version': '2.x' is not MAJOR.MINOR or MAJOR.MINOR.PATCH with decimal numbers".into(), "policy"),
        ("empty body", " ".into(), "empty message body: expected a JSON object".into(), "decode"),
        ("256 KB body", huge, format!("field 'device_type': {} characters do not fit varchar(32)", huge_device_type.len()), "sink"),
    ];
    let good: Vec<String> = (0..20)
        .map(|i| {
            login(
                &format!("good-{i}"),
                &format!("10.1.0.{i}"),
                &format!("900-00-{i:04}"),
                "3.1.4",
                Some("DE"),
            )
        })
        .collect();
    // Interleave so bad and good messages share batches.
    let mut bodies = Vec::new();
    for (i, g) in good.iter().enumerate() {
        bodies.push(g.clone());
        if let Some((_, body, _, _)) = bad.get(i) {
            bodies.push(body.clone());
        }
    }
    env.send(&bodies).await;
    env.drain(&["--batch-size", "100", "--batch-wait-ms", "300"])
        .await;

    let dead = env.dead_letters().await;
    for (label, body, reason, stage) in &bad {
        let matching: Vec<_> = dead.iter().filter(|(b, _, _)| b == body).collect();
        assert_eq!(
            matching.len(),
            1,
            "{label}: expected one dead letter, got {}",
            matching.len()
        );
        assert!(
            matching[0].1.contains(reason.as_str()),
            "{label}: reason {:?} lacks {reason:?}",
            matching[0].1
        );
        assert_eq!(matching[0].2, *stage, "{label}: stage");
    }
    assert_eq!(dead.len(), bad.len());

    let rows = env.rows().await;
    let users: Vec<&str> = rows.iter().map(|r| r.user_id.as_deref().unwrap()).collect();
    let mut expected: Vec<String> = (0..20).map(|i| format!("good-{i}")).collect();
    expected.sort();
    assert_eq!(users, expected);
    for row in &rows {
        assert_eq!(row.app_version, Some(3_001_004));
        assert_eq!(row.locale.as_deref(), Some("DE"));
    }
    assert_eq!(env.ledger_count().await, (bad.len() + good.len()) as i64);
    assert_eq!(env.depth().await, (0, 0));
}

#[tokio::test]
async fn a_row_refused_by_a_table_constraint_is_a_dead_letter_not_a_failed_batch() {
    let env = TestEnv::new("constraint").await;
    env.db
        .batch_execute(&format!(
            "ALTER TABLE {} ADD CONSTRAINT positive_version CHECK (app_version > 0)",
            env.table
        ))
        .await
        .unwrap();
    let mut bodies: Vec<String> = (0..5)
        .map(|i| {
            login(
                &format!("ok-{i}"),
                &format!("10.2.0.{i}"),
                &format!("800-00-{i:04}"),
                "1.2",
                None,
            )
        })
        .collect();
    let zero = login("zero", "10.2.1.1", "800-01-0000", "0.0", None);
    bodies.insert(2, zero.clone());
    env.send(&bodies).await;
    env.drain(&["--batch-size", "100", "--batch-wait-ms", "300"])
        .await;

    assert_eq!(env.rows().await.len(), 5);
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, zero);
    assert!(
        dead[0].1.starts_with("PostgreSQL refused the row:")
            && dead[0].1.contains("positive_version"),
        "{}",
        dead[0].1
    );
    assert_eq!(dead[0].2, "sink");
    assert_eq!(
        env.count("masq.ledger_entries('$table') WHERE outcome = 'dead_letter'")
            .await,
        1
    );
    assert_eq!(env.depth().await, (0, 0));
}
