//! The three SQS calls on masq's hot path (ReceiveMessage, DeleteMessageBatch,
//! ChangeMessageVisibilityBatch) as SigV4-signed JSON requests over one pooled HTTP client.
//!
//! Why not the AWS SDK for these three: every message costs a tenth of a receive and a tenth
//! of a delete, and the SDK's per-request machinery (config bag, interceptors, endpoint
//! resolution, retry classifiers, smithy serializers) cost more CPU per message than decoding,
//! the policy and the COPY together (issue 11's profile). Here a call is one JSON body, one
//! signature (`sigv4`, with the day's key kept) and one request on a kept-alive connection. The SDK still makes every other
//! call (queue attributes, sends, S3, SNS), and the settings both use come from the same
//! standard chain (endpoint, region, credentials).
//!
//! Failures come back as `CallError`s that say what SQS answered; `SqsSource` turns them into
//! sentences naming the queue and what to check.

use super::sigv4::Signer;
use super::dial::Dial;
use anyhow::{Context, anyhow};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

type Https = hyper_rustls::HttpsConnector<Dial>;

/// Refresh credentials this long before they expire (STS, SSO, instance roles).
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);

/// What one call failed with.
#[derive(Debug)]
pub enum CallError {
    /// SQS answered with an error: its code (`QueueDoesNotExist`, ...) and message.
    Service { code: String, message: String },
    /// No answer: the connection, TLS, or a body that was not SQS's JSON.
    Transport(anyhow::Error),
}

impl CallError {
    /// The queue does not exist (either of the codes SQS uses for it).
    pub fn is_missing_queue(&self) -> bool {
        matches!(self, CallError::Service { code, .. }
            if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist"))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Service { code, message } if message.is_empty() => write!(f, "{code}"),
            CallError::Service { code, message } => write!(f, "{code}: {message}"),
            CallError::Transport(e) => write!(f, "{}", innermost(e)),
        }
    }
}

fn innermost(e: &anyhow::Error) -> String {
    e.chain().last().map(ToString::to_string).unwrap_or_default()
}

/// A signed JSON client for one region and endpoint.
pub struct SqsHttp {
    client: Client<Https, Full<Bytes>>,
    /// Where requests go: the endpoint root (the JSON protocol names the queue in the body).
    endpoint: http::Uri,
    host: String,
    signer: Signer,
    credentials: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
}

impl SqsHttp {
    /// A client for the endpoint the SDK would use: `AWS_ENDPOINT_URL_SQS`, then the configured
    /// endpoint (`AWS_ENDPOINT_URL`), then `https://sqs.<region>.amazonaws.com`.
    pub fn new(config: &aws_config::SdkConfig, connect_timeout: Duration) -> anyhow::Result<SqsHttp> {
        let region = config
            .region()
            .context("no AWS region: set AWS_REGION")?
            .to_string();
        let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS")
            .ok()
            .filter(|e| !e.is_empty())
            .or_else(|| config.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| default_endpoint(&region));
        let endpoint: http::Uri = endpoint
            .parse()
            .with_context(|| format!("the SQS endpoint {endpoint:?} is not a URL"))?;
        let host = endpoint
            .authority()
            .with_context(|| format!("the SQS endpoint {endpoint} has no host"))?
            .to_string();
        let credentials = config.credentials_provider().context(
            "no AWS credentials provider: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role",
        )?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let dial = Dial::for_endpoint(&endpoint, http);
        let tls = tls_config(endpoint.scheme_str() == Some("https"))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(dial);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(50))
            .build(https);
        Ok(SqsHttp {
            client,
            endpoint,
            host,
            signer: Signer::new(&region, "sqs"),
            credentials,
            cached: Mutex::new(None),
        })
    }

    /// ReceiveMessage: up to ten messages with every system and message attribute.
    pub async fn receive(
        &self,
        queue_url: &str,
        wait_seconds: i32,
        visibility: i32,
    ) -> Result<Vec<ReceivedMessage>, CallError> {
        let input = ReceiveInput {
            queue_url,
            max_number_of_messages: 10,
            wait_time_seconds: wait_seconds,
            visibility_timeout: visibility,
            message_system_attribute_names: ["All"],
            message_attribute_names: ["All"],
        };
        let out: ReceiveOutput = self.call("ReceiveMessage", &input).await?;
        Ok(out.messages)
    }

    /// DeleteMessageBatch; returns the ids of the entries that failed, with the first code.
    pub async fn delete_batch(
        &self,
        queue_url: &str,
        entries: &[(usize, &str)],
    ) -> Result<BatchFailures, CallError> {
        let input = BatchInput {
            queue_url,
            entries: entries
                .iter()
                .map(|(id, receipt)| Entry {
                    id: id.to_string(),
                    receipt_handle: receipt,
                    visibility_timeout: None,
                })
                .collect(),
        };
        let out: BatchOutput = self.call("DeleteMessageBatch", &input).await?;
        Ok(out.into())
    }

    /// ChangeMessageVisibilityBatch; returns the entries that failed.
    pub async fn visibility_batch(
        &self,
        queue_url: &str,
        receipts: &[&str],
        seconds: i32,
    ) -> Result<BatchFailures, CallError> {
        let input = BatchInput {
            queue_url,
            entries: receipts
                .iter()
                .enumerate()
                .map(|(id, receipt)| Entry {
                    id: id.to_string(),
                    receipt_handle: receipt,
                    visibility_timeout: Some(seconds),
                })
                .collect(),
        };
        let out: BatchOutput = self.call("ChangeMessageVisibilityBatch", &input).await?;
        Ok(out.into())
    }

    /// One signed POST of `input` as `AmazonSQS.<action>`, its answer read as `O`.
    async fn call<I: Serialize, O: for<'de> Deserialize<'de>>(
        &self,
        action: &str,
        input: &I,
    ) -> Result<O, CallError> {
        let body = serde_json::to_vec(input).expect("request types serialize");
        let request = self.signed(action, body).await.map_err(CallError::Transport)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| CallError::Transport(anyhow!(e)))?;
        let status = response.status();
        let query_error = response
            .headers()
            .get("x-amzn-query-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Transport(anyhow!(e)))?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                CallError::Transport(anyhow!("SQS answered {action} with JSON masq cannot read: {e}"))
            });
        }
        Err(service_error(status, query_error.as_deref(), &bytes))
    }

    /// The request with SigV4 headers (date, authorization, and the session token if any).
    async fn signed(&self, action: &str, body: Vec<u8>) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let credentials = self.credentials().await?;
        let target = format!("AmazonSQS.{action}");
        // Sorted by name, as the signature wants them.
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("host", self.host.as_str()),
            ("x-amz-target", target.as_str()),
        ];
        let signature = self.signer.sign(
            &credentials,
            chrono::Utc::now(),
            self.endpoint.path(),
            &headers,
            &body,
        );
        let mut request = http::Request::post(&self.endpoint);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request = request
            .header("x-amz-date", signature.amz_date)
            .header("authorization", signature.authorization)
            // The JSON protocol in SQS's query-compatible mode: errors carry their query codes.
            .header("x-amzn-query-mode", "true");
        if let Some(token) = signature.security_token {
            request = request.header("x-amz-security-token", token);
        }
        request
            .body(Full::new(Bytes::from(body)))
            .context("building the SQS request")
    }

    /// The credentials, from the cache until they are near their expiry.
    async fn credentials(&self) -> anyhow::Result<Credentials> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + CREDENTIALS_MARGIN)
        };
        if let Some(c) = self.cached.lock().expect("not poisoned").as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| anyhow!("no AWS credentials for SQS: {e}"))?;
        *self.cached.lock().expect("not poisoned") = Some(c.clone());
        Ok(c)
    }
}

fn default_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://sqs.{region}.{domain}")
}

/// TLS with the machine's trusted roots for an https endpoint; an http endpoint (a local
/// server) needs none, so a machine without a CA bundle still works there.
fn tls_config(https: bool) -> anyhow::Result<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            anyhow::bail!(
                "no trusted root certificates found on this machine for the https SQS endpoint: install ca-certificates"
            );
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The error SQS answered: its code from the query-compatible header or the JSON `__type`
/// (`com.amazonaws.sqs#QueueDoesNotExist`), and its message.
fn service_error(status: http::StatusCode, query_error: Option<&str>, body: &[u8]) -> CallError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = query_error
        .and_then(|q| q.split(';').next())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|b| b.kind.as_deref())
                .map(|k| k.rsplit('#').next().unwrap_or(k).to_string())
        })
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let message = parsed.and_then(|b| b.message).unwrap_or_default();
    CallError::Service { code, message }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveInput<'a> {
    queue_url: &'a str,
    max_number_of_messages: i32,
    wait_time_seconds: i32,
    visibility_timeout: i32,
    message_system_attribute_names: [&'static str; 1],
    message_attribute_names: [&'static str; 1],
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveOutput {
    #[serde(default)]
    messages: Vec<ReceivedMessage>,
}

/// One message as SQS's JSON gives it. Maps are sorted by name (`BTreeMap`), so attributes
/// reach policies in a stable order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceivedMessage {
    pub message_id: Option<String>,
    pub receipt_handle: Option<String>,
    pub body: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub message_attributes: BTreeMap<String, AttributeValue>,
}

/// A message attribute; a binary value is base64 in the JSON protocol, as masq passes it on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeValue {
    pub string_value: Option<String>,
    pub binary_value: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchInput<'a> {
    queue_url: &'a str,
    entries: Vec<Entry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    id: String,
    receipt_handle: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchOutput {
    #[serde(default)]
    failed: Vec<FailedEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FailedEntry {
    id: String,
    #[serde(default)]
    code: String,
}

/// The entries of a batch call that failed: their ids, and the first one's code.
#[derive(Debug, Default, PartialEq)]
pub struct BatchFailures {
    pub ids: Vec<String>,
    pub first_code: Option<String>,
}

impl From<BatchOutput> for BatchFailures {
    fn from(out: BatchOutput) -> Self {
        BatchFailures {
            first_code: out.failed.first().map(|f| f.code.clone()),
            ids: out.failed.into_iter().map(|f| f.id).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_answer_reads_ids_bodies_and_sorted_attributes() {
        let json = br#"{"Messages":[{"MessageId":"m1","ReceiptHandle":"r1","MD5OfBody":"x",
            "Body":"{\"a\":1}","Attributes":{"SentTimestamp":"1700000000000","ApproximateReceiveCount":"2","MessageGroupId":"g"},
            "MessageAttributes":{"tenant":{"StringValue":"acme","DataType":"String"},
                                 "blob":{"BinaryValue":"aGk=","DataType":"Binary"}}}]}"#;
        let out: ReceiveOutput = serde_json::from_slice(json).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.message_id.as_deref(), Some("m1"));
        assert_eq!(m.receipt_handle.as_deref(), Some("r1"));
        assert_eq!(m.body.as_deref(), Some("{\"a\":1}"));
        let names: Vec<&str> = m.attributes.keys().map(String::as_str).collect();
        assert_eq!(names, ["ApproximateReceiveCount", "MessageGroupId", "SentTimestamp"]);
        assert_eq!(m.message_attributes["blob"].binary_value.as_deref(), Some("aGk="));
        assert_eq!(m.message_attributes["tenant"].string_value.as_deref(), Some("acme"));
    }

    #[test]
    fn an_empty_receive_has_no_messages_member() {
        let out: ReceiveOutput = serde_json::from_slice(b"{}").unwrap();
        assert!(out.messages.is_empty());
    }

    #[test]
    fn batch_failures_keep_ids_and_the_first_code() {
        let out: BatchOutput = serde_json::from_slice(
            br#"{"Successful":[{"Id":"0"}],"Failed":[{"Id":"1","SenderFault":true,"Code":"ReceiptHandleIsInvalid","Message":"bad"},{"Id":"3","SenderFault":false,"Code":"InternalError"}]}"#,
        )
        .unwrap();
        assert_eq!(
            BatchFailures::from(out),
            BatchFailures {
                ids: vec!["1".into(), "3".into()],
                first_code: Some("ReceiptHandleIsInvalid".into())
            }
        );
    }

    #[test]
    fn requests_use_sqs_member_names() {
        let input = BatchInput {
            queue_url: "http://q",
            entries: vec![Entry {
                id: "0".into(),
                receipt_handle: "r",
                visibility_timeout: Some(30),
            }],
        };
        assert_eq!(
            serde_json::to_string(&input).unwrap(),
            r#"{"QueueUrl":"http://q","Entries":[{"Id":"0","ReceiptHandle":"r","VisibilityTimeout":30}]}"#
        );
    }

    #[test]
    fn error_codes_come_from_the_query_header_or_the_json_type() {
        let body = br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#;
        let e = service_error(http::StatusCode::BAD_REQUEST, None, body);
        assert!(e.is_missing_queue(), "{e}");
        assert_eq!(e.to_string(), "QueueDoesNotExist: The specified queue does not exist.");
        let e = service_error(
            http::StatusCode::BAD_REQUEST,
            Some("AWS.SimpleQueueService.NonExistentQueue;Sender"),
            b"",
        );
        assert!(e.is_missing_queue(), "{e}");
        let e = service_error(http::StatusCode::SERVICE_UNAVAILABLE, None, b"<html>");
        assert_eq!(e.to_string(), "HTTP 503");
        assert!(!e.is_missing_queue());
    }

    #[test]
    fn the_default_endpoint_follows_the_partition() {
        assert_eq!(default_endpoint("eu-west-1"), "https://sqs.eu-west-1.amazonaws.com");
        assert_eq!(default_endpoint("cn-north-1"), "https://sqs.cn-north-1.amazonaws.com.cn");
    }
}
