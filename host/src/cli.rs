//! The command line, and nothing else: clap structs, with the flags several commands share
//! declared once in groups (`PolicyArgs`, `KeyArgs`, `DatabaseArgs`, ...) and flattened in.
//! `config` turns them into validated settings. Every flag also reads an environment
//! variable, so the same binary runs from a shell, a systemd unit or a Kubernetes manifest.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "masq",
    version,
    about = "Masks PII on its way from an SQS queue to PostgreSQL, through sandboxed WebAssembly policies.",
    after_help = "\
Examples:
  masq db init --database-url postgres://localhost/app
  masq keygen > masq.key && chmod 600 masq.key
  masq seed --queue-url $QUEUE --count 10000
  masq run --plugin target/plugins/sha256-masker.wasm --queue-url $QUEUE \\
           --database-url postgres://localhost/app --key-file masq.key --drain

AWS settings come from the standard chain: AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE,
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, instance roles."
)]
pub struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, env = "MASQ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Polls a queue, runs every message through a policy, writes rows to PostgreSQL.
    /// Replacing the policy or key file (or SIGHUP) swaps in the new version while running.
    #[command(after_help = "\
Examples:
  masq run --plugin sha256-masker.wasm --queue-url $QUEUE --database-url $DATABASE_URL --key-file masq.key
  masq run --plugin sha256-masker.wasm --queue-url $QUEUE --database-url $DATABASE_URL --unkeyed --drain
  masq run ... --policy-config 'mask=email:masked_email' --policy-config 'required=email'")]
    Run(RunArgs),
    /// Creates the target table (the login-events DDL), masq's ledger and its dead-letter table;
    /// moves the ledger of an earlier masq into the partitioned one.
    #[command(
        after_help = "Example:\n  masq db init --database-url postgres://localhost/app --table user_logins"
    )]
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Sends messages to a queue (or through an SNS topic): the lines of a JSONL file, or N
    /// synthetic login events; large ones offloaded to S3, to FIFO groups, with attributes.
    #[command(after_help = "\
Examples:
  masq seed --queue-url $QUEUE --file messages.jsonl
  masq seed --queue-url $QUEUE --count 20000        # about 1% of them malformed
  masq seed --topic-arn $TOPIC --file messages.jsonl # through SNS
  masq seed --queue-url $QUEUE --file big.jsonl --s3-offload-bucket payloads
  masq seed --queue-url $QUEUE.fifo --count 900 --fifo-groups 3")]
    Seed(SeedArgs),
    /// Checks a policy without any service: world, imports, describe, configuration, size.
    #[command(
        after_help = "Example:\n  masq plugin check target/plugins/sha256-masker.wasm --policy-config mask=ip:masked_ip"
    )]
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Runs a JSONL file (or stdin) through a policy into the table, as `run` does with a
    /// queue: for backfills. Each line's id is `<source-id>:<line>`, so loading the same file
    /// again writes nothing twice.
    #[command(after_help = "\
Examples:
  masq load --plugin sha256-masker.wasm --input backfill.jsonl --key-file masq.key
  zcat 2023.jsonl.gz | masq load --plugin sha256-masker.wasm --input - --source-id 2023 --key-file masq.key")]
    Load(LoadArgs),
    /// Sends a table's dead letters through a (fixed) policy: those that now pass are written
    /// once and leave the dead letters; the rest stay with their new reason.
    #[command(
        after_help = "Example:\n  masq replay --plugin sha256-masker.wasm --database-url $DATABASE_URL --key-file masq.key"
    )]
    Replay(ReplayArgs),
    /// Shows the policy each consumer of a table serves, since when, recent refusals, the
    /// ledger's size and oldest partition, and how many messages each policy version handled.
    #[command(
        after_help = "Example:\n  masq status --database-url postgres://localhost/app --table user_logins"
    )]
    Status(StatusArgs),
    /// Dead letters: `list` (ids, stages, reasons; no body), `show` (bodies, for key holders),
    /// `seal` (encrypt bodies an earlier masq stored in clear).
    #[command(name = "dead-letters")]
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Prints a new key file (one fresh 256-bit key) to stdout, or with --add-to rotates an
    /// existing one: adds a fresh key, makes it active, keeps the old keys.
    #[command(after_help = "\
Examples:
  masq keygen > masq.key && chmod 600 masq.key
  masq keygen --add-to masq.key      # rotation: prints the new key id; old tokens still reveal")]
    Keygen(KeygenArgs),
    /// Turns tokens sealed by a policy's `seal` (e.g. seal-masker) back into their values,
    /// one per line in input order. Prints nothing unless every token reveals.
    #[command(after_help = "\
Examples:
  masq reveal --key-file masq.key 'k3f9a2c.T1Ccp7...'
  psql -Atc 'SELECT masked_ip FROM user_logins' | masq reveal --key-file masq.key")]
    Reveal(RevealArgs),
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Creates what `masq run` writes to, and moves an earlier masq's ledger (keeping the
    /// entries sent within --ledger-retention); safe to run again.
    Init(DbInitArgs),
    /// Packs a table's past days in the ledger now: their entries move from the day's
    /// partition (about 105 bytes each) into sorted arrays (about 22). Consumers do it on their
    /// own, for days over for an hour, when they start and every hour; safe to run meanwhile.
    #[command(
        after_help = "Examples:\n  masq db pack --table user_logins\n  masq db pack --table user_logins --day 2026-11-30"
    )]
    Pack(DbPackArgs),
}

#[derive(Debug, Args)]
pub struct DbPackArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Table whose ledger to pack.
    #[arg(long, env = "MASQ_TABLE", default_value = "user_logins")]
    pub table: String,
    /// A UTC day (YYYY-MM-DD) to pack, even today; repeatable. Default: every day that has
    /// entries to pack and has been over for an hour.
    #[arg(long = "day")]
    pub days: Vec<chrono::NaiveDate>,
}

#[derive(Debug, Args)]
pub struct DbInitArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Table to create with the login-events columns, unless it exists.
    #[arg(long, env = "MASQ_TABLE", default_value = "user_logins")]
    pub table: String,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Counts by stage and the newest dead letters: id, time, message id, how the body is
    /// stored, stage and reason. Needs no key: no body is shown.
    List(DeadLettersArgs),
    /// The original bodies of the given dead letters, one JSON line each, opened with the key
    /// file they were sealed under. Prints nothing unless every one opens.
    #[command(after_help = "Example:\n  masq dead-letters show 17 18 --key-file masq.key")]
    Show {
        #[command(flatten)]
        target: DeadLettersArgs,
        /// Dead-letter ids, as `list` shows them.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// The key file masq ran with (a rotated file keeps its older keys).
        #[arg(long, env = "MASQ_KEY_FILE")]
        key_file: PathBuf,
    },
    /// Encrypts, in place, the bodies an earlier masq stored in clear, under the key file's
    /// active key. Safe to run again.
    Seal {
        #[command(flatten)]
        target: DeadLettersArgs,
        #[arg(long, env = "MASQ_KEY_FILE")]
        key_file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Loads and validates a policy; exits non-zero on any problem.
    Check(PluginCheckArgs),
    /// Runs a policy on a JSONL file of message bodies, with no queue or database; prints one
    /// JSON line per message (row, dead letter or dropped).
    #[command(after_help = "\
Examples:
  masq plugin test my-policy.wasm --input samples.jsonl --pii ip,device_id
  masq plugin test my-policy.wasm --input samples.jsonl --expect expected.jsonl --sent-at 2024-01-31")]
    Test(PluginTestArgs),
}

#[derive(Debug, Args)]
pub struct PluginTestArgs {
    /// The policy component to run.
    pub file: PathBuf,
    /// Message bodies, one per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Expected output (JSON lines as this command prints them); any difference fails.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// Input fields holding PII: fail if any of their values appears in any output field,
    /// whole or as a substring.
    #[arg(long, value_delimiter = ',')]
    pub pii: Vec<String>,
    #[command(flatten)]
    pub settings: PolicySettingsArgs,
    /// Key file for pseudonyms; without one, plain SHA-256 is used.
    #[arg(long, env = "MASQ_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The send date every message gets (UTC, YYYY-MM-DD), for reproducible output; default now.
    #[arg(long)]
    pub sent_at: Option<String>,
}

#[derive(Debug, Args)]
pub struct PluginCheckArgs {
    /// The policy component to check.
    pub file: PathBuf,
    #[command(flatten)]
    pub settings: PolicySettingsArgs,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Message bodies, one per line; `-` for stdin.
    #[arg(long)]
    pub input: PathBuf,
    /// Names the input in message ids (`<source-id>:<line>`); default the file name.
    #[arg(long)]
    pub source_id: Option<String>,
    /// Lines per batch (one policy call, one transaction). Large batches make the database's
    /// fixed cost per COPY (PostgreSQL 15 sets up a slot per buffered row) small per line.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Batches processed at once, each with its own database connection.
    #[arg(long, env = "MASQ_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// The send date the lines get (UTC, YYYY-MM-DD), e.g. the day the data is from. Default:
    /// the time this source id was first loaded into the table (now, the first time), so that
    /// loading the same input again finds its lines in the ledger.
    #[arg(long)]
    pub sent_at: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Refuse any policy file whose SHA-256 is not this (hex), at start and at every reload.
    #[arg(long, env = "MASQ_PLUGIN_SHA256")]
    pub plugin_sha256: Option<String>,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// What a message body may be wrapped in: `auto` unwraps SNS Notification envelopes
    /// (a queue subscribed to a topic without raw message delivery) and takes any other body
    /// as it is; `sns` requires an envelope on every message (others are dead letters);
    /// `none` never unwraps. See docs/aws-shapes.md.
    #[arg(long, env = "MASQ_ENVELOPE", default_value = "auto", value_parser = parse_envelope)]
    pub envelope: crate::source::envelope::Envelope,
    #[command(flatten)]
    pub s3: S3PayloadArgs,
    /// Serve Prometheus metrics (/metrics) and probes (/healthz, /readyz) on this address,
    /// e.g. 127.0.0.1:9187.
    #[arg(long, env = "MASQ_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Stop when the queue is empty and print a summary.
    #[arg(long, env = "MASQ_DRAIN")]
    pub drain: bool,
    /// Read and transform without writing or deleting anything: print each message's row,
    /// dead letter or duplicate as a JSON line, then hand every message back to the queue.
    /// Implies --drain.
    #[arg(long, env = "MASQ_DRY_RUN")]
    pub dry_run: bool,
    /// Most messages the policy and the database see in one batch (one transaction).
    #[arg(long, env = "MASQ_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,
    /// Longest time, in milliseconds, to wait for a batch to fill before processing it.
    #[arg(long, env = "MASQ_BATCH_WAIT_MS", default_value_t = 20)]
    pub batch_wait_ms: u64,
    /// Receive calls kept in flight: `auto` (masq adds receives while they come back full and
    /// the workers keep up, and removes them when they come back empty or the workers fall
    /// behind), or a fixed number.
    #[arg(long, env = "MASQ_RECEIVERS", default_value = "auto", value_parser = parse_receivers)]
    pub receivers: ReceiverCount,
    /// Most receive calls `--receivers auto` keeps in flight.
    #[arg(long, env = "MASQ_MAX_RECEIVERS", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_receivers: u16,
    /// Batches processed at once, each with its own database connection.
    #[arg(long, env = "MASQ_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Seconds a received message stays hidden from other consumers; masq extends it while
    /// the message is still being worked on.
    #[arg(long, env = "MASQ_VISIBILITY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(i32).range(5..=43200))]
    pub visibility_timeout: i32,
    /// Long-poll wait of each receive, in seconds (with --drain, at most 1 so the end of the
    /// queue is seen quickly).
    #[arg(long, env = "MASQ_WAIT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(i32).range(0..=20))]
    pub wait_seconds: i32,
    /// Seconds masq may hold messages without any progress (no batch committed, nothing
    /// handed back) before it logs an error and /healthz fails; 0 never.
    #[arg(long, env = "MASQ_STALL_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub stall_timeout: u64,
}

/// What `run`, `load` and `replay` share: the policy, the database, the table, the key, the
/// ledger.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub table: TableArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// How long the ledger remembers messages.
#[derive(Debug, Clone, Args)]
pub struct LedgerArgs {
    /// How long the ledger remembers a message, from its send time: `15d`, `36h`, `90m` or
    /// seconds. Entries older than this are dropped (a day's partition at a time). `masq run`
    /// refuses a value shorter than the queue's MessageRetentionPeriod plus its visibility
    /// timeout: SQS could redeliver a message the ledger no longer knows. `db init` keeps the
    /// entries of an earlier masq's ledger sent within it.
    #[arg(long, env = "MASQ_LEDGER_RETENTION", default_value = crate::sink::ledger::retention::DEFAULT,
          value_parser = parse_retention)]
    pub ledger_retention: crate::sink::ledger::retention::Retention,
}

fn parse_retention(s: &str) -> Result<crate::sink::ledger::retention::Retention, String> {
    crate::sink::ledger::retention::Retention::parse(s)
}

/// The policy file and its settings.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// The policy: a WebAssembly component implementing masq:policy/policy-plugin.
    #[arg(long, env = "MASQ_PLUGIN")]
    pub plugin: PathBuf,
    #[command(flatten)]
    pub settings: PolicySettingsArgs,
}

/// How a policy is configured and confined: every command that runs one.
#[derive(Debug, Clone, Args)]
pub struct PolicySettingsArgs {
    /// A policy setting as key=value; repeat for more. In the environment, separate with ';'.
    #[arg(long = "policy-config", env = "MASQ_POLICY_CONFIG", value_delimiter = ';', value_parser = parse_key_value)]
    pub policy_config: Vec<(String, String)>,
    /// Longest a policy may run on one batch, in milliseconds, before it is stopped.
    #[arg(long, env = "MASQ_POLICY_DEADLINE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub policy_deadline_ms: u64,
    /// Most linear memory a policy instance may use, in MiB.
    #[arg(long, env = "MASQ_POLICY_MEMORY_MB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub policy_memory_mb: u32,
}

/// The key behind the pseudonyms: `run`, `load`, `replay` (exactly one of the two).
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key file for keyed pseudonyms (make one with `masq keygen`). Never read by the policy.
    #[arg(long, env = "MASQ_KEY_FILE", conflicts_with = "unkeyed")]
    pub key_file: Option<PathBuf>,
    /// Use plain, unkeyed SHA-256 for pseudonyms. Anyone can reverse these for small value
    /// spaces such as IP addresses; for compatibility with existing unkeyed tables only.
    #[arg(long, env = "MASQ_UNKEYED")]
    pub unkeyed: bool,
    /// Without a key file, store dead-letter bodies in clear (PII included) instead of only
    /// their shape. With a key file they are always sealed.
    #[arg(long, env = "MASQ_DEAD_LETTER_PLAINTEXT", conflicts_with = "key_file")]
    pub dead_letter_plaintext: bool,
}

/// The target table.
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// Table to write rows to; fields are matched to its columns by name.
    #[arg(long, env = "MASQ_TABLE", default_value = "user_logins")]
    pub table: String,
}

/// Where PostgreSQL is, and how long to wait for it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string, e.g. postgres://user@localhost:5432/app.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Seconds PostgreSQL may take to accept a connection (TCP, startup, authentication).
    #[arg(long, env = "MASQ_PG_CONNECT_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub pg_connect_timeout: u64,
    /// Seconds PostgreSQL may take to answer one request (a query, or a batch's whole
    /// transaction) before masq drops the connection, says so, and retries on a new one.
    #[arg(long, env = "MASQ_PG_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub pg_timeout: u64,
}

/// Which SQS queue, and how long to wait for SQS.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// The SQS queue URL.
    #[arg(long, env = "MASQ_QUEUE_URL")]
    pub queue_url: String,
    /// Seconds SQS may take to accept a connection.
    #[arg(long, env = "MASQ_SQS_CONNECT_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sqs_connect_timeout: u64,
    /// Seconds SQS may take to answer one call (on top of a receive's long-poll wait) before
    /// masq gives up on it, says so, and retries.
    #[arg(long, env = "MASQ_SQS_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sqs_timeout: u64,
}

/// Large payloads in S3, as the SQS Extended Client Library stores them.
#[derive(Debug, Clone, Args)]
pub struct S3PayloadArgs {
    /// A bucket that message bodies may point to (an Extended Client payload pointer);
    /// repeat for more. A pointer to any other bucket is a dead letter: a sender cannot make
    /// masq read whatever else its role may read. In the environment, separate with ','.
    #[arg(long, env = "MASQ_S3_PAYLOAD_BUCKETS", value_delimiter = ',')]
    pub s3_payload_bucket: Vec<String>,
    /// Delete a payload's S3 object once its message is committed (row or dead letter, which
    /// then holds the payload), as the Extended Client does by default. Never before.
    #[arg(long, env = "MASQ_S3_DELETE_AFTER_COMMIT")]
    pub s3_delete_after_commit: bool,
    /// Largest payload fetched from S3, in bytes; a larger one is a dead letter. The policy
    /// holds a whole batch in its --policy-memory-mb.
    #[arg(long, env = "MASQ_S3_MAX_PAYLOAD_BYTES", default_value_t = crate::source::s3_payload::DEFAULT_MAX_PAYLOAD_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=(1u64 << 30)))]
    pub s3_max_payload_bytes: usize,
}

fn parse_envelope(s: &str) -> Result<crate::source::envelope::Envelope, String> {
    crate::source::envelope::Envelope::parse(s)
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["file", "count"])))]
pub struct SeedArgs {
    /// The SQS queue URL to send to (not needed with --topic-arn).
    #[arg(long, env = "MASQ_QUEUE_URL", required_unless_present = "topic_arn")]
    pub queue_url: Option<String>,
    /// Publish to this SNS topic instead of sending to a queue; the queues subscribed to it
    /// get the messages (in an envelope unless the subscription has raw message delivery).
    #[arg(long, env = "MASQ_SEED_TOPIC_ARN")]
    pub topic_arn: Option<String>,
    /// A JSONL file: each non-empty line is sent as one message body, as it is.
    #[arg(long, env = "MASQ_SEED_FILE")]
    pub file: Option<PathBuf>,
    /// Number of synthetic login events to send; about 1% are malformed on purpose.
    #[arg(long, env = "MASQ_SEED_COUNT")]
    pub count: Option<u64>,
    /// Seed of the synthetic data, so a run can be repeated exactly.
    #[arg(long, env = "MASQ_SEED_SEED", default_value_t = 1)]
    pub seed: u64,
    /// To a FIFO queue or topic: spread the messages over this many message groups
    /// (`group-0`, `group-1`, ...; message i goes to group i mod N), each in the order sent.
    /// Default 1 on FIFO destinations.
    #[arg(long, env = "MASQ_SEED_FIFO_GROUPS")]
    pub fifo_groups: Option<u32>,
    /// A String message attribute every message carries, as NAME=VALUE; repeat for more.
    #[arg(long = "message-attribute", value_parser = parse_key_value)]
    pub message_attributes: Vec<(String, String)>,
    /// Store bodies over --s3-offload-over bytes in this bucket and send an SQS Extended
    /// Client pointer to them instead, as that library does.
    #[arg(long, env = "MASQ_SEED_S3_BUCKET")]
    pub s3_offload_bucket: Option<String>,
    /// Bodies larger than this many bytes are offloaded (the Extended Client's default
    /// threshold is 256 KiB).
    #[arg(long, env = "MASQ_SEED_S3_OFFLOAD_OVER", default_value_t = 262_144)]
    pub s3_offload_over: usize,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Add a fresh key to this existing key file and make it the active one, keeping its
    /// other keys. The file is replaced atomically, with mode 0600.
    #[arg(long, value_name = "FILE")]
    pub add_to: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RevealArgs {
    /// The key file the tokens were sealed with (a rotated file keeps its older keys).
    #[arg(long, env = "MASQ_KEY_FILE")]
    pub key_file: PathBuf,
    /// Print each value as a JSON string, for values that hold line breaks.
    #[arg(long)]
    pub json: bool,
    /// Sealed tokens (KEYID.BASE64URL). Without any, one per line from standard input; an
    /// empty line gives an empty line.
    pub tokens: Vec<String>,
}

/// `--receivers`: `auto`, or a number of receive calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverCount {
    Auto,
    Fixed(u16),
}

fn parse_receivers(s: &str) -> Result<ReceiverCount, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(ReceiverCount::Auto);
    }
    match s.parse::<u16>() {
        Ok(n) if (1..=256).contains(&n) => Ok(ReceiverCount::Fixed(n)),
        _ => Err(format!(
            "'{s}' is neither `auto` nor a number of receivers from 1 to 256"
        )),
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not key=value, e.g. --policy-config mask=ip:masked_ip"))?;
    if k.trim().is_empty() {
        return Err(format!("'{s}' has an empty key"));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn policy_config_takes_key_value_pairs() {
        assert_eq!(
            parse_key_value("mask=ip:masked_ip,device_id:d").unwrap().1,
            "ip:masked_ip,device_id:d"
        );
        assert!(parse_key_value("mask").unwrap_err().contains("key=value"));
        assert!(parse_key_value("=x").is_err());
    }
}
