//! masq: SQS -> WebAssembly policy -> PostgreSQL.
//! `main` parses the command line, sets up logging, runs one command and turns its error into
//! a message and an exit code.

use clap::Parser;
use masq::cli::{Cli, Command, DbCommand, LogFormat, PluginCommand};
use masq::{keys, run, seed, sink, source};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Db {
            command: DbCommand::Init(args),
        } => {
            let table = sink::schema::TableName::parse(&args.table)?;
            let mut client = sink::postgres::connect(&args.database_url).await?;
            sink::ddl::init(&mut client, &table).await?;
            println!("ready: table {table}, masq.ledger, masq.dead_letters");
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed(args) => {
            let source = source::sqs::SqsSource::connect(&args.queue_url).await?;
            if let Some(file) = &args.file {
                let sent = seed::from_file(&source, file).await?;
                println!(
                    "sent {sent} messages from {} to {}",
                    file.display(),
                    args.queue_url
                );
            } else if let Some(count) = args.count {
                let (sent, malformed) = seed::synthetic(&source, count, args.seed).await?;
                println!(
                    "sent {sent} messages ({malformed} malformed on purpose) to {}",
                    args.queue_url
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
                sink::events::status(&args.database_url, &args.table).await?
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

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MASQ_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
