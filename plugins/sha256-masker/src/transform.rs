//! The masking of one record. Free of bindings calls so it also runs natively (unit tests,
//! and the native baseline in `just bench`): the host import that masks a value comes in as a
//! closure, `pseudonymize` here and `seal` in seal-masker, which shares this file.

use crate::masq::policy::types::{Field, Outcome, Record, Value};
use crate::settings::Settings;
use crate::version;

/// Masks one record, or rejects it with every problem found, each naming its field.
pub fn transform_record(
    settings: &Settings,
    record: Record,
    mask: &mut dyn FnMut(&str) -> String,
) -> Outcome {
    let fields = record.fields;
    let mut problems = Vec::new();

    let missing: Vec<&str> = settings
        .required
        .iter()
        .filter(|name| !fields.iter().any(|f| &f.name == *name))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Outcome::Reject(format!("missing field(s): {}", missing.join(", ")));
    }

    let mut out = Vec::with_capacity(fields.len() + 1);
    for field in fields {
        let name = field.name;
        if matches!(field.value, Value::Null)
            && settings.required.contains(&name)
            && !settings.nullable.contains(&name)
        {
            problems.push(format!("field '{name}' is null and may not be"));
            continue;
        }
        if settings.date_field.as_ref() == Some(&name) {
            continue; // set below from the message's send time, never from the body
        }
        if let Some((_, target)) = settings.mask.iter().find(|(source, _)| *source == name) {
            match field.value {
                Value::Text(raw) => out.push(Field {
                    name: target.clone(),
                    value: Value::Text(mask(&raw)),
                }),
                Value::Null => out.push(Field {
                    name: target.clone(),
                    value: Value::Null,
                }),
                other => problems.push(format!(
                    "field '{name}' must be a string to be masked, got {}",
                    kind(&other)
                )),
            }
            continue;
        }
        if settings.version_field.as_ref() == Some(&name) {
            match field.value {
                Value::Text(v) => match version::encode(&v) {
                    Ok(n) => out.push(Field {
                        name,
                        value: Value::Integer(n),
                    }),
                    Err(why) => problems.push(format!("field '{name}': {why}")),
                },
                Value::Null => out.push(Field {
                    name,
                    value: Value::Null,
                }),
                other => problems.push(format!(
                    "field '{name}' must be a version string such as \"2.3.0\", got {}",
                    kind(&other)
                )),
            }
            continue;
        }
        out.push(Field {
            name,
            value: field.value,
        });
    }
    if !problems.is_empty() {
        return Outcome::Reject(problems.join("; "));
    }
    if let Some(date_field) = &settings.date_field {
        out.push(Field {
            name: date_field.clone(),
            value: Value::Text(utc_date(record.metadata.sent_timestamp_ms)),
        });
    }
    Outcome::Keep(out)
}

fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("number {f}"),
        Value::Text(_) => "string".into(),
        Value::Json(j) if j.starts_with('[') => "an array".into(),
        Value::Json(_) => "an object".into(),
    }
}

/// `YYYY-MM-DD` of a Unix time in milliseconds, UTC (proleptic Gregorian calendar).
pub fn utc_date(ms: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm; exact for every u64 millisecond count we can get.
    let days = (ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masq::policy::types::Metadata;

    fn record(json: &[(&str, Value)]) -> Record {
        Record {
            metadata: Metadata {
                message_id: "m1".into(),
                sent_timestamp_ms: 1_669_852_800_000 + 3_600_000, // 2022-12-01T01:00Z
                receive_count: 1,
                source: "test".into(),
            },
            fields: json
                .iter()
                .map(|(n, v)| Field {
                    name: n.to_string(),
                    value: v.clone(),
                })
                .collect(),
        }
    }

    fn login(app_version: Value, ip: Value, locale: Value) -> Record {
        record(&[
            ("user_id", Value::Text("u-1".into())),
            ("app_version", app_version),
            ("device_type", Value::Text("ios".into())),
            ("ip", ip),
            ("locale", locale),
            ("device_id", Value::Text("593-47-5928".into())),
        ])
    }

    fn fake_token(v: &str) -> String {
        format!("tok({v})")
    }

    fn get<'a>(fields: &'a [Field], name: &str) -> Option<&'a Value> {
        fields.iter().find(|f| f.name == name).map(|f| &f.value)
    }

    #[test]
    fn masks_encodes_and_dates_a_login() {
        let out = transform_record(
            &Settings::default(),
            login(
                Value::Text("2.3.0".into()),
                Value::Text("1.2.3.4".into()),
                Value::Null,
            ),
            &mut fake_token,
        );
        let Outcome::Keep(fields) = out else {
            panic!("rejected: {out:?}")
        };
        assert_eq!(
            get(&fields, "masked_ip"),
            Some(&Value::Text("tok(1.2.3.4)".into()))
        );
        assert_eq!(
            get(&fields, "masked_device_id"),
            Some(&Value::Text("tok(593-47-5928)".into()))
        );
        assert_eq!(get(&fields, "ip"), None);
        assert_eq!(get(&fields, "device_id"), None);
        assert_eq!(
            get(&fields, "app_version"),
            Some(&Value::Integer(2_003_000))
        );
        assert_eq!(get(&fields, "locale"), Some(&Value::Null));
        assert_eq!(
            get(&fields, "create_date"),
            Some(&Value::Text("2022-12-01".into()))
        );
        assert_eq!(fields.len(), 7);
    }

    #[test]
    fn rejects_name_the_field() {
        let reason = |r: Record| match transform_record(&Settings::default(), r, &mut fake_token) {
            Outcome::Reject(why) => why,
            other => panic!("not rejected: {other:?}"),
        };
        let foreign = record(&[
            ("foo", Value::Text("oops".into())),
            ("bar", Value::Text("123".into())),
        ]);
        assert_eq!(
            reason(foreign),
            "missing field(s): user_id, app_version, device_type, ip, locale, device_id"
        );
        assert_eq!(
            reason(login(
                Value::Integer(7),
                Value::Text("1.2.3.4".into()),
                Value::Null
            )),
            "field 'app_version' must be a version string such as \"2.3.0\", got integer 7"
        );
        assert_eq!(
            reason(login(Value::Text("2.0".into()), Value::Null, Value::Null)),
            "field 'ip' is null and may not be"
        );
        assert_eq!(
            reason(login(
                Value::Text("2.0".into()),
                Value::Integer(1),
                Value::Null
            )),
            "field 'ip' must be a string to be masked, got integer 1"
        );
        assert!(
            reason(login(
                Value::Text("v2".into()),
                Value::Text("x".into()),
                Value::Null
            ))
            .starts_with("field 'app_version': 'v2' is not")
        );
    }

    #[test]
    fn dates_come_from_the_send_time_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_669_852_799_999), "2022-11-30");
        assert_eq!(utc_date(1_669_852_800_000), "2022-12-01");
        assert_eq!(utc_date(4_102_444_800_000), "2100-01-01");
    }
}
