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
