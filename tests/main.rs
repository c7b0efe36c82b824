//! Integration tests: the real `masq` binary against a real PostgreSQL and a real SQS server
//! (fauxqs), each test on its own queue and table. `just test` starts the services and
//! builds the policies first.

mod support;

mod authors_kit;
mod bad_input;
mod cli_errors;
mod hostile_sender;
mod hot_swap;
mod ledger;
mod ledger_migration;
mod login_data_set;
mod pgbouncer;
mod pii_at_rest;
mod policy_languages;
mod receivers;
mod redelivery;
mod sandbox;
mod sealing;
mod shutdown;
mod silent_peers;
mod sql_errors;
