//! SNS notification envelopes: a queue subscribed to an SNS topic without raw message delivery
//! receives each message wrapped in a JSON envelope. This unwraps it, so the policy sees the
//! message as it was published and the envelope's facts (topic, SNS id, time, attributes) go
//! to the message's attributes. It never reads the inner message itself, and a reason it
//! gives names a field, never a value: the body is untrusted input.

use serde_json::{Map, Value};

/// `--envelope`: what a body may be wrapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Envelope {
    /// Bodies are the messages themselves; an envelope is handed to the policy as it is.
    None,
    /// Every body must be an SNS Notification envelope; anything else is a dead letter.
    Sns,
    /// A body that is an SNS Notification (a JSON object whose `Type` is "Notification" and
    /// that has a `TopicArn`) is unwrapped; any other body is the message itself. See
    /// docs/aws-shapes.md for why this is the default.
    #[default]
    Auto,
}

impl Envelope {
    pub fn parse(s: &str) -> Result<Envelope, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Envelope::None),
            "sns" => Ok(Envelope::Sns),
            "auto" => Ok(Envelope::Auto),
            _ => Err(format!("'{s}' is not an envelope: none, sns or auto")),
        }
    }
}

/// SNS allows ten message attributes per message; an envelope claiming more was not written
/// by SNS, and the bound keeps what a body can add to a message's metadata small.
const MAX_ENVELOPE_ATTRIBUTES: usize = 10;

/// A message taken out of its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrapped {
    /// The message as published.
    pub message: String,
    /// `sns.topic_arn`, `sns.message_id`, `sns.timestamp` (and `sns.subject` when set), then
    /// the envelope's message attributes by their names.
    pub attributes: Vec<(String, String)>,
}

/// What `--envelope` makes of a body: `Ok(None)` when it is the message itself, the unwrapped
/// message, or the reason it is a dead letter (a malformed envelope, or no envelope where one
/// is required).
pub fn unwrap(mode: Envelope, body: &str) -> Result<Option<Unwrapped>, String> {
    match mode {
        Envelope::None => Ok(None),
        Envelope::Sns => match object(body) {
            // Something of an envelope is there: say what is wrong with it.
            Some(envelope) if envelope.contains_key("Type") || envelope.contains_key("TopicArn") => {
                sns(&envelope).map(Some)
            }
            _ => Err(
                "body is not an SNS notification envelope (a JSON object), and --envelope sns \
                 requires one: subscribe the queue without raw message delivery, or use --envelope auto"
                    .to_string(),
            ),
        },
        Envelope::Auto => {
            // Cheap test first: nearly every body of a queue fed directly has neither name.
            if !(body.contains("\"TopicArn\"") && body.contains("\"Type\"")) {
                return Ok(None);
            }
            match object(body) {
                Some(envelope)
                    if envelope.get("Type").and_then(Value::as_str) == Some("Notification")
                        && envelope.contains_key("TopicArn") =>
                {
                    sns(&envelope).map(Some)
                }
                _ => Ok(None),
            }
        }
    }
}

fn object(body: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Reads an SNS Notification envelope; every field SNS always sets must be there, a string.
fn sns(envelope: &Map<String, Value>) -> Result<Unwrapped, String> {
    let text = |name: &str| -> Result<&str, String> {
        match envelope.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(format!(
                "malformed SNS envelope: field '{name}' is not a string"
            )),
            None => Err(format!("malformed SNS envelope: field '{name}' is missing")),
        }
    };
    if text("Type")? != "Notification" {
        return Err(
            "SNS envelope field 'Type' is not \"Notification\" (a subscription confirmation or \
             unsubscribe notice carries no message)"
                .to_string(),
        );
    }
    let topic_arn = text("TopicArn")?;
    if !topic_arn.starts_with("arn:") {
        return Err("malformed SNS envelope: field 'TopicArn' is not an ARN".to_string());
    }
    let message_id = text("MessageId")?;
    let message = text("Message")?;
    let timestamp = text("Timestamp")?;
    if chrono::DateTime::parse_from_rfc3339(timestamp).is_err() {
        return Err(
            "malformed SNS envelope: field 'Timestamp' is not an ISO 8601 time".to_string(),
        );
    }
    let mut attributes = vec![
        ("sns.topic_arn".to_string(), topic_arn.to_string()),
        ("sns.message_id".to_string(), message_id.to_string()),
        ("sns.timestamp".to_string(), timestamp.to_string()),
    ];
    match envelope.get("Subject") {
        None | Some(Value::Null) => {}
        Some(Value::String(subject)) => {
            attributes.push(("sns.subject".to_string(), subject.clone()))
        }
        Some(_) => {
            return Err("malformed SNS envelope: field 'Subject' is not a string".to_string());
        }
    }
    attributes.extend(message_attributes(envelope.get("MessageAttributes"))?);
    Ok(Unwrapped {
        message: message.to_string(),
        attributes,
    })
}

/// The envelope's `MessageAttributes`: `{"name": {"Type": "String", "Value": "..."}}`, in the
/// order they appear.
fn message_attributes(value: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let map = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(
                "malformed SNS envelope: field 'MessageAttributes' is not an object".to_string(),
            );
        }
    };
    if map.len() > MAX_ENVELOPE_ATTRIBUTES {
        return Err(format!(
            "malformed SNS envelope: field 'MessageAttributes' has {} entries (SNS allows {MAX_ENVELOPE_ATTRIBUTES})",
            map.len()
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, attribute) in map {
        match attribute.get("Value") {
            Some(Value::String(v)) => out.push((name.clone(), v.clone())),
            _ => {
                return Err(format!(
                    "malformed SNS envelope: field 'MessageAttributes.{}.Value' is missing or not a string",
                    crate::sink::sql::storable(name)
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(message: &str) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "0b1f-sns",
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:logins",
            "Message": message,
            "Timestamp": "2026-11-29T22:10:00.123Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": {"tenant": {"Type": "String", "Value": "acme"}}
        })
        .to_string()
    }

    #[test]
    fn a_notification_is_unwrapped_with_its_facts() {
        let inner = r#"{"user_id": "u1", "ip": "10.0.0.1"}"#;
        for mode in [Envelope::Sns, Envelope::Auto] {
            let out = unwrap(mode, &envelope(inner)).unwrap().unwrap();
            assert_eq!(out.message, inner);
            assert_eq!(
                out.attributes,
                [
                    ("sns.topic_arn", "arn:aws:sns:us-east-1:000000000000:logins"),
                    ("sns.message_id", "0b1f-sns"),
                    ("sns.timestamp", "2026-11-29T22:10:00.123Z"),
                    ("tenant", "acme"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
            );
        }
        assert_eq!(unwrap(Envelope::None, &envelope(inner)), Ok(None));
    }

    #[test]
    fn auto_leaves_plain_messages_alone() {
        for body in [
            r#"{"user_id": "u1", "Type": "Notification"}"#,
            r#"{"TopicArn": "x", "Type": "Other"}"#,
            r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#,
            "not json at all",
        ] {
            assert_eq!(unwrap(Envelope::Auto, body), Ok(None), "{body}");
        }
    }

    #[test]
    fn sns_mode_requires_an_envelope() {
        for body in [r#"["a"]"#, r#"{"user_id": "u1"}"#] {
            let err = unwrap(Envelope::Sns, body).unwrap_err();
            assert!(err.contains("not an SNS notification envelope"), "{err}");
        }
    }

    #[test]
    fn malformed_envelopes_name_the_field_never_the_value() {
        let mut v: Value = serde_json::from_str(&envelope("{}")).unwrap();
        v.as_object_mut().unwrap().remove("Message");
        let err = unwrap(Envelope::Auto, &v.to_string()).unwrap_err();
        assert_eq!(err, "malformed SNS envelope: field 'Message' is missing");

        let mut v: Value = serde_json::from_str(&envelope("{}")).unwrap();
        v["Timestamp"] = "secret-199.172.111.135".into();
        let err = unwrap(Envelope::Sns, &v.to_string()).unwrap_err();
        assert!(
            err.contains("'Timestamp'") && !err.contains("199.172"),
            "{err}"
        );

        let mut v: Value = serde_json::from_str(&envelope("{}")).unwrap();
        v["MessageAttributes"]["tenant"] = serde_json::json!({"Type": "String", "Value": 7});
        let err = unwrap(Envelope::Sns, &v.to_string()).unwrap_err();
        assert!(err.contains("MessageAttributes.tenant.Value"), "{err}");

        let mut v: Value = serde_json::from_str(&envelope("{}")).unwrap();
        v["Type"] = "SubscriptionConfirmation".into();
        let err = unwrap(Envelope::Sns, &v.to_string()).unwrap_err();
        assert!(err.contains("'Type'"), "{err}");
    }

    #[test]
    fn an_envelope_cannot_add_more_attributes_than_sns_allows() {
        let mut v: Value = serde_json::from_str(&envelope("{}")).unwrap();
        let many: Map<String, Value> = (0..11)
            .map(|i| {
                (
                    format!("a{i}"),
                    serde_json::json!({"Type": "String", "Value": "x"}),
                )
            })
            .collect();
        v["MessageAttributes"] = Value::Object(many);
        let err = unwrap(Envelope::Auto, &v.to_string()).unwrap_err();
        assert!(err.contains("has 11 entries"), "{err}");
    }
}
