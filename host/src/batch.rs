//! What the pipeline decides for each message before the sink writes it.

use crate::policy::Field;
use crate::source::Message;

/// Where in the pipeline a message was refused; stored with every dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The body is not a JSON object masq can read.
    Decode,
    /// The policy rejected the record, or failed on it.
    Policy,
    /// The policy's output does not fit the table.
    Sink,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Policy => "policy",
            Stage::Sink => "sink",
        }
    }
}

/// The fate of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write this row.
    Row(Vec<Field>),
    /// Acknowledge, write nothing.
    Drop,
    /// Write to the dead letters with this reason.
    Dead { stage: Stage, reason: String },
}

/// A message and its verdict.
#[derive(Debug, Clone)]
pub struct Item {
    pub message: Message,
    pub verdict: Verdict,
}

/// Which policy decided a batch; recorded in the ledger and with every dead letter.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub name: String,
    pub version: String,
    pub digest: String,
}
