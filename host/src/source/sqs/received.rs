//! A receive, shaped before the pipeline sees it: each message with its id, receipt, send
//! time, delivery count and attributes; an SNS envelope unwrapped (`envelope`), a payload
//! fetched from S3 (`s3_payload`), and on a FIFO queue the later messages of a group held back
//! with an earlier one (`fifo`). What cannot be read becomes the message's dead-letter reason.

use super::super::envelope;
use super::super::s3_payload::{self, FetchError};
use super::super::{Message, fifo};
use super::http::ReceivedMessage;
use super::{S3_DELIVERIES, SqsSource};
use crate::sink::sql::storable;
use std::time::Duration;

impl SqsSource {
    /// One long-poll receive of up to ten messages, shaped for the pipeline (`shape`).
    pub async fn receive_messages(&self, wait_seconds: i32) -> anyhow::Result<Vec<Message>> {
        let request = self
            .http
            .receive(&self.queue_url, wait_seconds, self.visibility);
        let wait = Duration::from_secs(wait_seconds.max(0) as u64);
        let received = self.call("receive from", wait, request).await?;
        let messages = received.into_iter().filter_map(message_of).collect();
        Ok(self.shape(messages).await)
    }

    /// Unwraps envelopes and fetches payloads; what cannot be read becomes the message's
    /// dead-letter reason. Messages whose payload S3 cannot give right now go back to the
    /// queue (on a FIFO queue with every later message of their group) and are not returned.
    async fn shape(&self, mut messages: Vec<Message>) -> Vec<Message> {
        let mut pointers = Vec::with_capacity(messages.len());
        for m in messages.iter_mut() {
            pointers.push(None);
            match envelope::unwrap(self.envelope, &m.body) {
                Ok(None) => {}
                Ok(Some(inner)) => {
                    m.body = inner.message;
                    m.attributes.extend(inner.attributes);
                }
                Err(reason) => {
                    m.unreadable = Some(storable(&reason).into_owned());
                    continue;
                }
            }
            match s3_payload::pointer(&m.body) {
                None => {}
                Some(Ok(pointer)) => *pointers.last_mut().expect("pushed") = Some(pointer),
                Some(Err(reason)) => m.unreadable = Some(storable(&reason).into_owned()),
            }
        }
        if pointers.iter().all(Option::is_none) {
            return messages;
        }
        let fetches = pointers.iter().map(|p| async move {
            match p {
                Some(p) => Some(self.payloads.fetch(p).await),
                None => None,
            }
        });
        let fetched = futures_util::future::join_all(fetches).await;
        let mut held_back = vec![false; messages.len()];
        for (i, result) in fetched.into_iter().enumerate() {
            let (Some(result), Some(pointer)) = (result, &pointers[i]) else {
                continue;
            };
            let m = &mut messages[i];
            match result {
                Ok(payload) => {
                    m.body = payload;
                    m.body_limit = self.payloads.max_bytes();
                    m.attributes
                        .push(("s3.bucket".into(), pointer.bucket.clone()));
                    m.attributes.push(("s3.key".into(), pointer.key.clone()));
                }
                // Reasons name the bucket and key, which come from the message: storable, as
                // every reason (and escaped in logs).
                Err(FetchError::Missing(why) | FetchError::Permanent(why)) => {
                    m.unreadable = Some(storable(&why).into_owned())
                }
                Err(FetchError::Passing(why)) if m.receive_count >= S3_DELIVERIES => {
                    let why = format!("{why}; given up after {S3_DELIVERIES} deliveries");
                    m.unreadable = Some(storable(&why).into_owned())
                }
                Err(FetchError::Passing(why)) => {
                    tracing::warn!(
                        message_id = %m.id,
                        delivery = m.receive_count,
                        error = ?why,
                        "payload not fetched; the message goes back to the queue and is tried again"
                    );
                    held_back[i] = true;
                }
            }
        }
        if self.fifo {
            let groups: Vec<Option<&str>> = messages.iter().map(group_of).collect();
            fifo::hold_back_followers(&groups, &mut held_back);
        }
        // Backwards: a FIFO server that puts a message back at the front of its group then
        // keeps the group's order.
        let back: Vec<&str> = messages
            .iter()
            .zip(&held_back)
            .rev()
            .filter(|(_, held)| **held)
            .map(|(m, _)| m.receipt.as_str())
            .collect();
        if !back.is_empty() {
            let deliveries = messages.iter().map(|m| m.receive_count).max().unwrap_or(1);
            let delay = (10 * deliveries as i32).min(300);
            self.set_visibility(&back, delay).await;
        }
        let mut kept = Vec::with_capacity(messages.len());
        for ((m, held), pointer) in messages.into_iter().zip(held_back).zip(pointers) {
            if held {
                continue;
            }
            if let Some(pointer) = pointer.filter(|_| m.unreadable.is_none()) {
                self.payloads.remember(&m.receipt, pointer);
            }
            kept.push(m);
        }
        kept
    }
}

/// A message's `MessageGroupId`, on a FIFO queue.
fn group_of(m: &Message) -> Option<&str> {
    m.attributes
        .iter()
        .find(|(name, _)| name == "MessageGroupId")
        .map(|(_, v)| v.as_str())
}

/// A received message for the pipeline; `None` (with a warning) for one without id or
/// receipt handle, which only a broken server sends.
fn message_of(m: ReceivedMessage) -> Option<Message> {
    let (Some(id), Some(receipt)) = (m.message_id, m.receipt_handle) else {
        tracing::warn!(
            "SQS returned a message without id or receipt handle; skipped, it will reappear"
        );
        return None;
    };
    let sent_ms = m
        .attributes
        .get("SentTimestamp")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            // Only a broken server omits it; the date then is the receive date, said loudly.
            tracing::warn!(
                message_id = id,
                "message has no SentTimestamp; using the time of receipt"
            );
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        });
    let receive_count = m
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut message = Message::new(
        id,
        receipt,
        m.body.unwrap_or_default(),
        sent_ms,
        receive_count,
    );
    message.attributes = attributes_of(m.attributes, m.message_attributes);
    Some(message)
}

/// A received message's attributes: system attributes by their AWS names, then message
/// attributes by their names, each sorted by name (both maps already are). Binary attribute
/// values are base64, as SQS's JSON carries them.
fn attributes_of(
    system: std::collections::BTreeMap<String, String>,
    own: std::collections::BTreeMap<String, super::http::AttributeValue>,
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = system.into_iter().collect();
    all.extend(own.into_iter().filter_map(|(name, value)| {
        let text = value.string_value.or(value.binary_value)?;
        Some((name, text))
    }));
    all
}

#[cfg(test)]
mod tests {
    use super::super::http::AttributeValue;
    use super::*;

    #[test]
    fn attributes_keep_their_aws_names_and_values() {
        let system = [
            ("MessageGroupId", "g1"),
            ("ApproximateFirstReceiveTimestamp", "1700000000000"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into_iter()
        .collect();
        let value = |s: Option<&str>, b: Option<&str>| AttributeValue {
            string_value: s.map(str::to_string),
            binary_value: b.map(str::to_string),
        };
        let own = [
            ("tenant".to_string(), value(Some("acme"), None)),
            ("blob".to_string(), value(None, Some("aGk="))),
            ("empty".to_string(), value(None, None)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            attributes_of(system, own),
            [
                ("ApproximateFirstReceiveTimestamp", "1700000000000"),
                ("MessageGroupId", "g1"),
                ("blob", "aGk="),
                ("tenant", "acme"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
