//! Integration tests: the real `masq` binary against a real PostgreSQL and a real SQS server
//! (fauxqs), each test on its own queue and table. `just test` starts the services and
//! builds the policies first.

mod support;

mod attributes;
mod authors_kit;
mod bad_input;
mod cli_errors;
mod fifo;
mod hostile_sender;
mod hot_swap;
mod http_proxy;
mod ledger;
mod ledger_migration;
mod ledger_pack;
mod load_blocks;
mod login_data_set;
mod pgbouncer;
mod pii_at_rest;
mod policy_languages;
mod receivers;
mod redelivery;
mod s3_payloads;
mod sandbox;
mod sealing;
mod shutdown;
mod silent_peers;
mod sns;
mod sql_errors;
