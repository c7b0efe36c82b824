//! Attributes arrive with each message, as the pipeline receives it from the real SQS server:
//! message attributes by name, system attributes by their AWS names, and the facts of an SNS
//! envelope. (The policy sees them through the 0.2 contract's metadata; the 0.1 contract has
//! no place for them.)

use crate::support::aws::{create_fifo_queue, topic_feeding};
use crate::support::*;
use masq::source::sqs::{SqsSource, SqsTimeouts};

fn value<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Receives what the queue holds through masq's own source, as `masq run` does.
async fn receive(queue_url: &str) -> Vec<masq::source::Message> {
    // The source reads the AWS settings from the environment, as masq does (`just test`
    // exports the local server's).
    let source = SqsSource::connect(queue_url, SqsTimeouts::default())
        .await
        .expect("source connects");
    let mut all = Vec::new();
    for _ in 0..5 {
        all.extend(source.receive_messages(1).await.unwrap());
    }
    all
}

#[tokio::test]
async fn attributes_arrive_with_each_message() {
    let env = TestEnv::new("attributes").await;
    let fifo_url = create_fifo_queue(&env.sqs, "attributes").await;
    let body = login("a-1", "10.60.0.1", "600-00-0001", "1.0", None);
    let file = env.jsonl("one.jsonl", std::slice::from_ref(&body));
    let out = env
        .masq(&[
            "seed",
            "--queue-url",
            &fifo_url,
            "--file",
            &file,
            "--message-attribute",
            "tenant=acme",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receive(&fifo_url).await;
    assert_eq!(got.len(), 1);
    let a = &got[0].attributes;
    assert_eq!(value(a, "tenant"), Some("acme"), "{a:?}");
    assert_eq!(value(a, "MessageGroupId"), Some("group-0"), "{a:?}");
    assert_eq!(value(a, "ApproximateReceiveCount"), Some("1"), "{a:?}");
    let first: u64 = value(a, "ApproximateFirstReceiveTimestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!(first >= got[0].sent_ms, "{a:?}");
    assert_eq!(got[0].body, body);
}

#[tokio::test]
async fn attributes_of_an_sns_envelope_arrive_with_the_inner_message() {
    let env = TestEnv::new("attributes-sns").await;
    let topic = topic_feeding(&env.sqs, &env.queue_url, "attributes-sns", false).await;
    let body = login("a-2", "10.60.0.2", "600-00-0002", "1.0", None);
    let file = env.jsonl("one.jsonl", std::slice::from_ref(&body));
    let out = env
        .masq(&[
            "seed",
            "--topic-arn",
            &topic,
            "--file",
            &file,
            "--message-attribute",
            "tenant=acme",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receive(&env.queue_url).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.body, body, "the policy gets the message as published");
    assert_eq!(value(&m.attributes, "sns.topic_arn"), Some(topic.as_str()));
    assert!(value(&m.attributes, "sns.message_id").is_some_and(|id| !id.is_empty()));
    let at = value(&m.attributes, "sns.timestamp").unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(
        value(&m.attributes, "tenant"),
        Some("acme"),
        "{:?}",
        m.attributes
    );
}

/// A 0.2 policy reads the attributes from its records' metadata and writes one into a column:
/// a message attribute on a standard queue, and the group id (a system attribute) on a FIFO
/// queue.
#[tokio::test]
async fn a_policy_writes_an_attribute_into_a_column() {
    let env = TestEnv::new("attrcolumn").await;
    let table = format!("{}_stamped", env.table);
    env.db
        .batch_execute(&format!(
            "CREATE TABLE {table} (message_id text, policy_version text, user_id text, \
             attribute_value text)"
        ))
        .await
        .unwrap();
    let fifo_url = create_fifo_queue(&env.sqs, "attrcolumn").await;
    let bodies: Vec<String> = (0..5)
        .map(|i| login(&format!("at-{i}"), "10.61.0.1", "610-00-0001", "1.0", None))
        .collect();
    let file = env.jsonl("five.jsonl", &bodies);
    let plugin = plugin("version-stamp-02");
    let key = env.key_file.display().to_string();
    for (queue, attribute, expected) in [
        (env.queue_url.as_str(), "tenant", "acme"),
        (fifo_url.as_str(), "MessageGroupId", "group-0"),
    ] {
        let seeded = env
            .masq(&[
                "seed", "--queue-url", queue, "--file", &file, "--message-attribute", "tenant=acme",
            ])
            .await;
        assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
        let config = format!("attribute={attribute}");
        let run = env
            .masq(&[
                "run", "--drain", "--queue-url", queue, "--table", &table, "--plugin",
                plugin.to_str().unwrap(), "--key-file", &key, "--policy-config", &config,
            ])
            .await;
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let values: Vec<(String, Option<String>)> = env
            .db
            .query(
                &format!(
                    "DELETE FROM {table} RETURNING user_id, attribute_value"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(values.len(), 5, "{attribute}: {values:?}");
        assert!(
            values.iter().all(|(_, v)| v.as_deref() == Some(expected)),
            "{attribute}: {values:?}"
        );
    }
}
