//! `SqsSource`: the SQS calls masq makes. Receives long-poll; deletes go in batches of ten and
//! entries that fail are retried; visibility is extended for messages still being worked on
//! and dropped to zero for messages masq gives back. It never decides *when* to delete: the
//! pipeline calls `delete` only after the database commit.
//!
//! Here: the client, its time limits and the calls. Beside it: `received` (what a receive
//! returns, shaped for the pipeline), `http` (the three hot-path calls as signed JSON requests,
//! cheaper than the SDK), `sigv4` (their signatures), `dial` (direct or through a proxy),
//! `errors` (a failed call in one sentence).

mod dial;
mod errors;
pub mod http;
mod received;
mod sigv4;

use super::envelope::Envelope;
use super::s3_payload::{PayloadSettings, S3Payloads};
use super::{Message, Source, fifo};
use anyhow::{anyhow, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use errors::CallFailure;
pub(super) use errors::short;
use http::SqsHttp;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// SQS takes at most ten entries per batch call.
const SQS_BATCH: usize = 10;
/// Batch calls of one delete or visibility change in flight at once.
const CALLS_AT_ONCE: usize = 16;
/// Attempts for each delete entry before leaving the message to reappear (the ledger then
/// makes the redelivery harmless).
const DELETE_ATTEMPTS: u32 = 5;
/// Deliveries a message gets while S3 cannot give its payload; then it is a dead letter with
/// the reason (it keeps the pointer, nothing is lost).
pub(super) const S3_DELIVERIES: u32 = 5;

/// How long masq waits for SQS. A server that accepts connections but never answers costs a
/// log line after these times, never a silent hang.
#[derive(Debug, Clone, Copy)]
pub struct SqsTimeouts {
    /// Longest a TCP (and TLS) connection may take.
    pub connect: Duration,
    /// Longest one call may go unanswered, on top of a receive's long-poll wait.
    pub call: Duration,
}

impl Default for SqsTimeouts {
    fn default() -> Self {
        SqsTimeouts {
            connect: Duration::from_secs(5),
            call: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct SqsSource {
    /// The SDK, for the calls off the hot path (queue attributes, sends).
    client: Client,
    /// Receives, deletes and visibility changes: once or more per ten messages.
    http: Arc<SqsHttp>,
    queue_url: String,
    endpoint: String,
    timeouts: SqsTimeouts,
    /// Seconds a received message stays hidden from other consumers; masq extends it while
    /// it holds the message.
    visibility: i32,
    /// What bodies may be wrapped in (`--envelope`).
    envelope: Envelope,
    /// Payloads in S3 (`--s3-*`).
    payloads: S3Payloads,
    /// The queue's URL ends in `.fifo`: a group's later messages wait for its earlier ones.
    fifo: bool,
    /// The AWS settings the SQS client was made from, for the S3 client.
    aws: aws_config::SdkConfig,
}

/// The AWS settings from the standard chain (AWS_ENDPOINT_URL, AWS_REGION, credentials), and
/// the endpoint as error messages name it.
pub async fn aws_config(timeouts: SqsTimeouts) -> anyhow::Result<(aws_config::SdkConfig, String)> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .build(),
        )
        // masq bounds every call itself (`SqsTimeouts`); the SDK's own watch over stalled
        // bodies costs a timer per request (5% of masq's CPU in a profile) for nothing more.
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
        )
        .load()
        .await;
    if config.region().is_none() {
        bail!(
            "no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1; any name works for a local SQS server)"
        );
    }
    let endpoint = config
        .endpoint_url()
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "the AWS SQS endpoint of {}",
                config.region().expect("checked above")
            )
        });
    Ok((config, endpoint))
}

/// The SQS client from the standard chain, and the endpoint as error messages name it.
pub async fn client(timeouts: SqsTimeouts) -> anyhow::Result<(Client, String)> {
    let (config, endpoint) = aws_config(timeouts).await?;
    Ok((Client::new(&config), endpoint))
}

/// An S3 client from the same settings. A custom endpoint (a local server, MinIO) gets
/// path-style addresses: `bucket.host` names rarely resolve there.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

impl SqsSource {
    /// Connects and checks the queue answers, so a wrong URL fails at start, not in a loop.
    pub async fn connect(queue_url: &str, timeouts: SqsTimeouts) -> anyhow::Result<SqsSource> {
        let (aws, endpoint) = aws_config(timeouts).await?;
        let source = SqsSource {
            client: Client::new(&aws),
            http: Arc::new(SqsHttp::new(&aws, timeouts.connect)?),
            queue_url: queue_url.to_string(),
            endpoint,
            timeouts,
            visibility: 30,
            envelope: Envelope::default(),
            payloads: S3Payloads::new(None, PayloadSettings::default(), timeouts.call),
            fifo: fifo::is_fifo(queue_url),
            aws,
        };
        source.depth().await?;
        Ok(source)
    }

    /// What bodies may be wrapped in.
    pub fn with_envelope(mut self, envelope: Envelope) -> SqsSource {
        self.envelope = envelope;
        self
    }

    /// How payloads in S3 are fetched (from the buckets allowed) and cleaned up.
    pub fn with_payloads(mut self, settings: PayloadSettings) -> SqsSource {
        let client = (!settings.buckets.is_empty()).then(|| s3_client(&self.aws));
        self.payloads = S3Payloads::new(client, settings, self.timeouts.call);
        self
    }

    /// Whether the queue is a FIFO queue (its URL ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The AWS settings masq runs with (for the S3 and SNS clients of `masq seed`).
    pub fn aws(&self) -> &aws_config::SdkConfig {
        &self.aws
    }

    /// The visibility timeout receives ask for and extensions renew, in seconds.
    pub fn with_visibility_timeout(mut self, seconds: i32) -> SqsSource {
        self.visibility = seconds;
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// One sentence naming the queue, the endpoint, what failed and what to check.
    fn fail(&self, what: &str, e: impl CallFailure) -> anyhow::Error {
        if e.is_missing_queue() {
            return anyhow!(
                "queue {} does not exist at {}: create it, or check --queue-url and AWS_ENDPOINT_URL",
                self.queue_url,
                self.endpoint
            );
        }
        anyhow!(
            "cannot {what} queue {} at {} ({}): check the queue URL, AWS_ENDPOINT_URL and credentials; \
             for a local server run `just services`",
            self.queue_url,
            self.endpoint,
            e.short()
        )
    }

    /// Runs one SQS call, failing with a message after `extra` plus the call timeout.
    async fn call<T, F: CallFailure>(
        &self,
        what: &str,
        extra: Duration,
        request: impl Future<Output = Result<T, F>>,
    ) -> anyhow::Result<T> {
        let limit = extra + self.timeouts.call;
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.fail(what, e)),
            Err(_) => Err(anyhow!(
                "SQS at {} did not answer within {} s (--sqs-timeout) when asked to {what} queue {}: \
                 check that the endpoint is up and reachable, and AWS_ENDPOINT_URL",
                self.endpoint,
                limit.as_secs_f64(),
                self.queue_url
            )),
        }
    }

    /// Messages visible and in flight (ApproximateNumberOfMessages, ...NotVisible).
    pub async fn depth(&self) -> anyhow::Result<(u64, u64)> {
        let [visible, in_flight] = self
            .attributes(
                "read the depth of",
                [
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        Ok((visible.unwrap_or(0), in_flight.unwrap_or(0)))
    }

    /// How long the queue can still hand a message out after it was sent: its
    /// `MessageRetentionPeriod`, and its own `VisibilityTimeout` or the one masq asks for,
    /// whichever is longer (a message received just before it expires comes back once more
    /// after that).
    pub async fn redelivery_window(&self) -> anyhow::Result<(Duration, Duration)> {
        let names = [
            QueueAttributeName::MessageRetentionPeriod,
            QueueAttributeName::VisibilityTimeout,
        ];
        let values = self
            .attributes("read the retention period of", names.clone())
            .await?;
        let mut seconds = names.iter().zip(values).map(|(name, value)| {
            value.ok_or_else(|| {
                anyhow!(
                    "queue {} at {} did not give its {}: masq needs it to check --ledger-retention",
                    self.queue_url,
                    self.endpoint,
                    name.as_str()
                )
            })
        });
        let retention = seconds.next().expect("two names")?;
        let visibility = seconds
            .next()
            .expect("two names")?
            .max(self.visibility as u64);
        Ok((
            Duration::from_secs(retention),
            Duration::from_secs(visibility),
        ))
    }

    /// Numeric attributes of the queue, in the order asked; `None` for one it did not give.
    async fn attributes<const N: usize>(
        &self,
        what: &str,
        names: [QueueAttributeName; N],
    ) -> anyhow::Result<[Option<u64>; N]> {
        let request = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .set_attribute_names(Some(names.to_vec()))
            .send();
        let out = self.call(what, Duration::ZERO, request).await?;
        Ok(names.map(|name| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
        }))
    }

    /// Deletes messages, ten per call, retrying entries that fail. Returns how many could not
    /// be deleted after every attempt (they reappear later and the ledger skips them).
    pub async fn delete(&self, receipts: &[&str]) -> usize {
        // The calls of one batch run at once: 20 ms away, ten in a row would hold a batch's
        // messages (and their memory) for 200 ms after the commit.
        let mut failed = 0;
        for group in receipts.chunks(SQS_BATCH * CALLS_AT_ONCE) {
            let calls = group
                .chunks(SQS_BATCH)
                .map(|chunk| self.delete_chunk(chunk));
            failed += futures_util::future::join_all(calls)
                .await
                .into_iter()
                .sum::<usize>();
        }
        if failed > 0 {
            tracing::warn!(
                failed,
                "messages not deleted after retries; they will reappear and be skipped by the ledger"
            );
        }
        failed
    }

    /// One DeleteMessageBatch call of up to ten entries, retrying the entries that fail.
    async fn delete_chunk(&self, chunk: &[&str]) -> usize {
        let mut pending: Vec<(usize, &str)> = chunk.iter().copied().enumerate().collect();
        for attempt in 1..=DELETE_ATTEMPTS {
            let request = self.http.delete_batch(&self.queue_url, &pending);
            match self.call("delete from", Duration::ZERO, request).await {
                Ok(failed) => {
                    if let Some(code) = &failed.first_code {
                        tracing::warn!(
                            failed = failed.ids.len(),
                            attempt,
                            code,
                            "some deletes failed; retrying them"
                        );
                    }
                    pending.retain(|(i, _)| failed.ids.contains(&i.to_string()));
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %format!("{e:#}"), "delete call failed; retrying");
                }
            }
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        pending.len()
    }

    /// Sets the visibility timeout of in-flight messages: extends it for messages still being
    /// worked on, or 0 to hand them back to the queue at once.
    pub async fn set_visibility(&self, receipts: &[&str], seconds: i32) {
        // At once, as deletes: a heartbeat over thousands of held messages must not take longer
        // than the time it buys.
        for group in receipts.chunks(SQS_BATCH * CALLS_AT_ONCE) {
            let calls = group
                .chunks(SQS_BATCH)
                .map(|chunk| self.set_visibility_chunk(chunk, seconds));
            futures_util::future::join_all(calls).await;
        }
    }

    async fn set_visibility_chunk(&self, chunk: &[&str], seconds: i32) {
        let request = self.http.visibility_batch(&self.queue_url, chunk, seconds);
        let result = self
            .call("change message visibility in", Duration::ZERO, request)
            .await;
        match result {
            Ok(failed) if !failed.ids.is_empty() => {
                tracing::warn!(
                    failed = failed.ids.len(),
                    seconds,
                    code = failed.first_code,
                    "some visibility changes failed"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(seconds, error = %format!("{e:#}"), "visibility change failed")
            }
        }
    }

    /// Sends one batch of up to ten entries. Fails if SQS refuses any of them.
    pub async fn send_entries(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> anyhow::Result<()> {
        let n = entries.len();
        let call = self.client.send_message_batch().queue_url(&self.queue_url);
        let request = call.set_entries(Some(entries)).send();
        let out = self.call("send to", Duration::ZERO, request).await?;
        if let Some(f) = out.failed().first() {
            bail!(
                "queue {} refused {} of {n} messages: {} ({})",
                self.queue_url,
                out.failed().len(),
                f.message().unwrap_or("no message"),
                f.code()
            );
        }
        Ok(())
    }
}

impl Source for SqsSource {
    fn name(&self) -> &str {
        &self.queue_url
    }

    fn max_receivers(&self) -> usize {
        usize::MAX
    }

    fn finite(&self) -> bool {
        false
    }

    async fn receive(&self, wait: Duration) -> anyhow::Result<Vec<Message>> {
        self.receive_messages(wait.as_secs().min(20) as i32).await
    }

    async fn acknowledge(&self, receipts: &[&str]) {
        self.delete(receipts).await;
        // After the commit, and after SQS forgot the message: a payload object is never
        // deleted while its message could still be written.
        self.payloads.committed(receipts).await;
    }

    fn acknowledge_unlocks(&self) -> bool {
        self.fifo
    }

    async fn release(&self, receipts: &[&str], delay: Duration) {
        self.payloads.forget(receipts);
        // SQS takes 0 to 12 hours.
        self.set_visibility(receipts, delay.as_secs().min(43_200) as i32)
            .await;
    }

    fn hold_period(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.visibility as u64))
    }

    async fn extend(&self, receipts: &[&str]) {
        tracing::debug!(
            messages = receipts.len(),
            "extending visibility of held messages"
        );
        self.set_visibility(receipts, self.visibility).await;
    }
}
