//! How `masq seed` sends bodies in the shapes AWS users send them: straight to a queue or
//! published to an SNS topic; large bodies offloaded to S3 behind an Extended Client pointer;
//! to a FIFO queue or topic with message groups; with message attributes. It only sends: the
//! receiving side of each shape is in `sqs`, `envelope`, `s3_payload` and `fifo`.

use super::fifo;
use super::s3_payload::Pointer;
use super::sqs::SqsSource;
use anyhow::{Context, anyhow, bail};
use futures_util::stream::{self, TryStreamExt};

/// The entries of one batch call (`SendMessageBatch` or SNS `PublishBatch`), each numbered by
/// its position in `chunk`. SQS and SNS each have their own entry and attribute types, built
/// the same way but for the name of the body (`$body`: `message_body`, `message`).
macro_rules! batch_entries {
    ($entry:ty, $body:ident, $value:ty, $chunk:expr) => {
        $chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let attributes = (!m.attributes.is_empty()).then(|| {
                    m.attributes
                        .iter()
                        .map(|(k, v)| {
                            let value = <$value>::builder()
                                .data_type(data_type(k))
                                .string_value(v)
                                .build()
                                .expect("data type set");
                            (k.clone(), value)
                        })
                        .collect::<std::collections::HashMap<String, $value>>()
                });
                <$entry>::builder()
                    .id(i.to_string())
                    .$body(&m.body)
                    .set_message_group_id(m.group.clone())
                    .set_message_deduplication_id(m.dedup.clone())
                    .set_message_attributes(attributes)
                    .build()
                    .expect("id and body set")
            })
            .collect()
    };
}

/// Where the messages go.
pub enum Destination {
    Queue(Box<SqsSource>),
    Topic {
        client: aws_sdk_sns::Client,
        arn: String,
    },
}

impl Destination {
    fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => q.queue_url(),
            Destination::Topic { arn, .. } => arn,
        }
    }

    fn is_fifo(&self) -> bool {
        fifo::is_fifo(self.name())
    }
}

/// Bodies larger than `over` bytes go to `bucket`, and the message carries a pointer.
pub struct Offload {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub over: usize,
}

/// One message as sent.
struct Outgoing {
    body: String,
    group: Option<String>,
    dedup: Option<String>,
    attributes: Vec<(String, String)>,
}

/// Sends bodies to a destination in the shapes asked for.
pub struct Sender {
    pub destination: Destination,
    pub offload: Option<Offload>,
    /// FIFO: message `i` (counted over the whole run) goes to group `group-{i % groups}`.
    pub groups: u32,
    /// String attributes every message carries.
    pub attributes: Vec<(String, String)>,
    /// Makes S3 keys and FIFO deduplication ids unique to this run, so sending the same data
    /// again is not deduplicated away.
    nonce: String,
    /// Messages sent so far (group and deduplication ids count on from here).
    sent: u64,
}

/// Send calls in flight at once where order does not matter.
const CONCURRENCY: usize = 16;

impl Sender {
    pub fn new(
        destination: Destination,
        offload: Option<Offload>,
        groups: Option<u32>,
        attributes: Vec<(String, String)>,
    ) -> anyhow::Result<Sender> {
        let fifo = destination.is_fifo();
        let groups = match (fifo, groups) {
            (true, Some(0)) => bail!("--fifo-groups must be at least 1"),
            (true, groups) => groups.unwrap_or(1),
            (false, Some(_)) => bail!(
                "--fifo-groups needs a FIFO queue or topic (its name ends in .fifo); {} is not one",
                destination.name()
            ),
            (false, None) => 0,
        };
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).context("no randomness for the run's ids")?;
        Ok(Sender {
            destination,
            offload,
            groups,
            attributes,
            nonce: hex::encode(nonce),
            sent: 0,
        })
    }

    pub fn name(&self) -> &str {
        self.destination.name()
    }

    /// Sends `bodies` in order. On a FIFO destination one call at a time, so each group gets
    /// its messages in the order given; elsewhere several calls at once.
    pub async fn send(&mut self, bodies: Vec<String>) -> anyhow::Result<u64> {
        let n = bodies.len() as u64;
        let mut outgoing = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.into_iter().enumerate() {
            let seq = self.sent + i as u64;
            let (body, mut attributes) = self.offloaded(body, seq).await?;
            attributes.extend(self.attributes.iter().cloned());
            let (group, dedup) = if self.groups > 0 {
                (
                    Some(format!("group-{}", seq % self.groups as u64)),
                    Some(format!("{}-{seq}", self.nonce)),
                )
            } else {
                (None, None)
            };
            outgoing.push(Outgoing {
                body,
                group,
                dedup,
                attributes,
            });
        }
        self.sent += n;
        let chunks: Vec<&[Outgoing]> = outgoing.chunks(10).collect();
        let at_once = if self.groups > 0 { 1 } else { CONCURRENCY };
        let this = &*self;
        stream::iter(chunks.into_iter().map(Ok::<_, anyhow::Error>))
            .try_for_each_concurrent(at_once, |chunk| async move { this.send_chunk(chunk).await })
            .await?;
        Ok(n)
    }

    /// The body to send, and the attributes it adds: a pointer to an S3 object holding it, if
    /// it is over the offload size.
    async fn offloaded(
        &self,
        body: String,
        seq: u64,
    ) -> anyhow::Result<(String, Vec<(String, String)>)> {
        let Some(offload) = self.offload.as_ref().filter(|o| body.len() > o.over) else {
            return Ok((body, Vec::new()));
        };
        let pointer = Pointer {
            bucket: offload.bucket.clone(),
            key: format!("masq-seed/{}/{seq}", self.nonce),
        };
        let size = body.len();
        offload
            .client
            .put_object()
            .bucket(&pointer.bucket)
            .key(&pointer.key)
            .body(body.into_bytes().into())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot store a payload at {} ({}): check that the bucket exists and AWS_ENDPOINT_URL",
                    pointer.url(),
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
        // The attribute the Extended Client sets on a message whose payload it offloaded.
        Ok((
            pointer.body(),
            vec![("ExtendedPayloadSize".to_string(), size.to_string())],
        ))
    }

    async fn send_chunk(&self, chunk: &[Outgoing]) -> anyhow::Result<()> {
        match &self.destination {
            Destination::Queue(queue) => {
                let entries = batch_entries!(
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry,
                    message_body,
                    aws_sdk_sqs::types::MessageAttributeValue,
                    chunk
                );
                queue.send_entries(entries).await
            }
            Destination::Topic { client, arn } => {
                let entries = batch_entries!(
                    aws_sdk_sns::types::PublishBatchRequestEntry,
                    message,
                    aws_sdk_sns::types::MessageAttributeValue,
                    chunk
                );
                let out = client
                    .publish_batch()
                    .topic_arn(arn)
                    .set_publish_batch_request_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "cannot publish to topic {arn} ({}): check the topic ARN and AWS_ENDPOINT_URL",
                            aws_sdk_sns::error::DisplayErrorContext(e)
                        )
                    })?;
                if let Some(f) = out.failed().first() {
                    bail!(
                        "topic {arn} refused {} of {} messages: {} ({})",
                        out.failed().len(),
                        chunk.len(),
                        f.message().unwrap_or("no message"),
                        f.code()
                    );
                }
                Ok(())
            }
        }
    }
}

/// The data type SQS and SNS expect for an attribute: the Extended Client's payload size is a
/// number, everything else masq sends is a string.
fn data_type(name: &str) -> &'static str {
    if name == "ExtendedPayloadSize" { "Number" } else { "String" }
}
