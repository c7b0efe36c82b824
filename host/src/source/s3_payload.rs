//! Large payloads in S3, as the Amazon SQS Extended Client Library stores them: the body is
//! a pointer, `["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": ...,
//! "s3Key": ...}]`, and the message is the object it names. This fetches the object before
//! the policy sees the message and, when asked, deletes it once the message is committed
//! (never before). It only reads buckets the operator allowed (`--s3-payload-bucket`): a
//! sender must not be able to make masq read, and write into the table or the dead letters,
//! whatever else its role can read.

use super::sqs::short;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use rustc_hash::FxHashMap as HashMap;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The class name the extended client writes as the pointer's first element.
pub const POINTER_CLASS: &str = "software.amazon.payloadoffloading.PayloadS3Pointer";

/// Default of `--s3-max-payload-bytes`: payloads masq fetches and hands to the policy. Well
/// under the sandbox's default 64 MiB, which a batch of them shares.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 << 20;

/// Fetch attempts within one receive before the message is given up on for this delivery.
const FETCH_ATTEMPTS: u32 = 3;

/// Where an offloaded payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub bucket: String,
    pub key: String,
}

impl Pointer {
    /// `s3://bucket/key`, as reasons and logs name an object.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The pointer body the extended client writes for this object.
    pub fn body(&self) -> String {
        serde_json::json!([POINTER_CLASS, {"s3BucketName": self.bucket, "s3Key": self.key}])
            .to_string()
    }
}

/// `None` when the body is not a payload pointer (the message is the body); else the pointer,
/// or why it is malformed (naming the field).
pub fn pointer(body: &str) -> Option<Result<Pointer, String>> {
    // Nearly every body is not a pointer: a substring test before any parsing.
    if !body.trim_start().starts_with('[') || !body.contains(POINTER_CLASS) {
        return None;
    }
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    if items.first().and_then(Value::as_str) != Some(POINTER_CLASS) {
        return None;
    }
    let Some(Value::Object(fields)) = items.get(1).filter(|_| items.len() == 2) else {
        return Some(Err(
            "malformed S3 payload pointer: expected [class, {s3BucketName, s3Key}]".to_string(),
        ));
    };
    let text = |name: &str| match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!(
            "malformed S3 payload pointer: field '{name}' is not a non-empty string"
        )),
        None => Err(format!(
            "malformed S3 payload pointer: field '{name}' is missing"
        )),
    };
    Some(text("s3BucketName").and_then(|bucket| {
        Ok(Pointer {
            bucket,
            key: text("s3Key")?,
        })
    }))
}

/// Why a payload could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No such object or bucket, after a few tries: the message is a dead letter now.
    Missing(String),
    /// Waiting cannot help (no such object or bucket, too large, not text, a bucket not
    /// allowed): the message is a dead letter now, with this reason.
    Permanent(String),
    /// S3 did not answer or refused for now: the message goes back to the queue and is tried
    /// again on a later delivery, until it has had its share of them.
    Passing(String),
}

/// Settings of `--s3-*`.
#[derive(Debug, Clone)]
pub struct PayloadSettings {
    /// Buckets pointers may name.
    pub buckets: Vec<String>,
    /// Largest payload fetched.
    pub max_bytes: usize,
    /// Delete each object once its message is committed (the extended client's default).
    pub delete_after_commit: bool,
}

impl Default for PayloadSettings {
    fn default() -> Self {
        PayloadSettings {
            buckets: Vec::new(),
            max_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            delete_after_commit: false,
        }
    }
}

/// Fetches payloads, and remembers which delivery's object to delete after its commit.
#[derive(Clone)]
pub struct S3Payloads {
    client: Option<Client>,
    settings: PayloadSettings,
    call_timeout: Duration,
    /// Receipt -> the object its message came from, from receive until acknowledged or
    /// released; only kept with `delete_after_commit`.
    fetched: Arc<Mutex<HashMap<String, Pointer>>>,
}

impl S3Payloads {
    /// `client` is `None` when no bucket is allowed: pointers are then dead letters that say
    /// how to allow their bucket.
    pub fn new(client: Option<Client>, settings: PayloadSettings, call_timeout: Duration) -> Self {
        S3Payloads {
            client,
            settings,
            call_timeout,
            fetched: Arc::default(),
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.settings.max_bytes
    }

    /// The payload `pointer` names, tried a few times before giving up on this delivery.
    pub async fn fetch(&self, pointer: &Pointer) -> Result<String, FetchError> {
        let Some(client) = self
            .client
            .as_ref()
            .filter(|_| self.settings.buckets.contains(&pointer.bucket))
        else {
            return Err(FetchError::Permanent(format!(
                "body points to payload object {} in a bucket masq may not read: allow it with \
                 --s3-payload-bucket {}",
                pointer.url(),
                pointer.bucket
            )));
        };
        let mut last = None;
        for attempt in 1..=FETCH_ATTEMPTS {
            match self.fetch_once(client, pointer).await {
                Ok(text) => return Ok(text),
                Err(e @ FetchError::Permanent(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
            if attempt < FETCH_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn fetch_once(&self, client: &Client, pointer: &Pointer) -> Result<String, FetchError> {
        let url = pointer.url();
        let request = client
            .get_object()
            .bucket(&pointer.bucket)
            .key(&pointer.key)
            .send();
        let out = match tokio::time::timeout(self.call_timeout, request).await {
            Err(_) => {
                return Err(FetchError::Passing(format!(
                    "payload object {url}: S3 did not answer within {} s",
                    self.call_timeout.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(classify(&url, &e)),
            Ok(Ok(out)) => out,
        };
        let cap = self.settings.max_bytes;
        let too_big = |size: u64| {
            FetchError::Permanent(format!(
                "payload object {url} is {size} bytes, over --s3-max-payload-bytes {cap}: raise it \
                 (and --policy-memory-mb) to take such payloads"
            ))
        };
        if let Some(size) = out.content_length().filter(|n| *n as u64 > cap as u64) {
            return Err(too_big(size as u64));
        }
        // Read with the cap as the limit: a server's length header is not a promise.
        let mut body = out.body;
        let mut bytes = Vec::new();
        let read = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    FetchError::Passing(format!("payload object {url}: reading it failed ({e})"))
                })?;
                if bytes.len() + chunk.len() > cap {
                    return Err(too_big((bytes.len() + chunk.len()) as u64));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(self.call_timeout, read).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(FetchError::Passing(format!(
                    "payload object {url}: reading it took over {} s",
                    self.call_timeout.as_secs()
                )));
            }
        }
        String::from_utf8(bytes).map_err(|e| {
            FetchError::Permanent(format!(
                "payload object {url} is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })
    }

    /// A delivery's payload was fetched: its object is deleted after its commit (if asked).
    pub fn remember(&self, receipt: &str, pointer: Pointer) {
        if self.settings.delete_after_commit {
            self.fetched
                .lock()
                .expect("payload lock")
                .insert(receipt.to_string(), pointer);
        }
    }

    /// The deliveries went back to the queue: their objects stay.
    pub fn forget(&self, receipts: &[&str]) {
        if !self.settings.delete_after_commit {
            return;
        }
        let mut fetched = self.fetched.lock().expect("payload lock");
        for r in receipts {
            fetched.remove(*r);
        }
    }

    /// The messages are committed (their rows or dead letters hold what the objects held):
    /// deletes their objects. A failed delete leaves the object, says so, and loses nothing.
    pub async fn committed(&self, receipts: &[&str]) {
        let Some(client) = &self.client else { return };
        let objects: Vec<Pointer> = {
            let mut fetched = self.fetched.lock().expect("payload lock");
            receipts.iter().filter_map(|r| fetched.remove(*r)).collect()
        };
        let deletes = objects.iter().map(|p| async move {
            let request = client.delete_object().bucket(&p.bucket).key(&p.key).send();
            match tokio::time::timeout(self.call_timeout, request).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(
                    object = ?p.url(),
                    error = %short(&e),
                    "payload object not deleted after its commit; it stays in S3"
                ),
                Err(_) => tracing::warn!(
                    object = ?p.url(),
                    "S3 did not answer a delete in time; the payload object stays in S3"
                ),
            }
        });
        futures_util::future::join_all(deletes).await;
    }
}

/// A missing object or bucket is permanent (retried a few times in one receive, for a writer
/// that is a moment late); everything else may pass (a refusal included: a policy being
/// fixed).
fn classify<E>(url: &str, e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
    // A HEAD-like answer without a body has no code: its status says it.
    let not_found = matches!(e, SdkError::ServiceError(s) if s.raw().status().as_u16() == 404);
    let missing = matches!(code, "NoSuchKey" | "NoSuchBucket" | "NotFound") || not_found;
    if missing {
        FetchError::Missing(format!(
            "payload object {url} does not exist ({}): the dead letter keeps the pointer: \
             restore the object and send the pointer to the queue again",
            if code.is_empty() { "404" } else { code }
        ))
    } else {
        FetchError::Passing(format!(
            "payload object {url} could not be fetched ({})",
            short(e)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_recognised_and_others_left_alone() {
        let p = Pointer {
            bucket: "payloads".into(),
            key: "a/b-1".into(),
        };
        assert_eq!(pointer(&p.body()), Some(Ok(p.clone())));
        // As the Java client writes it, with spaces.
        let spaced = format!(
            r#"[ "{POINTER_CLASS}", {{ "s3BucketName" : "payloads", "s3Key" : "a/b-1" }} ]"#
        );
        assert_eq!(pointer(&spaced), Some(Ok(p)));
        for body in [
            r#"{"user_id": "u1"}"#,
            r#"["not", "a", "pointer"]"#,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer" broken"#,
        ] {
            assert_eq!(pointer(body), None, "{body}");
        }
    }

    #[test]
    fn malformed_pointers_name_the_field() {
        let body = format!(r#"["{POINTER_CLASS}", {{"s3BucketName": "b"}}]"#);
        assert_eq!(
            pointer(&body),
            Some(Err(
                "malformed S3 payload pointer: field 's3Key' is missing".into()
            ))
        );
        let body = format!(r#"["{POINTER_CLASS}", {{"s3BucketName": 7, "s3Key": "k"}}]"#);
        assert!(
            pointer(&body)
                .unwrap()
                .unwrap_err()
                .contains("'s3BucketName'")
        );
        let body = format!(r#"["{POINTER_CLASS}"]"#);
        assert!(pointer(&body).unwrap().is_err());
    }

    #[tokio::test]
    async fn a_bucket_not_allowed_is_never_read() {
        let payloads = S3Payloads::new(None, PayloadSettings::default(), Duration::from_secs(1));
        let p = Pointer {
            bucket: "secrets".into(),
            key: "k".into(),
        };
        match payloads.fetch(&p).await {
            Err(FetchError::Permanent(why)) => {
                assert!(why.contains("--s3-payload-bucket secrets"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
