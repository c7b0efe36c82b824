//! Where messages come from: an SQS queue (`masq run`), the lines of a file or stdin
//! (`masq load`, `masq plugin test`), or the dead letters (`masq replay`). Each is a `Source`
//! the one pipeline reads from. A source hands out `Message`s and later acknowledges or
//! releases them; it never acknowledges anything the sink has not committed.

pub mod dead_letters;
pub mod decode;
pub mod envelope;
pub mod fifo;
pub mod jsonl;
pub mod s3_payload;
pub mod sender;
pub mod sqs;
pub mod synthetic;

use std::future::Future;
use std::time::{Duration, Instant};

/// Largest body masq decodes: SQS's own maximum message size (1 MiB). A larger body (a line
/// of `masq load`, say) is one dead letter; it never reaches the policy, where its size could
/// exhaust the sandbox's memory and count against the policy.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One message as received, before decoding.
#[derive(Debug, Clone)]
pub struct Message {
    /// The source's id for the message; stable across redeliveries.
    pub id: String,
    /// The handle that acknowledges or releases this delivery.
    pub receipt: String,
    /// The raw body, exactly as sent.
    pub body: String,
    /// When the source accepted the message, ms since the Unix epoch.
    pub sent_ms: u64,
    /// Deliveries so far, this one included.
    pub receive_count: u32,
    /// When masq received it: the start of its batch's latency.
    pub received_at: Instant,
    /// Why the body could not be read as it was sent (not UTF-8, too long), if so: the
    /// message becomes a dead letter with this reason, whatever its body looks like.
    pub unreadable: Option<String>,
    /// What the source knows about the message besides its body, as (name, value): SQS
    /// system attributes by their AWS names (`MessageGroupId`, `SentTimestamp`, ...), message
    /// attributes by their own names, and facts of an unwrapped delivery (`sns.topic_arn`,
    /// `sns.message_id`, `sns.timestamp`, `s3.bucket`, `s3.key`). Empty for files and
    /// dead letters. 0.2 policies see them in each record's metadata.
    pub attributes: Vec<(String, String)>,
    /// Largest body masq decodes for this message: `MAX_BODY_BYTES`, or the S3 payload cap
    /// for a body fetched from S3 (`--s3-max-payload-bytes`).
    pub body_limit: usize,
}

impl Message {
    pub fn new(
        id: String,
        receipt: String,
        body: String,
        sent_ms: u64,
        receive_count: u32,
    ) -> Message {
        Message {
            id,
            receipt,
            body,
            sent_ms,
            receive_count,
            received_at: Instant::now(),
            unreadable: None,
            attributes: Vec::new(),
            body_limit: MAX_BODY_BYTES,
        }
    }
}

/// A place messages come from, as the pipeline sees it. Receipts are the source's handles:
/// SQS receipt handles, line numbers, dead-letter ids.
pub trait Source: Clone + Send + Sync + 'static {
    /// Names the source in each record's metadata and in logs.
    fn name(&self) -> &str;

    /// Receive calls that may run at once (a file is read by one reader).
    fn max_receivers(&self) -> usize;

    /// Most messages one receive returns (SQS: 10). The pipeline buffers a few batches'
    /// worth of receives, counted in these.
    fn max_chunk(&self) -> usize {
        10
    }

    /// Whether an empty receive means the input has ended for good (a file), rather than
    /// that nothing is waiting right now (a queue).
    fn finite(&self) -> bool;

    /// Some messages, waiting up to `wait` for the first; empty when there are none.
    fn receive(&self, wait: Duration) -> impl Future<Output = anyhow::Result<Vec<Message>>> + Send;

    /// The messages are committed: the source may forget them (SQS deletes them).
    fn acknowledge(&self, receipts: &[&str]) -> impl Future<Output = ()> + Send;

    /// Whether acknowledging can make messages available that a receive could not get before
    /// (a FIFO queue hands out a group's next messages only once the earlier ones are
    /// deleted). A drain then waits for the acknowledgement before it may end.
    fn acknowledge_unlocks(&self) -> bool {
        false
    }

    /// The messages were not committed: the source should offer them again after `delay`
    /// (SQS makes them visible again; a file cannot, and says so in the summary).
    fn release(&self, receipts: &[&str], delay: Duration) -> impl Future<Output = ()> + Send;

    /// How often held messages must be claimed again so nobody else takes them (SQS's
    /// visibility timeout); `None` when nobody else can.
    fn hold_period(&self) -> Option<Duration>;

    /// Claims held messages for another `hold_period`.
    fn extend(&self, receipts: &[&str]) -> impl Future<Output = ()> + Send;
}
