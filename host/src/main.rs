//! masq: SQS -> WebAssembly policy -> PostgreSQL.
//! `main` parses the command line, sets up logging, turns the arguments into validated
//! settings, runs one command and turns its error into a message and an exit code.

use clap::Parser;
use masq::cli::{Cli, Command, DbCommand, DeadLettersCommand, PluginCommand};
use masq::commands;
use masq::config::{
    self, DbConfig, LoadConfig, PluginTestConfig, ReplayConfig, RunConfig, SeedConfig,
};
use masq::ops::logging;
use std::process::ExitCode;

// Many small, short-lived allocations per message (bodies, fields, SDK requests): mimalloc
// spends less CPU on them than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; a usage error is, in the log's format.
            if e.use_stderr() && json_requested() {
                logging::fatal_json(&e.render().to_string());
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    logging::init(cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = async_threads(&cli.command) {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            logging::fatal(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            logging::fatal(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// How many async threads a command gets, if not one per core (tokio's default).
/// `masq run` and `masq replay` mostly wait on SQS and PostgreSQL, and their policy runs on
/// threads of its own (tokio's blocking pool), so one async thread per two cores keeps up and
/// spares what idle async threads cost in wake-ups and task stealing: measured on two cores
/// (one thread), 15% less CPU per message on loopback at the same throughput, and the same
/// throughput through a 20 ms SQS. `masq load` reads and encodes as fast as it can: every
/// core. TOKIO_WORKER_THREADS, when set, decides instead.
fn async_threads(command: &Command) -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    match command {
        Command::Run(_) | Command::Replay(_) => Some(
            std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1)),
        ),
        _ => None,
    }
}

/// Whether the command line or the environment asks for JSON logs, read before clap could
/// parse them (a usage error must come out as JSON too).
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json")
        || std::env::var("MASQ_LOG_FORMAT").is_ok_and(|v| v == "json")
}

/// Prints a command's report and succeeds.
fn printed(report: String) -> ExitCode {
    print!("{report}");
    ExitCode::SUCCESS
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    Ok(match command {
        Command::Run(args) => commands::run::run(RunConfig::from_args(&args)?).await?,
        Command::Load(args) => commands::load::run(LoadConfig::from_args(&args)?).await?,
        Command::Replay(args) => commands::replay::run(ReplayConfig::from_args(&args)?).await?,
        Command::Db {
            command: DbCommand::Init(args),
        } => printed(
            commands::db::init(&DbConfig::from_args(
                &args.database,
                &args.table,
                Some(&args.ledger),
            )?)
            .await?,
        ),
        Command::Db {
            command: DbCommand::Pack(args),
        } => printed(
            commands::db::pack(
                &DbConfig::from_args(&args.database, &args.table, None)?,
                args.days,
            )
            .await?,
        ),
        Command::Status(args) => printed(
            commands::db::status(&DbConfig::from_args(
                &args.database,
                &args.table.table,
                None,
            )?)
            .await?,
        ),
        Command::DeadLetters { command } => printed(match command {
            DeadLettersCommand::List(t) => {
                commands::dead_letters::list(&DbConfig::from_args(
                    &t.database,
                    &t.table.table,
                    None,
                )?)
                .await?
            }
            DeadLettersCommand::Show {
                target: t,
                ids,
                key_file,
            } => {
                let config = DbConfig::from_args(&t.database, &t.table.table, None)?;
                commands::dead_letters::show(&config, &ids, &key_file).await?
            }
            DeadLettersCommand::Seal {
                target: t,
                key_file,
            } => {
                let config = DbConfig::from_args(&t.database, &t.table.table, None)?;
                commands::dead_letters::seal(&config, &key_file).await?
            }
        }),
        Command::Seed(args) => printed(commands::seed::run(&SeedConfig::from_args(&args)).await?),
        Command::Plugin {
            command: PluginCommand::Check(args),
        } => {
            let options = config::policy_options(&args.settings);
            let report = tokio::task::spawn_blocking(move || {
                commands::plugin::check::check(&args.file, options)
            })
            .await??;
            printed(report)
        }
        Command::Plugin {
            command: PluginCommand::Test(args),
        } => printed(commands::plugin::test::run(PluginTestConfig::from_args(&args)?).await?),
        Command::Keygen(args) => {
            commands::keys::keygen(args.add_to.as_deref())?;
            ExitCode::SUCCESS
        }
        Command::Reveal(args) => {
            commands::keys::reveal(&args.key_file, args.tokens, args.json)?;
            ExitCode::SUCCESS
        }
    })
}
