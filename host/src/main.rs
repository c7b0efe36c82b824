//! masq: SQS -> WebAssembly policy -> PostgreSQL.
//! `main` parses the command line, sets up logging, runs one command and turns its error into
//! a message and an exit code.

use clap::Parser;
use masq::cli::{Cli, Command, DbCommand, PluginCommand};
use masq::{keys, run, seed, sink, source};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; a usage error is, in the log's format.
            if e.use_stderr() && json_requested() {
                masq::logging::fatal_json(&e.render().to_string());
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    masq::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            masq::logging::fatal(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            masq::logging::fatal(&format!("{e:#}"));
            ExitCode::FAILURE
        }
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

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Db {
            command: DbCommand::Init(args),
        } => {
            let table = sink::schema::TableName::parse(&args.table)?;
            let database = args.database.database()?;
            let mut client = database.connect().await?;
            let report = sink::ddl::init(&mut client, &database, &table).await?;
            println!("ready: table {table}, masq.ledger, masq.dead_letters");
            if !report.revoked.is_empty() {
                println!(
                    "revoked every privilege on masq.dead_letters (raw message bodies) from {}: only its \
                     owner {} (and superusers) can read it. Grant SELECT deliberately to people allowed to \
                     see raw PII",
                    report.revoked.join(", "),
                    report.owner
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed(args) => {
            let source =
                source::sqs::SqsSource::connect(&args.queue.queue_url, args.queue.timeouts())
                    .await?;
            if let Some(file) = &args.file {
                let sent = seed::from_file(&source, file).await?;
                println!(
                    "sent {sent} messages from {} to {}",
                    file.display(),
                    args.queue.queue_url
                );
            } else if let Some(count) = args.count {
                let (sent, malformed) = seed::synthetic(&source, count, args.seed).await?;
                println!(
                    "sent {sent} messages ({malformed} malformed on purpose) to {}",
                    args.queue.queue_url
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Check(args),
        } => {
            let report =
                tokio::task::spawn_blocking(move || masq::plugin_check::check(&args)).await??;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Test(args),
        } => {
            print!("{}", masq::plugin_test::run(args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(args) => {
            print!("{}", masq::load::run(args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            print!("{}", masq::replay::run(args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            sink::schema::TableName::parse(&args.table)?;
            print!(
                "{}",
                sink::events::status(&args.database.database()?, &args.table).await?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen(args) => {
            match &args.add_to {
                None => print!("{}", keys::KeyFile::generate()?.to_json()),
                Some(path) => {
                    let (id, kept) = keys::add_key(path)?;
                    eprintln!(
                        "added key {id} to {} as the active key; kept {} for revealing older tokens. \
                         A running masq picks it up by itself",
                        path.display(),
                        kept.join(", ")
                    );
                    println!("{id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reveal(args) => {
            masq::reveal::run(&args.key_file, args.tokens, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
