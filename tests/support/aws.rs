//! SNS topics, S3 buckets and FIFO queues on the local server (fauxqs serves SQS, SNS and S3 on
//! one endpoint), for the tests of the shapes AWS users send messages in.

use super::{endpoint, random_hex};
use aws_sdk_sqs::Client as SqsClient;
use aws_sdk_sqs::types::QueueAttributeName;

async fn config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

pub async fn sns_client() -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&config().await)
}

/// Path-style, as masq itself addresses a custom endpoint.
pub async fn s3_client() -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(&config().await)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// A FIFO queue `<name>-<random>.fifo`; returns its URL.
pub async fn create_fifo_queue(sqs: &SqsClient, name: &str) -> String {
    sqs.create_queue()
        .queue_name(format!("{name}-{}.fifo", random_hex(4)))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot create a FIFO queue at {}: {e:?}", endpoint()))
        .queue_url
        .expect("queue url")
}

/// A topic with `queue_url` subscribed to it, raw message delivery on or off; returns the
/// topic's ARN.
pub async fn topic_feeding(sqs: &SqsClient, queue_url: &str, name: &str, raw: bool) -> String {
    let sns = sns_client().await;
    let arn = sns
        .create_topic()
        .name(format!("{name}-{}", random_hex(4)))
        .send()
        .await
        .expect("create topic")
        .topic_arn
        .expect("topic arn");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue arn");
    sns.subscribe()
        .topic_arn(&arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", if raw { "true" } else { "false" })
        .send()
        .await
        .expect("subscribe");
    arn
}

/// A fresh bucket; returns its name.
pub async fn create_bucket(name: &str) -> String {
    let bucket = format!("{name}-{}", random_hex(4));
    s3_client()
        .await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot create bucket {bucket}: {e:?}"));
    bucket
}

/// The keys in `bucket`, sorted.
pub async fn object_keys(bucket: &str) -> Vec<String> {
    let out = s3_client()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list objects");
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect();
    keys.sort();
    keys
}
