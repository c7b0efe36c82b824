//! What the pipeline decides for each message before the sink writes it.

use crate::policy::{Field, Value};
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

impl Provenance {
    pub fn of(policy: &crate::policy::PolicyHost) -> Provenance {
        Provenance {
            name: policy.info().name.clone(),
            version: policy.info().version.clone(),
            digest: policy.digest().to_string(),
        }
    }
}

/// One output line: `{"id": ..., "row": {...}}`, `{"id": ..., "dead_letter": {...}}` or
/// `{"id": ..., "dropped": true}`. `masq run --dry-run` prints the same shape.
pub fn verdict_json(id: &str, verdict: &Verdict) -> serde_json::Value {
    match verdict {
        Verdict::Row(fields) => {
            let row: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|f| (f.name.clone(), value_json(&f.value)))
                .collect();
            serde_json::json!({ "id": id, "row": row })
        }
        Verdict::Drop => serde_json::json!({ "id": id, "dropped": true }),
        Verdict::Dead { stage, reason } => {
            serde_json::json!({ "id": id, "dead_letter": { "stage": stage.as_str(), "reason": reason } })
        }
    }
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => (*i).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Into::into)
            .unwrap_or(serde_json::Value::Null),
        Value::Text(t) => t.clone().into(),
        Value::Json(j) => serde_json::from_str(j).unwrap_or_else(|_| j.clone().into()),
    }
}
