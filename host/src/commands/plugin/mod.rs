//! For policy authors: `masq plugin check` (everything `masq run` checks at load, with no
//! service) and `masq plugin test` (a policy on sample records, with PII-leak checks).

pub mod check;
pub mod test;
