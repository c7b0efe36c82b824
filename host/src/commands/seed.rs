//! `masq seed`: fills a queue, from a JSONL file or with synthetic login events of which
//! about 1% are malformed in the ways real queues are (see `source::synthetic`).

use crate::config::SeedConfig;
use crate::source::sqs::SqsSource;
use crate::source::synthetic;

pub async fn run(config: &SeedConfig) -> anyhow::Result<String> {
    let source = SqsSource::connect(&config.queue_url, config.timeouts).await?;
    let url = &config.queue_url;
    if let Some(file) = &config.file {
        let sent = synthetic::from_file(&source, file).await?;
        return Ok(format!(
            "sent {sent} messages from {} to {url}\n",
            file.display()
        ));
    }
    let (sent, malformed) = synthetic::send(&source, config.count, config.seed).await?;
    Ok(format!(
        "sent {sent} messages ({malformed} malformed on purpose) to {url}\n"
    ))
}
