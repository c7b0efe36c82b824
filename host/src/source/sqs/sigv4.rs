//! AWS Signature Version 4 for the SQS JSON calls of `http`, and nothing else: a POST of
//! a JSON body with four headers to one endpoint. Written out here instead of through the
//! `aws-sigv4` crate because that crate, being general, builds the canonical request from
//! parsed parts with an allocation per piece and derives the signing key (four HMACs) for
//! every request: 8% of masq's CPU at loopback. Here the key is derived once a day (it only
//! depends on the date, region, service and secret) and a signature is two SHA-256 hashes
//! and one HMAC. A unit test checks the result against `aws-sigv4` itself.

use aws_credential_types::Credentials;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

/// The headers a signed request carries besides its own (host, content type, target).
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub amz_date: String,
    pub authorization: String,
    /// `x-amz-security-token`, for temporary credentials.
    pub security_token: Option<String>,
}

/// Signs requests for one region and service; keeps the day's signing key.
pub struct Signer {
    region: String,
    service: &'static str,
    /// (date `YYYYMMDD`, access key id, the key derived for them).
    key: Mutex<Option<(String, String, [u8; 32])>>,
}

impl Signer {
    pub fn new(region: &str, service: &'static str) -> Signer {
        Signer {
            region: region.to_string(),
            service,
            key: Mutex::new(None),
        }
    }

    /// Signs `POST path` with the given headers (lowercase names, sorted by name, without
    /// `x-amz-date` and the token: they are added here) and body, at `now`.
    pub fn sign(
        &self,
        credentials: &Credentials,
        now: chrono::DateTime<chrono::Utc>,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Signature {
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let date = &amz_date[..8];
        let token = credentials.session_token();
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 2);
        all.extend_from_slice(headers);
        all.push(("x-amz-date", &amz_date));
        if let Some(token) = token {
            all.push(("x-amz-security-token", token));
        }
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let mut canonical = String::with_capacity(256 + token.map_or(0, str::len));
        canonical.push_str("POST\n");
        canonical.push_str(if path.is_empty() { "/" } else { path });
        canonical.push_str("\n\n");
        for (name, value) in &all {
            let _ = writeln!(canonical, "{name}:{}", value.trim());
        }
        canonical.push('\n');
        let signed_headers = all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(";");
        canonical.push_str(&signed_headers);
        canonical.push('\n');
        canonical.push_str(&hex::encode(Sha256::digest(body)));

        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = self.key_for(date, credentials);
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        Signature {
            authorization: format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                credentials.access_key_id()
            ),
            amz_date,
            security_token: token.map(str::to_string),
        }
    }

    /// The signing key of `date` for these credentials, derived once and kept.
    fn key_for(&self, date: &str, credentials: &Credentials) -> [u8; 32] {
        let mut cached = self.key.lock().expect("not poisoned");
        if let Some((d, id, key)) = cached.as_ref()
            && d == date
            && id == credentials.access_key_id()
        {
            return *key;
        }
        let secret = format!("AWS4{}", credentials.secret_access_key());
        let k_date = hmac(secret.as_bytes(), date.as_bytes());
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, self.service.as_bytes());
        let key = hmac(&k_service, b"aws4_request");
        *cached = Some((
            date.to_string(),
            credentials.access_key_id().to_string(),
            key,
        ));
        key
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The same request signed by `aws-sigv4` (the crate the AWS SDK signs with).
    fn reference(credentials: &Credentials, at: std::time::SystemTime, headers: &[(&str, &str)], body: &[u8]) -> String {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let identity = credentials.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("sqs")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request =
            SignableRequest::new("POST", "http://127.0.0.1:4566/", headers.iter().copied(), SignableBody::Bytes(body))
                .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut http_request = http::Request::post("http://127.0.0.1:4566/").body(()).unwrap();
        instructions.apply_to_request_http1x(&mut http_request);
        http_request.headers()["authorization"].to_str().unwrap().to_string()
    }

    #[test]
    fn signatures_match_the_aws_sdk_signer() {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("host", "127.0.0.1:4566"),
            ("x-amz-target", "AmazonSQS.ReceiveMessage"),
        ];
        let body = br#"{"QueueUrl":"http://127.0.0.1:4566/000000000000/q","MaxNumberOfMessages":10}"#;
        let signer = Signer::new("eu-west-1", "sqs");
        for (token, day) in [(None, 1), (Some("session-token/with+chars=="), 1), (None, 2)] {
            let credentials = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token.map(str::to_string), None, "test");
            let now = chrono::Utc.with_ymd_and_hms(2026, 11, day, 23, 59, 58).unwrap();
            let ours = signer.sign(&credentials, now, "/", &headers, body);
            assert_eq!(ours.authorization, reference(&credentials, now.into(), &headers, body), "token {token:?}, day {day}");
            assert_eq!(ours.security_token.as_deref(), token);
            assert_eq!(ours.amz_date, format!("202611{day:02}T235958Z"));
        }
    }
}
