//! Validated settings, built from the command line. The commands take these, never clap's
//! structs, and nothing below the commands knows a command line exists: a library user or a
//! test builds these directly.

use crate::cli;
use crate::pipeline::PipelineConfig;
use crate::pipeline::adapt::Receivers;
use crate::policy::PolicyOptions;
use crate::sink::database::Database;
use crate::sink::ledger::retention::Retention;
use crate::sink::schema::TableName;
use crate::source::envelope::Envelope;
use crate::source::s3_payload::PayloadSettings;
use crate::source::sqs::SqsTimeouts;
use anyhow::bail;
use std::path::PathBuf;
use std::time::Duration;

/// Where the pseudonymisation key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    /// Plain SHA-256: said loudly at start.
    Unkeyed,
}

impl KeySource {
    fn from_args(args: &cli::KeyArgs) -> anyhow::Result<KeySource> {
        match (&args.key_file, args.unkeyed) {
            (Some(path), false) => Ok(KeySource::File(path.clone())),
            (None, true) => Ok(KeySource::Unkeyed),
            (None, false) => bail!(
                "no key for pseudonyms: pass --key-file FILE (make one with `masq keygen > masq.key`), \
                 or --unkeyed for plain SHA-256"
            ),
            (Some(_), true) => bail!("--key-file and --unkeyed exclude each other"),
        }
    }

    pub fn key_file(&self) -> Option<&std::path::Path> {
        match self {
            KeySource::File(p) => Some(p),
            KeySource::Unkeyed => None,
        }
    }
}

/// A policy file and how to run it.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub plugin: PathBuf,
    /// `--plugin-sha256`: refuse any other file.
    pub pin: Option<String>,
    pub options: PolicyOptions,
}

impl PolicyConfig {
    fn from_args(args: &cli::PolicyArgs, pin: Option<String>) -> PolicyConfig {
        PolicyConfig {
            plugin: args.plugin.clone(),
            pin,
            options: policy_options(&args.settings),
        }
    }
}

pub fn policy_options(args: &cli::PolicySettingsArgs) -> PolicyOptions {
    PolicyOptions {
        deadline: Duration::from_millis(args.policy_deadline_ms),
        memory_limit: (args.policy_memory_mb as usize) << 20,
        config: args.policy_config.clone(),
        ..PolicyOptions::default()
    }
}

impl cli::ReceiverCount {
    fn with_max(self, max: usize) -> Receivers {
        match self {
            cli::ReceiverCount::Auto => Receivers::Auto { max },
            cli::ReceiverCount::Fixed(n) => Receivers::Fixed(n as usize),
        }
    }
}

impl cli::DatabaseArgs {
    pub fn database(&self) -> anyhow::Result<Database> {
        Database::new(
            &self.database_url,
            Duration::from_secs(self.pg_connect_timeout),
            Duration::from_secs(self.pg_timeout),
        )
    }
}

impl cli::QueueArgs {
    pub fn timeouts(&self) -> SqsTimeouts {
        SqsTimeouts {
            connect: Duration::from_secs(self.sqs_connect_timeout),
            call: Duration::from_secs(self.sqs_timeout),
        }
    }
}

/// What every command that runs the pipeline shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub policy: PolicyConfig,
    pub keys: KeySource,
    /// `--dead-letter-plaintext`: unkeyed dead letters keep their body in clear.
    pub dead_letter_plaintext: bool,
    pub database: Database,
    pub table: TableName,
    /// How long the ledger remembers a message.
    pub retention: Retention,
}

impl Common {
    fn from_args(args: &cli::CommonArgs, pin: Option<String>) -> anyhow::Result<Common> {
        Ok(Common {
            policy: PolicyConfig::from_args(&args.policy, pin),
            keys: KeySource::from_args(&args.keys)?,
            dead_letter_plaintext: args.keys.dead_letter_plaintext,
            database: args.database.database()?,
            table: TableName::parse(&args.table.table)?,
            retention: args.ledger.ledger_retention,
        })
    }
}

/// `masq db init` and `masq status`.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub database: Database,
    pub table: TableName,
    /// `db init`: entries of an earlier masq's ledger sent within this are kept.
    pub retention: Retention,
}

impl DbConfig {
    pub fn from_args(
        database: &cli::DatabaseArgs,
        table: &str,
        ledger: Option<&cli::LedgerArgs>,
    ) -> anyhow::Result<DbConfig> {
        let default = Retention::parse(crate::sink::ledger::retention::DEFAULT)
            .expect("the default retention parses");
        Ok(DbConfig {
            database: database.database()?,
            table: TableName::parse(table)?,
            retention: ledger.map_or(default, |l| l.ledger_retention),
        })
    }
}

/// `masq seed`.
#[derive(Debug, Clone)]
pub struct SeedConfig {
    pub queue_url: Option<String>,
    /// Publish here instead of sending to the queue.
    pub topic_arn: Option<String>,
    pub timeouts: SqsTimeouts,
    /// Offload bodies over `s3_offload_over` bytes to this bucket.
    pub s3_offload_bucket: Option<String>,
    pub s3_offload_over: usize,
    /// FIFO: message groups to spread over.
    pub fifo_groups: Option<u32>,
    /// String message attributes every message carries.
    pub attributes: Vec<(String, String)>,
    /// Send this file's lines; else `count` synthetic messages from `seed`.
    pub file: Option<PathBuf>,
    pub count: u64,
    pub seed: u64,
}

impl SeedConfig {
    pub fn from_args(args: &cli::SeedArgs) -> SeedConfig {
        SeedConfig {
            queue_url: args.queue_url.clone(),
            topic_arn: args.topic_arn.clone(),
            timeouts: SqsTimeouts::default(),
            s3_offload_bucket: args.s3_offload_bucket.clone(),
            s3_offload_over: args.s3_offload_over,
            fifo_groups: args.fifo_groups,
            attributes: args.message_attributes.clone(),
            file: args.file.clone(),
            count: args.count.unwrap_or(0),
            seed: args.seed,
        }
    }
}

/// `masq plugin test`.
#[derive(Debug, Clone)]
pub struct PluginTestConfig {
    pub file: PathBuf,
    pub input: PathBuf,
    pub expect: Option<PathBuf>,
    pub pii: Vec<String>,
    pub options: PolicyOptions,
    pub key_file: Option<PathBuf>,
    pub sent_ms: u64,
}

impl PluginTestConfig {
    pub fn from_args(args: &cli::PluginTestArgs) -> anyhow::Result<PluginTestConfig> {
        Ok(PluginTestConfig {
            file: args.file.clone(),
            input: args.input.clone(),
            expect: args.expect.clone(),
            pii: args.pii.clone(),
            options: policy_options(&args.settings),
            key_file: args.key_file.clone(),
            // Noon, so the date is the same in every time zone a reader might think in.
            sent_ms: sent_at_ms(args.sent_at.as_deref(), 12)?,
        })
    }
}

/// `masq run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub common: Common,
    pub queue_url: String,
    pub sqs_timeouts: SqsTimeouts,
    pub visibility_timeout: i32,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub pipeline: PipelineConfig,
    /// What bodies may be wrapped in.
    pub envelope: Envelope,
    /// Payloads in S3.
    pub payloads: PayloadSettings,
}

impl RunConfig {
    pub fn from_args(args: &cli::RunArgs) -> anyhow::Result<RunConfig> {
        Ok(RunConfig {
            common: Common::from_args(&args.common, args.plugin_sha256.clone())?,
            queue_url: args.queue.queue_url.clone(),
            sqs_timeouts: args.queue.timeouts(),
            visibility_timeout: args.visibility_timeout,
            metrics_addr: args.metrics_addr,
            envelope: args.envelope,
            payloads: PayloadSettings {
                buckets: args.s3.s3_payload_bucket.clone(),
                max_bytes: args.s3.s3_max_payload_bytes,
                delete_after_commit: args.s3.s3_delete_after_commit,
            },
            pipeline: PipelineConfig {
                batch_size: args.batch_size as usize,
                batch_wait: Duration::from_millis(args.batch_wait_ms),
                receivers: args.receivers.with_max(args.max_receivers as usize),
                workers: args.workers as usize,
                wait: Duration::from_secs(args.wait_seconds as u64),
                drain: args.drain || args.dry_run,
                dry_run: args.dry_run,
                stall_after: Duration::from_secs(args.stall_timeout),
            },
        })
    }
}

/// `masq load`.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub common: Common,
    pub input: LoadInput,
    pub pipeline: PipelineConfig,
}

/// What `masq load` reads and how its lines are known in the ledger.
#[derive(Debug, Clone)]
pub struct LoadInput {
    /// JSONL to read, `-` for stdin.
    pub path: PathBuf,
    /// Names the input in message ids (`<source-id>:<line>`); `None`: the file name.
    pub source_id: Option<String>,
    /// Send time every line gets, ms since the Unix epoch (`--sent-at`); `None`: the time the
    /// source id was first loaded into the table.
    pub sent_ms: Option<u64>,
}

impl LoadConfig {
    pub fn from_args(args: &cli::LoadArgs) -> anyhow::Result<LoadConfig> {
        Ok(LoadConfig {
            common: Common::from_args(&args.common, None)?,
            input: LoadInput {
                path: args.input.clone(),
                source_id: args.source_id.clone(),
                sent_ms: match args.sent_at.as_deref() {
                    Some(date) => Some(sent_at_ms(Some(date), 0)?),
                    None => None,
                },
            },
            pipeline: finite_pipeline(args.batch_size as usize, args.workers as usize),
        })
    }
}

/// `masq replay`.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub common: Common,
    pub pipeline: PipelineConfig,
}

impl ReplayConfig {
    pub fn from_args(args: &cli::ReplayArgs) -> anyhow::Result<ReplayConfig> {
        Ok(ReplayConfig {
            common: Common::from_args(&args.common, None)?,
            // One worker: dead letters are few, and replays already run at once take turns
            // through row locks.
            pipeline: finite_pipeline(100, 1),
        })
    }
}

/// A pipeline over a file or the dead letters: read to the end, then stop.
fn finite_pipeline(batch_size: usize, workers: usize) -> PipelineConfig {
    PipelineConfig {
        batch_size,
        batch_wait: Duration::from_millis(20),
        receivers: Receivers::Fixed(1),
        workers,
        wait: Duration::ZERO,
        drain: true,
        dry_run: false,
        // A file or the dead letters cannot go quiet; a stall there is the database's, and
        // the write retries say so.
        stall_after: Duration::ZERO,
    }
}

/// `--sent-at YYYY-MM-DD` as milliseconds since the epoch at `hour`:00 UTC; now if absent.
pub fn sent_at_ms(date: Option<&str>, hour: u32) -> anyhow::Result<u64> {
    Ok(match date {
        Some(date) => chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| anyhow::anyhow!("--sent-at {date:?} is not a date (YYYY-MM-DD)"))?
            .and_hms_opt(hour, 0, 0)
            .ok_or_else(|| anyhow::anyhow!("hour {hour} does not exist"))?
            .and_utc()
            .timestamp_millis() as u64,
        None => chrono::Utc::now().timestamp_millis() as u64,
    })
}
