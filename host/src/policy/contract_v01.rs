//! Contract 0.1 (`wit/policy.wit`): its generated bindings, and the calls into a 0.1 policy.
//! A 0.1 policy gets one record at a time in a list, every field with its name; masq keeps
//! loading such policies unchanged. 0.1's value types double as the host's own (`Field`,
//! `Value`, `Outcome`), so its outcomes need no conversion.

use super::LogSecrets;
use super::imports::Sandbox;
use super::record::Record;
use crate::pipeline::scrub::Secrets;
use masq::policy::types;
use std::sync::Arc;
use wasmtime::Store;

contract_bindings!("../wit", "masq:policy/seal.seal");

/// The name masq prints for this contract.
pub const CONTRACT: &str = "masq:policy@0.1.0";

/// Calls `transform` on a batch. The records are copied into 0.1's form (metadata without
/// attributes); the copy is also what the policy's log lines are scrubbed against.
pub fn transform(
    plugin: &PolicyPlugin,
    store: &mut Store<Sandbox>,
    records: &[Record],
) -> wasmtime::Result<Vec<types::Outcome>> {
    let wire: Arc<Vec<types::Record>> = Arc::new(records.iter().map(to_wire).collect());
    store.data_mut().log_secrets = Some(wire.clone());
    plugin.masq_policy_policy().call_transform(store, &wire)
}

fn to_wire(record: &Record) -> types::Record {
    let m = &record.metadata;
    types::Record {
        metadata: types::Metadata {
            message_id: m.message_id.clone(),
            sent_timestamp_ms: m.sent_timestamp_ms,
            receive_count: m.receive_count,
            source: m.source.to_string(),
        },
        fields: record.fields.clone(),
    }
}

impl LogSecrets for Vec<types::Record> {
    fn scrub(&self, text: &str, pii: &[String]) -> String {
        let mut secrets = Secrets::default();
        for record in self {
            for field in &record.fields {
                secrets.add(&field.name, &field.value, pii.contains(&field.name));
            }
        }
        secrets.scrub(text)
    }
}
