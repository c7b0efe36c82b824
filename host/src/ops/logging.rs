//! Logging set-up, and how a fatal error is said: one line in the chosen format. Text logs
//! carry colour only on a terminal, so a file or a pipe gets plain lines.

use crate::cli::LogFormat;
use std::io::IsTerminal;
use std::sync::OnceLock;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Crates whose debug and trace logs can carry payloads: HTTP bodies, headers, SQL parameters.
const PAYLOAD_LOGGERS: [&str; 11] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sdk_sqs",
    "aws_sdk_s3",
    "aws_sdk_sns",
    "hyper",
    "hyper_util",
    "h2",
    "tokio_postgres",
];

pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let _ = FORMAT.set(format);
    let mut filter = EnvFilter::try_from_env("MASQ_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,aws=warn"));
    // Whatever MASQ_LOG asks for, libraries that log what they send and receive at debug or
    // trace (SQS responses carry message bodies; statement parameters carry values) stay at
    // warn, as by default: logs never hold a message body or a field value.
    for quiet in PAYLOAD_LOGGERS {
        filter = filter.add_directive(format!("{quiet}=warn").parse().expect("a valid directive"));
    }
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Says why masq stops: `error: ...` for people, one JSON object for log pipelines.
pub fn fatal(message: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => fatal_json(message),
        _ => eprintln!("error: {message}"),
    }
}

/// A fatal error as one JSON line shaped like the JSON log lines (level, target, fields).
pub fn fatal_json(message: &str) {
    let line = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "ERROR",
        "fields": { "message": message.trim_end() },
        "target": "masq",
    });
    eprintln!("{line}");
}
