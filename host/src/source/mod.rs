//! Where messages come from. A source hands out `Message`s and later acknowledges (deletes)
//! or releases them; it never acknowledges anything the sink has not committed.

pub mod sqs;

/// One message as received, before decoding.
#[derive(Debug, Clone)]
pub struct Message {
    /// The queue's id for the message; stable across redeliveries.
    pub id: String,
    /// The handle that acknowledges or releases this delivery.
    pub receipt: String,
    /// The raw body, exactly as sent.
    pub body: String,
    /// When the queue accepted the message, ms since the Unix epoch.
    pub sent_ms: u64,
    /// Deliveries so far, this one included.
    pub receive_count: u32,
}
