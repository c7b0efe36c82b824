//! decode -> transform: the verdict for each message of a batch, before anything is written.
//! The pipeline's workers reach it through the `Decide` trait (the seam their unit tests
//! use); `masq plugin test` calls `decide` directly.

use super::batch::{Item, Provenance, Stage, Verdict};
use super::scrub::scrub_declared;
use crate::policy::{ActivePolicy, BatchError, Canary, Metadata, Outcome, PolicyHost, Record};
use crate::sink::sql::storable;
use crate::source::decode::decode_body;
use crate::source::{MAX_BODY_BYTES, Message};
use rustc_hash::FxHashSet as HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A batch decided by one policy version.
pub struct Decided {
    pub items: Vec<Item>,
    pub health: PolicyHealth,
    /// The version that decided all of it, as the ledger records it.
    pub provenance: Provenance,
}

/// The policy step of the pipeline, as a worker sees it.
pub trait Decide: Send + Sync + 'static {
    /// The verdict for every message of the batch, by the version in service when it starts.
    fn decide(&self, source: &str, batch: Vec<Message>) -> impl Future<Output = Decided> + Send;
}

/// The policy in service (swappable while running), and the canary that remembers recent
/// records for checking the next version.
pub struct PolicyStep {
    pub active: Arc<ActivePolicy>,
    pub canary: Option<Arc<Canary>>,
}

impl Decide for PolicyStep {
    async fn decide(&self, source: &str, batch: Vec<Message>) -> Decided {
        // The version in service when the batch starts decides all of it, even if a swap
        // happens meanwhile; the ledger names exactly this version.
        let policy = self.active.current();
        let provenance = Provenance::of(&policy);
        let (items, health) = decide(&policy, source, batch, self.canary.as_deref()).await;
        Decided {
            items,
            health,
            provenance,
        }
    }
}

/// Decodes and transforms a batch: the verdict for every message, in order. Duplicates of a
/// message id within the batch (a redelivery that overtook the first copy) are acknowledged
/// with the first copy and not written again.
pub async fn decide(
    policy: &Arc<PolicyHost>,
    source_name: &str,
    batch: Vec<Message>,
    canary: Option<&Canary>,
) -> (Vec<Item>, PolicyHealth) {
    let source: Arc<str> = Arc::from(source_name);
    // A message id seen earlier in the same batch: judged once (ids borrowed, not copied).
    let repeated: Vec<bool> = {
        let mut seen = HashSet::with_capacity_and_hasher(batch.len(), Default::default());
        batch.iter().map(|m| !seen.insert(m.id.as_str())).collect()
    };
    let mut items = Vec::with_capacity(batch.len());
    let mut duplicates = Vec::new();
    for (message, repeated) in batch.into_iter().zip(repeated) {
        if !repeated {
            items.push(Item {
                verdict: Verdict::Drop,
                message,
            });
        } else {
            duplicates.push(message);
        }
    }
    let mut records = Vec::with_capacity(items.len());
    let mut record_of = Vec::with_capacity(items.len());
    for (i, item) in items.iter_mut().enumerate() {
        if let Some(why) = &item.message.unreadable {
            item.verdict = Verdict::Dead {
                stage: Stage::Decode,
                reason: why.clone(),
            };
            continue;
        }
        if item.message.body.len() > item.message.body_limit {
            let limit = item.message.body_limit;
            item.verdict = Verdict::Dead {
                stage: Stage::Decode,
                reason: if limit == MAX_BODY_BYTES {
                    format!(
                        "message body of {} bytes is over the {MAX_BODY_BYTES} bytes masq decodes (SQS's own maximum)",
                        item.message.body.len()
                    )
                } else {
                    format!(
                        "message body of {} bytes is over the {limit} bytes masq decodes (--s3-max-payload-bytes)",
                        item.message.body.len()
                    )
                },
            };
            continue;
        }
        match decode_body(&item.message.body) {
            Ok(fields) => {
                records.push(Record {
                    metadata: Metadata {
                        message_id: item.message.id.clone(),
                        sent_timestamp_ms: item.message.sent_ms,
                        receive_count: item.message.receive_count,
                        source: source.clone(),
                        // Moved, not copied: nothing after the policy reads them.
                        attributes: std::mem::take(&mut item.message.attributes),
                    },
                    fields,
                });
                record_of.push(i);
            }
            Err(reason) => {
                item.verdict = Verdict::Dead {
                    stage: Stage::Decode,
                    reason: storable(&reason).into_owned(),
                }
            }
        }
    }
    if let Some(canary) = canary {
        canary.remember(&records);
    }
    let policy_started = Instant::now();
    let (records, outcomes) = transform(policy, records).await;
    let mut health = PolicyHealth {
        evaluated: outcomes.len() as u64,
        policy_time: policy_started.elapsed(),
        ..PolicyHealth::default()
    };
    for ((i, outcome), record) in record_of.into_iter().zip(outcomes).zip(&records) {
        // Whatever the policy says goes into a stored reason without the record's values.
        let clean = |reason: &str| {
            storable(&scrub_declared(reason, &record.fields, policy.pii())).into_owned()
        };
        items[i].verdict = match outcome {
            Ok(Outcome::Keep(fields)) => Verdict::Row(fields),
            Ok(Outcome::Drop) => Verdict::Drop,
            Ok(Outcome::Reject(reason)) => Verdict::Dead {
                stage: Stage::Policy,
                reason: clean(&bounded(reason)),
            },
            // The output broke a host limit (a field name too long for a column, too many
            // fields): that is the record's content passed through, so it costs the record,
            // never the policy's standing with the breaker.
            Err(e @ BatchError::Output(_)) => Verdict::Dead {
                stage: Stage::Policy,
                reason: clean(&e.to_string()),
            },
            Err(e) => {
                health.failed += 1;
                let reason = clean(&e.to_string());
                health.last_error = reason.clone();
                Verdict::Dead {
                    stage: Stage::Policy,
                    reason,
                }
            }
        };
    }
    // Redelivered copies ride along as drops; the ledger already has (or is getting) the id,
    // so they write nothing, and their receipts are deleted with the batch.
    items.extend(duplicates.into_iter().map(|message| Item {
        message,
        verdict: Verdict::Drop,
    }));
    (items, health)
}

/// How the policy fared on a batch: records it ran on, records it failed on.
#[derive(Debug, Default)]
pub struct PolicyHealth {
    pub evaluated: u64,
    pub failed: u64,
    pub last_error: String,
    pub policy_time: Duration,
}

/// Runs the policy on a blocking thread; a failing batch is split to find its bad records
/// (see `PolicyHost::transform_isolated`).
/// Hands the records back with their outcomes: their values are what reasons are scrubbed of.
async fn transform(
    policy: &Arc<PolicyHost>,
    records: Vec<Record>,
) -> (Vec<Record>, Vec<Result<Outcome, BatchError>>) {
    if records.is_empty() {
        return (records, Vec::new());
    }
    let policy = policy.clone();
    tokio::task::spawn_blocking(move || {
        let outcomes = policy.transform_isolated(&records);
        (records, outcomes)
    })
    .await
    .expect("the policy runs in a sandbox and cannot panic the host")
}

/// Most bytes of a policy's reject reason that are kept: the reason is stored with every dead
/// letter and read by people; a policy must not be able to fill the table through it.
const MAX_REASON_BYTES: usize = 2048;

fn bounded(reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut cut = MAX_REASON_BYTES;
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}... (reason cut from {} bytes)",
        &reason[..cut],
        reason.len()
    )
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(3000);
        let cut = bounded(long.clone());
        assert!(
            cut.len() < 2100 && cut.ends_with("(reason cut from 6000 bytes)"),
            "{}",
            cut.len()
        );
    }
}
