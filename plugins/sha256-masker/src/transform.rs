//! The masking of a batch, column by column. Free of bindings calls so it also runs natively
//! (unit tests, and the native baseline in `just bench`): the host import that masks a column
//! comes in as a closure, `pseudonymize-batch` here and `seal-batch` in seal-masker, which
//! shares this file.
//!
//! Each record is judged as 0.1's one-record-at-a-time masker judged it, with the same
//! reasons: the problems of a record are listed in the batch's column order.

use crate::masq::policy::types::{Batch, Column, Outcome, Texts, Transformed, Value, Values};
use crate::packed;
use crate::settings::Settings;
use crate::version;

/// Masks a batch: one outcome per record, and the kept rows as columns. A rejected record
/// lists every problem found, each naming its field. `mask` masks a packed column (nulls
/// stay null).
pub fn transform_batch(
    settings: &Settings,
    batch: Batch,
    mask: &mut dyn FnMut(Texts) -> Texts,
) -> Transformed {
    let n = batch.size as usize;
    let mut reasons: Vec<Option<String>> = vec![None; n];
    missing_required(settings, &batch.columns, &mut reasons);
    // A record without a required field is rejected for that alone, as 0.1 did.
    let skip: Vec<bool> = reasons.iter().map(Option::is_some).collect();
    let problem = |reasons: &mut [Option<String>], i: usize, text: String| match &mut reasons[i] {
        Some(r) => {
            r.push_str("; ");
            r.push_str(&text);
        }
        None => reasons[i] = Some(text),
    };

    let mut out = Vec::with_capacity(batch.columns.len() + 1);
    for column in batch.columns {
        let Column {
            name,
            values,
            missing,
        } = column;
        let present = |i: usize| !skip[i] && missing.binary_search(&(i as u32)).is_err();
        let not_null = settings.required.contains(&name) && !settings.nullable.contains(&name);
        let target = settings
            .mask
            .iter()
            .find(|(source, _)| *source == name)
            .map(|(_, target)| target);
        // A packed text column, as masq sends one, is passed on or masked whole: no value is
        // unpacked. Only the version field reads its values one by one (below).
        let values = match values {
            Values::PackedText(texts) if settings.version_field.as_ref() != Some(&name) => {
                if not_null {
                    for &i in &texts.nulls {
                        if present(i as usize) {
                            problem(
                                &mut reasons,
                                i as usize,
                                format!("field '{name}' is null and may not be"),
                            );
                        }
                    }
                }
                if settings.date_field.as_ref() == Some(&name) {
                    continue; // set below from the message's send time, never from the body
                }
                let (name, texts) = match target {
                    // A column of nulls only costs no call.
                    Some(target) if texts.nulls.len() < texts.ends.len() => {
                        (target.clone(), mask(texts))
                    }
                    Some(target) => (target.clone(), texts),
                    None => (name, texts),
                };
                out.push(Column {
                    name,
                    values: Values::PackedText(texts),
                    missing,
                });
                continue;
            }
            other => other,
        };
        let mut cells = into_cells(values, n);
        if not_null {
            for (i, cell) in cells.iter().enumerate() {
                if present(i) && matches!(cell, Value::Null) {
                    problem(
                        &mut reasons,
                        i,
                        format!("field '{name}' is null and may not be"),
                    );
                }
            }
        }
        if settings.date_field.as_ref() == Some(&name) {
            continue; // set below from the message's send time, never from the body
        }
        if let Some(target) = target {
            // Every value of the column goes to the host in one call.
            let (mut raw, mut at) = (Vec::new(), Vec::new());
            for (i, cell) in cells.iter_mut().enumerate() {
                if !present(i) {
                    continue;
                }
                match std::mem::replace(cell, Value::Null) {
                    Value::Text(text) => {
                        raw.push(text);
                        at.push(i);
                    }
                    Value::Null => {}
                    other => problem(
                        &mut reasons,
                        i,
                        format!(
                            "field '{name}' must be a string to be masked, got {}",
                            kind(&other)
                        ),
                    ),
                }
            }
            let tokens = if raw.is_empty() {
                Vec::new()
            } else {
                let tokens = mask(packed::pack(raw.iter().map(|r| Some(r.as_str()))));
                packed::values(&tokens)
                    .map(|t| t.unwrap_or_default().to_string())
                    .collect()
            };
            let mut masked = vec![None; n];
            for (i, token) in at.into_iter().zip(tokens) {
                masked[i] = Some(token);
            }
            out.push(Column {
                name: target.clone(),
                values: Values::Text(masked),
                missing,
            });
            continue;
        }
        if settings.version_field.as_ref() == Some(&name) {
            let mut encoded = vec![None; n];
            for (i, cell) in cells.iter().enumerate() {
                if !present(i) {
                    continue;
                }
                match cell {
                    Value::Text(v) => match version::encode(v) {
                        Ok(number) => encoded[i] = Some(number),
                        Err(why) => problem(&mut reasons, i, format!("field '{name}': {why}")),
                    },
                    Value::Null => {}
                    other => problem(
                        &mut reasons,
                        i,
                        format!(
                            "field '{name}' must be a version string such as \"2.3.0\", got {}",
                            kind(other)
                        ),
                    ),
                }
            }
            out.push(Column {
                name,
                values: Values::Integer(encoded),
                missing,
            });
            continue;
        }
        out.push(Column {
            name,
            values: from_cells(cells),
            missing,
        });
    }
    if let Some(date_field) = &settings.date_field {
        // Records of a batch mostly share a day: each day is formatted once.
        let mut dates = packed::pack([]);
        let mut day: Option<(u64, String)> = None;
        for (i, (m, reason)) in batch.metadata.iter().zip(&reasons).enumerate() {
            if reason.is_some() {
                packed::push(&mut dates, i, None);
                continue;
            }
            let today = m.sent_timestamp_ms / 86_400_000;
            if day.as_ref().is_none_or(|(d, _)| *d != today) {
                day = Some((today, utc_date(m.sent_timestamp_ms)));
            }
            packed::push(&mut dates, i, day.as_ref().map(|(_, text)| text.as_str()));
        }
        out.push(Column {
            name: date_field.clone(),
            values: Values::PackedText(dates),
            missing: Vec::new(),
        });
    }
    Transformed {
        outcomes: reasons
            .into_iter()
            .map(|r| r.map_or(Outcome::Keep, Outcome::Reject))
            .collect(),
        columns: out,
    }
}

/// Rejects every record that lacks a required field, naming them all in settings order.
fn missing_required(settings: &Settings, columns: &[Column], reasons: &mut [Option<String>]) {
    let found: Vec<Option<&Column>> = settings
        .required
        .iter()
        .map(|r| columns.iter().find(|c| &c.name == r))
        .collect();
    if found
        .iter()
        .all(|c| c.is_some_and(|c| c.missing.is_empty()))
    {
        return; // the usual batch: every record has every required field
    }
    for (i, reason) in reasons.iter_mut().enumerate() {
        let lacking: Vec<&str> = settings
            .required
            .iter()
            .zip(&found)
            .filter(|(_, c)| c.is_none_or(|c| c.missing.binary_search(&(i as u32)).is_ok()))
            .map(|(name, _)| name.as_str())
            .collect();
        if !lacking.is_empty() {
            *reason = Some(format!("missing field(s): {}", lacking.join(", ")));
        }
    }
}

/// A column's values one per record (a missing record's slot is null), moved, not copied.
pub fn into_cells(values: Values, n: usize) -> Vec<Value> {
    fn each<T>(list: Vec<Option<T>>, f: impl Fn(T) -> Value) -> Vec<Value> {
        list.into_iter()
            .map(|v| v.map_or(Value::Null, &f))
            .collect()
    }
    match values {
        Values::Null => vec![Value::Null; n],
        Values::Boolean(l) => each(l, Value::Boolean),
        Values::Integer(l) => each(l, Value::Integer),
        Values::Float(l) => each(l, Value::Float),
        Values::Text(l) => each(l, Value::Text),
        Values::Json(l) => each(l, Value::Json),
        Values::PackedText(t) => unpack(&t, Value::Text),
        Values::PackedJson(t) => unpack(&t, Value::Json),
        Values::Mixed(l) => l,
    }
}

fn unpack(texts: &Texts, f: impl Fn(String) -> Value) -> Vec<Value> {
    packed::values(texts)
        .map(|v| v.map_or(Value::Null, |v| f(v.to_string())))
        .collect()
}

/// Cells back into a column, typed when every non-null value shares a kind.
pub fn from_cells(cells: Vec<Value>) -> Values {
    let kind_of = |v: &Value| std::mem::discriminant(v);
    let mut kinds = cells
        .iter()
        .filter(|v| !matches!(v, Value::Null))
        .map(kind_of);
    let Some(first) = kinds.next() else {
        return Values::Null;
    };
    if kinds.any(|k| k != first) {
        return Values::Mixed(cells);
    }
    macro_rules! typed {
        ($case:ident) => {
            Values::$case(
                cells
                    .into_iter()
                    .map(|v| match v {
                        Value::$case(x) => Some(x),
                        _ => None,
                    })
                    .collect(),
            )
        };
    }
    match cells.iter().find(|v| !matches!(v, Value::Null)) {
        Some(Value::Boolean(_)) => typed!(Boolean),
        Some(Value::Integer(_)) => typed!(Integer),
        Some(Value::Float(_)) => typed!(Float),
        Some(Value::Text(_)) => typed!(Text),
        Some(Value::Json(_)) => typed!(Json),
        _ => Values::Null,
    }
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

    // One record at a time, as 0.1 saw them: each test record is a batch of its own, and the
    // answer is read back as that record's fields (columns not listing it as missing).
    #[derive(Debug)]
    struct Field {
        name: String,
        value: Value,
    }

    #[derive(Debug)]
    enum Outcome {
        Keep(Vec<Field>),
        Reject(String),
        Drop,
    }

    struct Record(Vec<(String, Value)>);

    fn record(json: &[(&str, Value)]) -> Record {
        Record(
            json.iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
        )
    }

    /// The records as masq sends them: text and JSON columns packed.
    fn batch(records: &[Record]) -> Batch {
        let mut batch = unpacked_batch(records);
        for c in &mut batch.columns {
            let packed = |l: &[Option<String>]| packed::pack(l.iter().map(|v| v.as_deref()));
            c.values = match &c.values {
                Values::Text(l) => Values::PackedText(packed(l)),
                Values::Json(l) => Values::PackedJson(packed(l)),
                other => other.clone(),
            };
        }
        batch
    }

    /// The records with a string per text value, as a policy may also be handed them.
    fn unpacked_batch(records: &[Record]) -> Batch {
        let n = records.len();
        let mut columns: Vec<(String, Vec<Option<Value>>)> = Vec::new();
        for (i, Record(fields)) in records.iter().enumerate() {
            for (name, value) in fields {
                let c = match columns.iter().position(|(c, _)| c == name) {
                    Some(c) => c,
                    None => {
                        columns.push((name.clone(), vec![None; n]));
                        columns.len() - 1
                    }
                };
                columns[c].1[i] = Some(value.clone());
            }
        }
        Batch {
            size: n as u32,
            source: "test".into(),
            columns: columns
                .into_iter()
                .map(|(name, cells)| Column {
                    name,
                    missing: (0..n as u32)
                        .filter(|&i| cells[i as usize].is_none())
                        .collect(),
                    values: from_cells(
                        cells
                            .into_iter()
                            .map(|c| c.unwrap_or(Value::Null))
                            .collect(),
                    ),
                })
                .collect(),
            metadata: (0..n)
                .map(|i| Metadata {
                    message_id: format!("m{i}"),
                    sent_timestamp_ms: 1_669_852_800_000 + 3_600_000, // 2022-12-01T01:00Z
                    receive_count: 1,
                    attributes: Vec::new(),
                })
                .collect(),
        }
    }

    fn transform_all(
        settings: &Settings,
        records: &[Record],
        mask: &mut dyn FnMut(&str) -> String,
    ) -> Vec<Outcome> {
        let n = records.len();
        let out = transform_batch(settings, batch(records), &mut |values| {
            packed::map(&values, |v| mask(v))
        });
        let mut columns: Vec<(String, Vec<Value>, Vec<u32>)> = out
            .columns
            .into_iter()
            .map(|c| (c.name, into_cells(c.values, n), c.missing))
            .collect();
        out.outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| match o {
                crate::masq::policy::types::Outcome::Keep => Outcome::Keep(
                    columns
                        .iter_mut()
                        .filter(|(_, _, missing)| !missing.contains(&(i as u32)))
                        .map(|(name, cells, _)| Field {
                            name: name.clone(),
                            value: std::mem::replace(&mut cells[i], Value::Null),
                        })
                        .collect(),
                ),
                crate::masq::policy::types::Outcome::Reject(why) => Outcome::Reject(why),
                crate::masq::policy::types::Outcome::Drop => Outcome::Drop,
            })
            .collect()
    }

    fn transform_record(
        settings: &Settings,
        record: Record,
        mask: &mut dyn FnMut(&str) -> String,
    ) -> Outcome {
        transform_all(settings, &[record], mask).remove(0)
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
    fn a_batch_of_mixed_records_is_judged_record_by_record() {
        let records = [
            login(
                Value::Text("2.3.0".into()),
                Value::Text("1.2.3.4".into()),
                Value::Null,
            ),
            login(
                Value::Integer(7),
                Value::Text("5.6.7.8".into()),
                Value::Null,
            ),
            record(&[("foo", Value::Text("oops".into()))]),
            login(
                Value::Text("1.0".into()),
                Value::Null,
                Value::Text("RU".into()),
            ),
        ];
        let mut calls = 0;
        let out = transform_all(&Settings::default(), &records, &mut |v| {
            calls += 1;
            fake_token(v)
        });
        let Outcome::Keep(fields) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            get(fields, "masked_ip"),
            Some(&Value::Text("tok(1.2.3.4)".into()))
        );
        assert_eq!(get(fields, "locale"), Some(&Value::Null));
        assert_eq!(get(fields, "foo"), None, "a column of other records only");
        assert!(
            matches!(&out[1], Outcome::Reject(why) if why == "field 'app_version' must be a version string such as \"2.3.0\", got integer 7")
        );
        assert!(
            matches!(&out[2], Outcome::Reject(why) if why.starts_with("missing field(s): user_id"))
        );
        assert!(
            matches!(&out[3], Outcome::Reject(why) if why == "field 'ip' is null and may not be")
        );
        // Masked values: ip of records 0 and 1, device_id of records 0, 1 and 3.
        assert_eq!(calls, 5);
    }

    #[test]
    fn dates_come_from_the_send_time_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_669_852_799_999), "2022-11-30");
        assert_eq!(utc_date(1_669_852_800_000), "2022-12-01");
        assert_eq!(utc_date(4_102_444_800_000), "2100-01-01");
    }

    #[test]
    fn text_columns_give_the_same_answer_packed_or_not() {
        let records = [
            login(Value::Text("2.3.0".into()), Value::Text("10.0.0.1".into()), Value::Null),
            login(Value::Text("1.0.0".into()), Value::Null, Value::Text("en".into())),
            record(&[("user_id", Value::Null), ("ip", Value::Integer(4))]),
        ];
        let mut mask = |values: Texts| packed::map(&values, fake_token);
        let packed = transform_batch(&Settings::default(), batch(&records), &mut mask);
        let unpacked = transform_batch(&Settings::default(), unpacked_batch(&records), &mut mask);
        assert_eq!(packed.outcomes, unpacked.outcomes);
        let n = records.len();
        let cells = |t: Transformed| -> Vec<(String, Vec<Value>, Vec<u32>)> {
            t.columns
                .into_iter()
                .map(|c| (c.name, into_cells(c.values, n), c.missing))
                .collect()
        };
        assert_eq!(cells(packed), cells(unpacked));
    }
}
