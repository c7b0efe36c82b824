//! `masq seed`: fills a queue, from a JSONL file or with synthetic login events of which
//! about 1% are malformed in the ways real queues are (see `source::synthetic`); straight to
//! the queue or through an SNS topic, with large bodies offloaded to S3, to FIFO groups, with
//! message attributes (see `source::sender`).

use crate::config::SeedConfig;
use crate::source::sender::{Destination, Offload, Sender};
use crate::source::sqs::{self, SqsSource};
use crate::source::synthetic;

pub async fn run(config: &SeedConfig) -> anyhow::Result<String> {
    let (aws, _) = sqs::aws_config(config.timeouts).await?;
    let destination = match (&config.topic_arn, &config.queue_url) {
        (Some(arn), _) => Destination::Topic {
            client: aws_sdk_sns::Client::new(&aws),
            arn: arn.clone(),
        },
        (None, Some(url)) => {
            Destination::Queue(Box::new(SqsSource::connect(url, config.timeouts).await?))
        }
        (None, None) => anyhow::bail!("nowhere to send: pass --queue-url or --topic-arn"),
    };
    let offload = config.s3_offload_bucket.as_ref().map(|bucket| Offload {
        client: sqs::s3_client(&aws),
        bucket: bucket.clone(),
        over: config.s3_offload_over,
    });
    let mut sender = Sender::new(
        destination,
        offload,
        config.fifo_groups,
        config.attributes.clone(),
    )?;
    if let Some(file) = &config.file {
        let sent = synthetic::from_file(&mut sender, file).await?;
        return Ok(format!(
            "sent {sent} messages from {} to {}\n",
            file.display(),
            sender.name()
        ));
    }
    let (sent, malformed) = synthetic::send(&mut sender, config.count, config.seed).await?;
    Ok(format!(
        "sent {sent} messages ({malformed} malformed on purpose) to {}\n",
        sender.name()
    ))
}
