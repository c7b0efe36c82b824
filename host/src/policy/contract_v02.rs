//! Contract 0.2 (`wit/v0.2/policy.wit`): its generated bindings, and the calls into a 0.2
//! policy. The host's records become one columnar batch (each field name once, values by
//! kind), and the policy's columns of kept rows become the host's rows again. Nothing here
//! trusts the policy's shapes: a column of the wrong length fails the batch, by name.

use super::imports::Sandbox;
use super::packed::{self, BadTexts};
use super::record::Record;
use super::{Field, LogSecrets, Outcome, Value};
use crate::pipeline::scrub::Secrets;
use masq::policy::types;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use wasmtime::Store;

// The imports that check what the policy hands them: a bad packed column or a seal without
// a key fails the batch.
contract_bindings!(
    "../wit/v0.2",
    "masq:policy/seal.seal-batch",
    "masq:policy/seal.seal-packed",
    "masq:policy/pseudonym.pseudonymize-packed"
);

/// The name masq prints for this contract.
pub const CONTRACT: &str = "masq:policy@0.2.0";

/// What a 0.2 policy's answer was missing to be read as rows.
#[derive(Debug)]
pub struct Malformed(pub String);

/// Calls `transform` on a batch and reads its answer back as one outcome per record.
/// `Ok(Err(..))`: the policy ran but its answer has the wrong shape.
pub fn transform(
    plugin: &PolicyPlugin,
    store: &mut Store<Sandbox>,
    records: &[Record],
) -> wasmtime::Result<Result<Vec<Outcome>, Malformed>> {
    let batch = Arc::new(to_batch(records));
    store.data_mut().log_secrets = Some(batch.clone());
    let answer = plugin.masq_policy_policy().call_transform(store, &batch)?;
    Ok(rows(answer, records.len()))
}

/// The records as columns: every field name once, in the order the names first appear.
pub fn to_batch(records: &[Record]) -> types::Batch {
    let n = records.len();
    // Per column, each record's value (`None`: the record lacks the field).
    let mut columns: Vec<(&str, Vec<Option<&Value>>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::default();
    for (i, record) in records.iter().enumerate() {
        for (position, field) in record.fields.iter().enumerate() {
            // Records of one batch almost always share their fields' order: look there first.
            let c = if columns
                .get(position)
                .is_some_and(|(name, _)| *name == field.name)
            {
                position
            } else if let Some(&c) = index.get(field.name.as_str()) {
                c
            } else {
                columns.push((&field.name, vec![None; n]));
                index.insert(&field.name, columns.len() - 1);
                columns.len() - 1
            };
            columns[c].1[i] = Some(&field.value);
        }
    }
    types::Batch {
        size: n as u32,
        source: records
            .first()
            .map(|r| r.metadata.source.to_string())
            .unwrap_or_default(),
        columns: columns
            .into_iter()
            .map(|(name, cells)| column(name, &cells))
            .collect(),
        metadata: records
            .iter()
            .map(|r| types::Metadata {
                message_id: r.metadata.message_id.clone(),
                sent_timestamp_ms: r.metadata.sent_timestamp_ms,
                receive_count: r.metadata.receive_count,
                attributes: r.metadata.attributes.clone(),
            })
            .collect(),
    }
}

/// The kind every present, non-null value of a column shares, if they share one.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Boolean,
    Integer,
    Float,
    Text,
    Json,
}

fn kind(v: &Value) -> Option<Kind> {
    match v {
        Value::Null => None,
        Value::Boolean(_) => Some(Kind::Boolean),
        Value::Integer(_) => Some(Kind::Integer),
        Value::Float(_) => Some(Kind::Float),
        Value::Text(_) => Some(Kind::Text),
        Value::Json(_) => Some(Kind::Json),
    }
}

fn column(name: &str, cells: &[Option<&Value>]) -> types::Column {
    let missing = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_none())
        .map(|(i, _)| i as u32)
        .collect();
    let mut kinds = cells.iter().flatten().filter_map(|v| kind(v));
    let first = kinds.next();
    let shared = match first {
        Some(k) if kinds.all(|other| other == k) => Some(k),
        _ => None,
    };
    let values = match (first, shared) {
        (None, _) => types::Values::Null,
        (Some(_), None) => types::Values::Mixed(
            cells
                .iter()
                .map(|c| c.map_or(types::Value::Null, to_wire_value))
                .collect(),
        ),
        (_, Some(k)) => typed(k, cells),
    };
    types::Column {
        name: name.to_string(),
        values,
        missing,
    }
}

/// A column whose values all share kind `k` (or are null / missing).
fn typed(k: Kind, cells: &[Option<&Value>]) -> types::Values {
    macro_rules! each {
        ($case:ident, $pat:pat => $out:expr) => {
            types::Values::$case(
                cells
                    .iter()
                    .map(|c| match c {
                        Some($pat) => Some($out),
                        _ => None,
                    })
                    .collect(),
            )
        };
    }
    match k {
        Kind::Boolean => each!(Boolean, Value::Boolean(b) => *b),
        Kind::Integer => each!(Integer, Value::Integer(i) => *i),
        Kind::Float => each!(Float, Value::Float(f) => *f),
        Kind::Text => packed(cells, |v| match v {
            Value::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .map_or_else(
            || each!(Text, Value::Text(t) => t.clone()),
            types::Values::PackedText,
        ),
        Kind::Json => packed(cells, |v| match v {
            Value::Json(j) => Some(j.as_str()),
            _ => None,
        })
        .map_or_else(
            || each!(Json, Value::Json(j) => j.clone()),
            types::Values::PackedJson,
        ),
    }
}

/// A text or JSON column packed (one buffer, not a string per value); `None` past 4 GiB.
fn packed<'a>(
    cells: &[Option<&'a Value>],
    text: impl Fn(&'a Value) -> Option<&'a str>,
) -> Option<types::Texts> {
    super::packed::pack(cells.iter().map(|c| c.and_then(&text)))
}

fn to_wire_value(v: &Value) -> types::Value {
    match v {
        Value::Null => types::Value::Null,
        Value::Boolean(b) => types::Value::Boolean(*b),
        Value::Integer(i) => types::Value::Integer(*i),
        Value::Float(f) => types::Value::Float(*f),
        Value::Text(t) => types::Value::Text(t.clone()),
        Value::Json(j) => types::Value::Json(j.clone()),
    }
}

fn from_wire_value(v: types::Value) -> Value {
    match v {
        types::Value::Null => Value::Null,
        types::Value::Boolean(b) => Value::Boolean(b),
        types::Value::Integer(i) => Value::Integer(i),
        types::Value::Float(f) => Value::Float(f),
        types::Value::Text(t) => Value::Text(t),
        types::Value::Json(j) => Value::Json(j),
    }
}

/// A column's values one record at a time, moved out rather than copied (a packed column's
/// checked and copied out of its buffer).
fn cells(values: types::Values, n: usize) -> Result<Box<dyn Iterator<Item = Value>>, BadTexts> {
    fn each<T: 'static>(
        list: Vec<Option<T>>,
        f: impl Fn(T) -> Value + 'static,
    ) -> Box<dyn Iterator<Item = Value>> {
        Box::new(list.into_iter().map(move |v| v.map_or(Value::Null, &f)))
    }
    fn unpack(
        texts: &types::Texts,
        n: usize,
        f: impl Fn(String) -> Value,
    ) -> Result<Box<dyn Iterator<Item = Value>>, BadTexts> {
        let values: Vec<Value> = packed::check(texts, n)?
            .values()
            .map(|v| v.map_or(Value::Null, |v| f(v.to_string())))
            .collect();
        Ok(Box::new(values.into_iter()))
    }
    Ok(match values {
        types::Values::Null => Box::new(std::iter::repeat_n(Value::Null, n)),
        types::Values::Boolean(l) => each(l, Value::Boolean),
        types::Values::Integer(l) => each(l, Value::Integer),
        types::Values::Float(l) => each(l, Value::Float),
        types::Values::Text(l) => each(l, Value::Text),
        types::Values::Json(l) => each(l, Value::Json),
        types::Values::PackedText(t) => unpack(&t, n, Value::Text)?,
        types::Values::PackedJson(t) => unpack(&t, n, Value::Json)?,
        types::Values::Mixed(l) => Box::new(l.into_iter().map(from_wire_value)),
    })
}

fn len(values: &types::Values) -> Option<usize> {
    match values {
        types::Values::Null => None,
        types::Values::Boolean(l) => Some(l.len()),
        types::Values::Integer(l) => Some(l.len()),
        types::Values::Float(l) => Some(l.len()),
        types::Values::Text(l) => Some(l.len()),
        types::Values::Json(l) => Some(l.len()),
        types::Values::PackedText(t) | types::Values::PackedJson(t) => Some(t.ends.len()),
        types::Values::Mixed(l) => Some(l.len()),
    }
}

/// The policy's answer as one outcome per record: a kept record's fields are its entries of
/// the output columns (in column order), but for the columns that list it as missing.
fn rows(answer: types::Transformed, n: usize) -> Result<Vec<Outcome>, Malformed> {
    if answer.outcomes.len() != n {
        return Err(Malformed(format!(
            "{} outcomes for {n} records",
            answer.outcomes.len()
        )));
    }
    let mut columns = Vec::with_capacity(answer.columns.len());
    for c in answer.columns {
        if let Some(got) = len(&c.values).filter(|&l| l != n) {
            return Err(Malformed(format!(
                "output column '{}' holds {got} values for {n} records",
                c.name.chars().take(64).collect::<String>()
            )));
        }
        let mut missing = c.missing;
        missing.sort_unstable();
        let values = cells(c.values, n).map_err(|BadTexts(why)| {
            Malformed(format!(
                "output column '{}' is packed wrongly: {why}",
                c.name.chars().take(64).collect::<String>()
            ))
        })?;
        columns.push((c.name, values, missing));
    }
    let mut out = Vec::with_capacity(n);
    for (i, outcome) in answer.outcomes.into_iter().enumerate() {
        // Every column yields one value per record, kept or not, to stay in step.
        let mut fields = Vec::new();
        let keep = matches!(outcome, types::Outcome::Keep);
        if keep {
            fields.reserve(columns.len());
        }
        for (name, values, missing) in &mut columns {
            let value = values.next().unwrap_or(Value::Null);
            if keep && missing.binary_search(&(i as u32)).is_err() {
                fields.push(Field {
                    name: name.clone(),
                    value,
                });
            }
        }
        out.push(match outcome {
            types::Outcome::Keep => Outcome::Keep(fields),
            types::Outcome::Drop => Outcome::Drop,
            types::Outcome::Reject(reason) => Outcome::Reject(reason),
        });
    }
    Ok(out)
}

/// 0.2's description of a policy in the host's (0.1) form: the fields are the same.
pub fn info(i: types::PolicyInfo) -> super::PolicyInfo {
    super::PolicyInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        writes: i.writes,
        settings: i
            .settings
            .into_iter()
            .map(|s| super::Setting {
                name: s.name,
                description: s.description,
                default_value: s.default_value,
            })
            .collect(),
    }
}

impl LogSecrets for types::Batch {
    fn scrub(&self, text: &str, pii: &[String]) -> String {
        let mut secrets = Secrets::default();
        for c in &self.columns {
            let (name, pii) = (c.name.as_str(), pii.contains(&c.name));
            match &c.values {
                types::Values::Null | types::Values::Boolean(_) => {}
                types::Values::Integer(l) => l
                    .iter()
                    .flatten()
                    .for_each(|i| secrets.add_owned(name, i.to_string(), pii)),
                types::Values::Float(l) => l
                    .iter()
                    .flatten()
                    .for_each(|f| secrets.add_owned(name, f.to_string(), pii)),
                types::Values::Text(l) => l
                    .iter()
                    .flatten()
                    .for_each(|t| secrets.add_text(name, t, pii)),
                types::Values::Json(l) => l
                    .iter()
                    .flatten()
                    .for_each(|j| secrets.add_json(name, j, pii)),
                // Packed by masq itself (`to_batch`), so well formed; checked all the same.
                types::Values::PackedText(t) => {
                    if let Ok(c) = packed::check(t, t.ends.len()) {
                        c.values()
                            .flatten()
                            .for_each(|v| secrets.add_text(name, v, pii))
                    }
                }
                types::Values::PackedJson(t) => {
                    if let Ok(c) = packed::check(t, t.ends.len()) {
                        c.values()
                            .flatten()
                            .for_each(|v| secrets.add_json(name, v, pii))
                    }
                }
                types::Values::Mixed(l) => l.iter().for_each(|v| match v {
                    types::Value::Text(t) => secrets.add_text(name, t, pii),
                    types::Value::Json(j) => secrets.add_json(name, j, pii),
                    types::Value::Integer(i) => secrets.add_owned(name, i.to_string(), pii),
                    types::Value::Float(f) => secrets.add_owned(name, f.to_string(), pii),
                    types::Value::Boolean(_) | types::Value::Null => {}
                }),
            }
        }
        secrets.scrub(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Metadata;

    fn record(id: &str, fields: Vec<(&str, Value)>) -> Record {
        Record {
            metadata: Metadata {
                message_id: id.into(),
                sent_timestamp_ms: 7,
                receive_count: 1,
                source: "q".into(),
                attributes: vec![("MessageGroupId".into(), "g1".into())],
            },
            fields: fields
                .into_iter()
                .map(|(name, value)| Field {
                    name: name.into(),
                    value,
                })
                .collect(),
        }
    }

    #[test]
    fn records_become_typed_columns_with_names_once() {
        let batch = to_batch(&[
            record(
                "a",
                vec![
                    ("ip", Value::Text("1.2.3.4".into())),
                    ("n", Value::Integer(1)),
                    ("x", Value::Null),
                ],
            ),
            record(
                "b",
                vec![("n", Value::Text("two".into())), ("ip", Value::Null)],
            ),
        ]);
        assert_eq!(batch.size, 2);
        assert_eq!(batch.source, "q");
        let names: Vec<&str> = batch.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ip", "n", "x"]);
        // Strings are packed: the values' bytes back to back, where each ends, the nulls.
        assert_eq!(
            batch.columns[0].values,
            types::Values::PackedText(types::Texts {
                bytes: b"1.2.3.4".to_vec(),
                ends: vec![7, 7],
                nulls: vec![1],
            })
        );
        assert_eq!(
            batch.columns[1].values,
            types::Values::Mixed(vec![
                types::Value::Integer(1),
                types::Value::Text("two".into())
            ])
        );
        assert_eq!(batch.columns[2].values, types::Values::Null);
        assert_eq!(batch.columns[2].missing, [1]);
        assert_eq!(batch.metadata[1].message_id, "b");
        assert_eq!(
            batch.metadata[0].attributes,
            [("MessageGroupId".to_string(), "g1".to_string())]
        );
    }

    #[test]
    fn kept_records_take_their_entries_of_the_output_columns() {
        let answer = types::Transformed {
            outcomes: vec![
                types::Outcome::Keep,
                types::Outcome::Reject("no".into()),
                types::Outcome::Keep,
            ],
            columns: vec![
                types::Column {
                    name: "a".into(),
                    values: types::Values::Integer(vec![Some(1), Some(2), None]),
                    missing: vec![],
                },
                types::Column {
                    name: "b".into(),
                    values: types::Values::Text(vec![None, None, Some("z".into())]),
                    missing: vec![0],
                },
            ],
        };
        let rows = rows(answer, 3).unwrap();
        assert_eq!(
            rows,
            [
                Outcome::Keep(vec![Field {
                    name: "a".into(),
                    value: Value::Integer(1)
                }]),
                Outcome::Reject("no".into()),
                Outcome::Keep(vec![
                    Field {
                        name: "a".into(),
                        value: Value::Null
                    },
                    Field {
                        name: "b".into(),
                        value: Value::Text("z".into())
                    }
                ]),
            ]
        );
    }

    #[test]
    fn a_packed_output_column_is_read_and_checked() {
        let answer = |texts: types::Texts| types::Transformed {
            outcomes: vec![types::Outcome::Keep; 2],
            columns: vec![types::Column {
                name: "masked_ip".into(),
                values: types::Values::PackedText(texts),
                missing: vec![],
            }],
        };
        let rows_of = |texts| rows(answer(texts), 2);
        let good = rows_of(types::Texts {
            bytes: "tökx".as_bytes().to_vec(),
            ends: vec![4, 5],
            nulls: vec![],
        })
        .unwrap();
        let field = |v: &str| {
            Outcome::Keep(vec![Field {
                name: "masked_ip".into(),
                value: Value::Text(v.into()),
            }])
        };
        assert_eq!(good, [field("tök"), field("x")]);
        // An offset inside a character: the batch fails, naming the column, not the bytes.
        let bad = rows_of(types::Texts {
            bytes: "tökx".as_bytes().to_vec(),
            ends: vec![2, 5],
            nulls: vec![],
        })
        .unwrap_err();
        assert_eq!(
            bad.0,
            "output column 'masked_ip' is packed wrongly: value 0 ends at 2, not between 0 and 5 on a character boundary"
        );
        let short = rows_of(types::Texts {
            bytes: b"a".to_vec(),
            ends: vec![1],
            nulls: vec![],
        })
        .unwrap_err();
        assert_eq!(
            short.0,
            "output column 'masked_ip' holds 1 values for 2 records"
        );
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_refused_by_name() {
        let short = types::Transformed {
            outcomes: vec![types::Outcome::Keep; 2],
            columns: vec![types::Column {
                name: "a".into(),
                values: types::Values::Boolean(vec![Some(true)]),
                missing: vec![],
            }],
        };
        assert_eq!(
            rows(short, 2).unwrap_err().0,
            "output column 'a' holds 1 values for 2 records"
        );
        let few = types::Transformed {
            outcomes: vec![types::Outcome::Drop],
            columns: vec![],
        };
        assert_eq!(rows(few, 2).unwrap_err().0, "1 outcomes for 2 records");
    }
}
