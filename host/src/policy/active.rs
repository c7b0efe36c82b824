//! The policy in service, swappable between batches. A batch takes the current version when
//! it starts and keeps it to the end, so a swap never splits a batch between two versions.

use super::{PolicyHost, Record};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

pub struct ActivePolicy {
    current: RwLock<Arc<PolicyHost>>,
}

impl ActivePolicy {
    pub fn new(host: PolicyHost) -> ActivePolicy {
        ActivePolicy {
            current: RwLock::new(Arc::new(host)),
        }
    }

    pub fn current(&self) -> Arc<PolicyHost> {
        self.current.read().expect("policy lock").clone()
    }

    /// Puts `host` in service and returns the version it replaced.
    pub fn replace(&self, host: PolicyHost) -> Arc<PolicyHost> {
        std::mem::replace(
            &mut *self.current.write().expect("policy lock"),
            Arc::new(host),
        )
    }
}

/// Recent real records, on which a new policy version must run without trapping before it
/// may serve. Held in memory only, like every record in flight.
pub struct Canary {
    records: Mutex<VecDeque<Record>>,
}

/// Records kept for the canary batch.
const CANARY_SIZE: usize = 32;
/// Records taken from each batch, so the canary follows the traffic.
const PER_BATCH: usize = 4;

impl Canary {
    pub fn new() -> Canary {
        Canary {
            records: Mutex::new(VecDeque::with_capacity(CANARY_SIZE)),
        }
    }

    pub fn remember(&self, batch: &[Record]) {
        let mut records = self.records.lock().expect("canary lock");
        for r in batch.iter().take(PER_BATCH) {
            if records.len() == CANARY_SIZE {
                records.pop_front();
            }
            records.push_back(r.clone());
        }
    }

    pub fn sample(&self) -> Vec<Record> {
        self.records
            .lock()
            .expect("canary lock")
            .iter()
            .cloned()
            .collect()
    }
}
