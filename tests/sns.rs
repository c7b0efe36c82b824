//! SNS envelopes: the real data set published to a topic that feeds the queue, with raw
//! message delivery off (every body an SNS envelope) and on, lands exactly as when sent
//! straight to the queue; malformed envelopes are dead letters that say so.

use crate::login_data_set::{expected_rows, without_dates};
use crate::support::aws::topic_feeding;
use crate::support::*;

async fn data_set_through_sns(name: &str, raw: bool) {
    let env = TestEnv::new(name).await;
    let topic = topic_feeding(&env.sqs, &env.queue_url, name, raw).await;
    let file = fixture("fetch-login-queue/messages.jsonl");
    let out = env
        .masq(&[
            "seed",
            "--topic-arn",
            &topic,
            "--file",
            file.to_str().unwrap(),
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The default --envelope (auto) reads both.
    let summary = env.drain(&[]).await;
    assert!(
        summary.contains("received 100, written 99, dead-lettered 1"),
        "{summary}"
    );
    assert_eq!(without_dates(&env.rows().await), expected_rows(&env));
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    // The message as published, not its envelope; the same reason as sent directly.
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
async fn sns_envelopes_raw_delivery_off_land_as_sent_directly() {
    data_set_through_sns("sns-enveloped", false).await;
}

#[tokio::test]
async fn sns_raw_delivery_on_lands_as_sent_directly() {
    data_set_through_sns("sns-raw", true).await;
}

#[tokio::test]
async fn sns_malformed_envelopes_are_dead_letters_naming_the_field() {
    let env = TestEnv::new("sns-malformed").await;
    let good_inner = login("u-sns", "10.1.2.3", "111-22-3333", "1.2.3", Some("US"));
    let envelope = |message: Option<&str>| {
        let mut v = serde_json::json!({
            "Type": "Notification",
            "MessageId": "5f1e-sns",
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:logins",
            "Timestamp": "2026-11-29T22:10:00.123Z",
            "SignatureVersion": "1", "Signature": "EXAMPLE",
        });
        if let Some(m) = message {
            v["Message"] = m.into();
        }
        v.to_string()
    };
    let missing_message = envelope(None);
    let mut bad_time: serde_json::Value = serde_json::from_str(&envelope(Some("{}"))).unwrap();
    bad_time["Timestamp"] = "10.9.8.7".into();
    let bad_time = bad_time.to_string();
    env.send(&[
        envelope(Some(&good_inner)),
        missing_message.clone(),
        bad_time.clone(),
    ])
    .await;
    let summary = env.drain(&[]).await;
    assert!(
        summary.contains("received 3, written 1, dead-lettered 2"),
        "{summary}"
    );
    let rows = env.rows().await;
    assert_eq!(rows[0].user_id.as_deref(), Some("u-sns"));
    assert_eq!(rows[0].masked_ip, Some(env.token("10.1.2.3")));
    let mut dead = env.dead_letters().await;
    dead.sort();
    let mut expected = vec![
        (
            missing_message,
            "malformed SNS envelope: field 'Message' is missing".to_string(),
            "decode".to_string(),
        ),
        (
            bad_time,
            "malformed SNS envelope: field 'Timestamp' is not an ISO 8601 time".to_string(),
            "decode".to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(dead, expected);
}

#[tokio::test]
async fn sns_required_envelope_refuses_a_bare_message_and_none_never_unwraps() {
    let env = TestEnv::new("sns-required").await;
    let bare = login("u-bare", "10.1.2.4", "111-22-4444", "1.0", None);
    env.send(std::slice::from_ref(&bare)).await;
    let summary = env.drain(&["--envelope", "sns"]).await;
    assert!(summary.contains("dead-lettered 1"), "{summary}");
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, bare);
    assert!(
        dead[0]
            .1
            .starts_with("body is not an SNS notification envelope"),
        "{}",
        dead[0].1
    );

    // --envelope none hands an envelope to the policy as it is: its login is not found.
    let env = TestEnv::new("sns-none").await;
    let topic = topic_feeding(&env.sqs, &env.queue_url, "sns-none", false).await;
    let body = login("u-none", "10.1.2.5", "111-22-5555", "1.0", None);
    let file = env.jsonl("one.jsonl", &[body]);
    let out = env
        .masq(&["seed", "--topic-arn", &topic, "--file", &file])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = env.drain(&["--envelope", "none"]).await;
    assert!(summary.contains("written 0, dead-lettered 1"), "{summary}");
    let dead = env.dead_letters().await;
    assert!(
        dead[0].0.contains("\"TopicArn\""),
        "the envelope itself is the dead letter"
    );
}
