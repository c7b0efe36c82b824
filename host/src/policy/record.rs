//! A decoded message as the host holds it, whichever contract the policy in service speaks:
//! each contract module turns these into its own wire form. The values are 0.1's WIT types
//! (`Field`, `Value`), which the sink writes as they are.

use super::Field;

/// Facts about the message a record came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub message_id: String,
    pub sent_timestamp_ms: u64,
    pub receive_count: u32,
    /// Where the message came from: the queue URL, or `file:<path>`. Shared by every record
    /// of a batch.
    pub source: std::sync::Arc<str>,
    /// The message's attributes (SQS message and system attributes, SNS topic ARN), as text
    /// pairs. 0.2 policies see them; 0.1 has no place for them.
    pub attributes: Vec<(String, String)>,
}

/// One message, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub metadata: Metadata,
    /// The members of the message's JSON object, in order; names are unique (the decoder
    /// refuses a body with a duplicate member).
    pub fields: Vec<Field>,
}
