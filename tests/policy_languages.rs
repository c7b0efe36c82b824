//! The Python and JavaScript policies (python-masker, js-masker) must behave exactly like the
//! Rust sha256-masker, which is the oracle here: same rows, same dead letters with the same
//! reasons, same `describe` but for the name, same answers to every setting.
//!
//! Two levels: the real `masq` binary on the real data set and on bad records, and direct
//! calls into the three components (contract 0.2, with a stand-in pseudonym) on edge cases
//! that a JSON queue can hardly produce, such as u64::MAX timestamps or a float of -0, both
//! as one batch (columns of mixed kinds) and one record per batch.

use crate::support::*;

// ---- Through masq, on the real services ----

#[tokio::test]
async fn python_masker_writes_the_data_set_as_the_rust_masker_does() {
    data_set_matches_rust("python-masker").await;
}

#[tokio::test]
async fn js_masker_writes_the_data_set_as_the_rust_masker_does() {
    data_set_matches_rust("js-masker").await;
}

#[tokio::test]
async fn python_masker_rejects_bad_records_as_the_rust_masker_does() {
    bad_records_match_rust("python-masker").await;
}

#[tokio::test]
async fn js_masker_rejects_bad_records_as_the_rust_masker_does() {
    bad_records_match_rust("js-masker").await;
}

/// The Rust policy's version, which the other languages keep step with.
async fn rust_policy_version(env: &TestEnv) -> String {
    let ledger = env.ledger_policies().await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].0, "sha256-masker");
    ledger[0].1.clone()
}

async fn data_set_matches_rust(plugin_name: &str) {
    let rust = TestEnv::new("lang-rust").await;
    let other = TestEnv::new_sharing_key(&format!("lang-{plugin_name}"), &rust).await;
    let file = fixture("fetch-login-queue/messages.jsonl");
    let day_before = utc_today();
    for env in [&rust, &other] {
        let out = env.masq(&["seed", "--file", file.to_str().unwrap()]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let same_day = utc_today() == day_before;

    let (rust_summary, other_summary) =
        tokio::join!(rust.drain(&[]), other.drain_with(plugin_name, &[]));
    for summary in [&rust_summary, &other_summary] {
        assert!(
            summary.contains("received 100, written 99, dead-lettered 1"),
            "{summary}"
        );
    }

    let (expected, got) = (rust.rows().await, other.rows().await);
    assert_eq!(got.len(), 99);
    assert!(got.iter().all(|r| {
        r.masked_ip
            .as_deref()
            .is_some_and(|t| t.starts_with(&rust.key_id))
    }));
    if same_day {
        assert_eq!(
            got, expected,
            "{plugin_name} wrote other rows than sha256-masker"
        );
    } else {
        // Seeded across midnight UTC: the two queues may date their messages a day apart.
        let undated = |rows: &[LoginRow]| {
            let mut v: Vec<LoginRow> = rows
                .iter()
                .cloned()
                .map(|r| LoginRow {
                    create_date: None,
                    ..r
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            undated(&got),
            undated(&expected),
            "{plugin_name} wrote other rows than sha256-masker"
        );
    }

    let (mut expected_dead, mut got_dead) = (rust.dead_letters().await, other.dead_letters().await);
    expected_dead.sort();
    got_dead.sort();
    assert_eq!(
        got_dead, expected_dead,
        "{plugin_name}'s dead letters differ from sha256-masker's"
    );

    let version = rust_policy_version(&rust).await;
    assert_eq!(
        other.ledger_policies().await,
        [(plugin_name.to_string(), version, 100)]
    );
    assert_eq!(other.depth().await, (0, 0), "queue not empty");
}

async fn bad_records_match_rust(plugin_name: &str) {
    let body = |app_version: &str, ip: &str| {
        format!(
            r#"{{"user_id": "u-1", "app_version": {app_version}, "device_type": "ios", "ip": {ip}, "locale": "US", "device_id": "222-22-2222"}}"#
        )
    };
    // (body, the reason the Rust policy is known to give, when the case pins one down)
    let cases: Vec<(String, Option<&str>)> = vec![
        (body("7", r#""2.2.2.2""#), Some("field 'app_version' must be a version string such as \"2.3.0\", got integer 7")),
        (body(r#""2.3.0""#, "null"), Some("field 'ip' is null and may not be")),
        (
            r#"{"user_id": "u-2", "app_version": "2.3.0", "device_type": "ios", "locale": "US", "device_id": "111-11-1111"}"#.into(),
            Some("missing field(s): ip"),
        ),
        (body(r#""2.x""#, r#""4.4.4.4""#), Some("field 'app_version': '2.x' is not MAJOR.MINOR or MAJOR.MINOR.PATCH with decimal numbers")),
        (r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#.into(), Some("missing field(s): user_id, app_version, device_type, ip, locale, device_id")),
        (body("2.5", "1e21"), None),
        (body("-0.0", "0.30000000000000004"), None),
        (body("1e-7", "true"), None),
        (body("null", r#"["1.1.1.1"]"#), None),
        (body(r#""2147.0""#, r#"{"v4": "1.1.1.1"}"#), None),
        (body(r#""2.3.4.5""#, "1.5e300"), None),
        (body(r#""２.0""#, "-9223372036854775808"), None),
    ];
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();

    let rust = TestEnv::new("badlang-rust").await;
    let other = TestEnv::new_sharing_key(&format!("badlang-{plugin_name}"), &rust).await;
    rust.send(&bodies).await;
    other.send(&bodies).await;
    let _ = tokio::join!(rust.drain(&[]), other.drain_with(plugin_name, &[]));

    let (mut expected, mut got) = (rust.dead_letters().await, other.dead_letters().await);
    expected.sort();
    got.sort();
    assert_eq!(
        expected.len(),
        cases.len(),
        "every case is a dead letter: {expected:#?}"
    );
    assert!(
        expected.iter().all(|(_, _, stage)| stage == "policy"),
        "every case reaches the policy: {expected:#?}"
    );
    for (body, reason) in &cases {
        if let Some(reason) = reason {
            let (_, rust_reason, _) = expected.iter().find(|(b, _, _)| b == body).unwrap();
            assert_eq!(rust_reason, reason, "the oracle itself changed");
        }
    }
    assert_eq!(
        got, expected,
        "{plugin_name}'s dead letters differ from sha256-masker's"
    );
    assert_eq!(other.rows().await, []);
}

// ---- Direct calls into the components ----

mod component {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "policy-plugin",
        additional_derives: [PartialEq],
    });
}

use component::PolicyPlugin;
use component::masq::policy::types::{Batch, Column, Metadata, Outcome, Texts, Value, Values};
use component::masq::policy::{log, pseudonym, types};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

/// The host side for direct calls: a readable stand-in token, and a log nobody reads.
struct StandIn;

impl types::Host for StandIn {}

impl pseudonym::Host for StandIn {
    fn pseudonymize_batch(&mut self, values: Vec<String>) -> Vec<String> {
        values.iter().map(|v| format!("tok({v})")).collect()
    }

    fn pseudonymize_packed(&mut self, values: Texts) -> Texts {
        pack(unpack(&values).map(|v| v.map(|v| format!("tok({v})"))))
    }
}

impl log::Host for StandIn {
    fn log(&mut self, _level: log::Level, _message: String) {}
}

// None of the maskers seals; a call would show up as this marker in a compared row.
impl component::masq::policy::seal::Host for StandIn {
    fn seal_batch(&mut self, values: Vec<String>) -> Vec<String> {
        values.iter().map(|v| format!("sealed({v})")).collect()
    }

    fn seal_packed(&mut self, values: Texts) -> Texts {
        pack(unpack(&values).map(|v| v.map(|v| format!("sealed({v})"))))
    }
}

/// A packed column (`texts`) of these values, as masq packs one.
fn pack(values: impl Iterator<Item = Option<String>>) -> Texts {
    let mut t = Texts {
        bytes: Vec::new(),
        ends: Vec::new(),
        nulls: Vec::new(),
    };
    for (i, v) in values.enumerate() {
        match v {
            Some(v) => t.bytes.extend_from_slice(v.as_bytes()),
            None => t.nulls.push(i as u32),
        }
        t.ends.push(t.bytes.len() as u32);
    }
    t
}

/// A packed column's values, checked as masq checks a policy's (offsets in order and in
/// range, UTF-8, nulls empty): a policy that packs wrongly fails the comparison here.
fn unpack(t: &Texts) -> impl Iterator<Item = Option<String>> + '_ {
    let mut start = 0usize;
    assert!(
        t.nulls.windows(2).all(|w| w[0] < w[1]),
        "nulls out of order: {:?}",
        t.nulls
    );
    assert_eq!(
        t.ends.last().map_or(0, |&e| e as usize),
        t.bytes.len(),
        "bytes after the last value"
    );
    t.ends.iter().enumerate().map(move |(i, &end)| {
        let end = end as usize;
        assert!(
            start <= end && end <= t.bytes.len(),
            "value {i} ends at {end}"
        );
        let value = String::from_utf8(t.bytes[start..end].to_vec()).expect("UTF-8");
        start = end;
        if t.nulls.contains(&(i as u32)) {
            assert!(value.is_empty(), "null {i} is not empty");
            None
        } else {
            Some(value)
        }
    })
}

/// A compiled policy; every call gets a fresh instance, as masq gives every batch one.
struct Loaded {
    name: String,
    engine: Engine,
    component: Component,
    linker: Linker<StandIn>,
}

impl Loaded {
    fn new(name: &str) -> Loaded {
        let engine = Engine::default();
        let component =
            Component::from_file(&engine, plugin(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        // Only masq's own imports, no WASI: a policy that needs anything else fails here.
        let mut linker = Linker::new(&engine);
        PolicyPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
        Loaded {
            name: name.into(),
            engine,
            component,
            linker,
        }
    }

    fn instance(&self) -> (Store<StandIn>, PolicyPlugin) {
        let mut store = Store::new(&self.engine, StandIn);
        let plugin = PolicyPlugin::instantiate(&mut store, &self.component, &self.linker)
            .unwrap_or_else(|e| {
                panic!(
                    "{} does not instantiate with only masq's imports: {e:#}",
                    self.name
                )
            });
        (store, plugin)
    }

    fn describe(&self) -> types::PolicyInfo {
        let (mut store, plugin) = self.instance();
        plugin
            .masq_policy_policy()
            .call_describe(&mut store)
            .unwrap()
    }

    fn configure(&self, config: &Vec<(String, String)>) -> Result<types::Configured, String> {
        let (mut store, plugin) = self.instance();
        plugin
            .masq_policy_policy()
            .call_configure(&mut store, config)
            .unwrap()
    }

    /// Each record's answer, as text: its outcome, and for a kept record its fields (the
    /// output columns that do not list it as missing), in column order.
    fn transform(&self, config: &Vec<(String, String)>, records: &[Row]) -> Vec<String> {
        let (mut store, plugin) = self.instance();
        let policy = plugin.masq_policy_policy();
        policy.call_configure(&mut store, config).unwrap().unwrap();
        let out = policy
            .call_transform(&mut store, &batch(records))
            .unwrap_or_else(|e| panic!("{} trapped: {e:#}", self.name));
        assert_eq!(out.outcomes.len(), records.len(), "{}", self.name);
        out.outcomes
            .iter()
            .enumerate()
            .map(|(i, outcome)| match outcome {
                Outcome::Keep => {
                    let fields: Vec<(String, Value)> = out
                        .columns
                        .iter()
                        .filter(|c| !c.missing.contains(&(i as u32)))
                        .map(|c| (c.name.clone(), cell(&c.values, i)))
                        .collect();
                    // Debug text, not ==, so -0.0 against 0.0 counts as a difference.
                    format!("keep {fields:?}")
                }
                other => format!("{other:?}"),
            })
            .collect()
    }
}

#[test]
fn python_masker_answers_every_call_as_the_rust_masker_does() {
    calls_match_rust("python-masker");
}

#[test]
fn js_masker_answers_every_call_as_the_rust_masker_does() {
    calls_match_rust("js-masker");
}

fn calls_match_rust(name: &str) {
    let (rust, other) = (Loaded::new("sha256-masker"), Loaded::new(name));

    let (expected, got) = (rust.describe(), other.describe());
    assert_eq!(got.name, name);
    let got = types::PolicyInfo {
        name: expected.name.clone(),
        ..got
    };
    assert_eq!(
        format!("{got:#?}"),
        format!("{expected:#?}"),
        "{name}'s describe differs"
    );

    for config in configs_ok().iter().chain(&configs_refused()) {
        let expected = rust
            .configure(config)
            .map_err(|e| e.replace("sha256-masker", name));
        assert_eq!(other.configure(config), expected, "configure {config:?}");
    }
    for config in configs_refused() {
        assert!(
            rust.configure(&config).is_err(),
            "the oracle accepts {config:?}"
        );
    }

    let rows = records();
    for config in configs_ok() {
        // All records in one batch: columns of mixed kinds, records missing fields others have.
        let (expected, got) = (
            rust.transform(&config, &rows),
            other.transform(&config, &rows),
        );
        assert_eq!(got.len(), rows.len());
        for ((row, expected), got) in rows.iter().zip(&expected).zip(&got) {
            assert_eq!(got, expected, "{name}, config {config:?}, record {row:?}");
        }
    }
    // Each record alone: typed columns, every field present.
    let config = config(&[]);
    for row in &rows {
        let one = std::slice::from_ref(row);
        assert_eq!(
            other.transform(&config, one),
            rust.transform(&config, one),
            "{name}, alone: {row:?}"
        );
    }
    // A leading U+FEFF is a character like any other: Rust keeps it, so a policy reading a
    // packed column must too (JavaScript's default TextDecoder drops it). Only packed
    // columns: componentize-js's own glue drops it from a string that crosses on its own (a
    // `mixed` column's text), which no policy can see; policy-authors.md says so.
    let boms: Vec<Row> = ["\u{FEFF}2.0", "2.\u{FEFF}0", "\u{FEFF}"]
        .iter()
        .map(|v| record(SENT, login(&[("app_version", Some(text(v))), ("ip", Some(text(v)))])))
        .collect();
    let (expected, got) = (rust.transform(&config, &boms), other.transform(&config, &boms));
    assert_eq!(got, expected, "{name}, values with U+FEFF");
    assert!(
        expected.iter().all(|o| !o.starts_with("keep")),
        "the oracle keeps a version with U+FEFF: {expected:?}"
    );
}

/// One record of the edge suite: its send time and its fields in order.
#[derive(Debug, Clone)]
struct Row {
    sent_timestamp_ms: u64,
    fields: Vec<(String, Value)>,
}

/// Records as a 0.2 batch, as masq makes one: each name once in the order names first
/// appear, typed columns where every value shares a kind, `mixed` otherwise.
fn batch(rows: &[Row]) -> Batch {
    let n = rows.len();
    let mut columns: Vec<(String, Vec<Option<Value>>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for (name, value) in &row.fields {
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
                missing: (0..n)
                    .filter(|&i| cells[i].is_none())
                    .map(|i| i as u32)
                    .collect(),
                values: values(
                    cells
                        .into_iter()
                        .map(|c| c.unwrap_or(Value::Null))
                        .collect(),
                ),
            })
            .collect(),
        metadata: rows
            .iter()
            .map(|r| Metadata {
                message_id: "m-1".into(),
                sent_timestamp_ms: r.sent_timestamp_ms,
                receive_count: 1,
                attributes: Vec::new(),
            })
            .collect(),
    }
}

fn values(cells: Vec<Value>) -> Values {
    let kind = |v: &Value| std::mem::discriminant(v);
    let mut kinds = cells.iter().filter(|v| !matches!(v, Value::Null)).map(kind);
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
                    .iter()
                    .map(|v| match v {
                        Value::$case(x) => Some(x.clone()),
                        _ => None,
                    })
                    .collect(),
            )
        };
    }
    // Text and JSON columns packed, as masq sends them.
    let packed = |values: Values| match values {
        Values::Text(l) => Values::PackedText(pack(l.into_iter())),
        Values::Json(l) => Values::PackedJson(pack(l.into_iter())),
        other => other,
    };
    match cells.iter().find(|v| !matches!(v, Value::Null)) {
        Some(Value::Boolean(_)) => typed!(Boolean),
        Some(Value::Integer(_)) => typed!(Integer),
        Some(Value::Float(_)) => typed!(Float),
        Some(Value::Text(_)) => packed(typed!(Text)),
        _ => packed(typed!(Json)),
    }
}

/// Record `i`'s value in a column.
fn cell(values: &Values, i: usize) -> Value {
    fn at<T: Clone>(l: &[Option<T>], i: usize, f: impl Fn(T) -> Value) -> Value {
        l.get(i).cloned().flatten().map_or(Value::Null, f)
    }
    match values {
        Values::Null => Value::Null,
        Values::Boolean(l) => at(l, i, Value::Boolean),
        Values::Integer(l) => at(l, i, Value::Integer),
        Values::Float(l) => at(l, i, Value::Float),
        Values::Text(l) => at(l, i, Value::Text),
        Values::Json(l) => at(l, i, Value::Json),
        Values::PackedText(t) => unpack(t).nth(i).flatten().map_or(Value::Null, Value::Text),
        Values::PackedJson(t) => unpack(t).nth(i).flatten().map_or(Value::Null, Value::Json),
        Values::Mixed(l) => l.get(i).cloned().unwrap_or(Value::Null),
    }
}

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn configs_ok() -> Vec<Vec<(String, String)>> {
    vec![
        config(&[]),
        config(&[
            ("mask", "email:masked_email"),
            ("required", "email,user_id"),
            ("nullable", ""),
            ("date-field", ""),
            ("version-field", ""),
        ]),
        config(&[(
            "mask",
            " ip : masked_ip , ip:other_ip,,device_id:masked_device_id ",
        )]),
        config(&[
            ("mask", "device_id:masked_device_id"),
            ("version-field", "ip"),
        ]),
        config(&[("mask", "ip:masked_ip,app_version:masked_version")]),
        config(&[("date-field", "ip")]),
        config(&[("date-field", "  ")]),
        config(&[("required", "user_id,user_id,ip"), ("nullable", "ip")]),
        config(&[(
            "mask",
            "\u{3000}ip\u{3000}:masked_ip,\u{feff}device_id:masked_device_id",
        )]),
        config(&[
            ("mask", "\u{1c}ip:masked_ip"),
            ("required", " \u{85}ip,\u{a0}locale"),
        ]),
        config(&[("mask", "a:b:c,ip:masked_ip")]),
        config(&[("mask", "ip"), ("mask", "ip:last_wins")]),
    ]
}

fn configs_refused() -> Vec<Vec<(String, String)>> {
    vec![
        config(&[("colour", "red")]),
        config(&[("mask", "ip:masked_ip"), ("Mask", "ip:x")]),
        config(&[("mask", "ip")]),
        config(&[("mask", "ip:ip")]),
        config(&[("mask", " ip : ip ")]),
        config(&[("mask", ":x")]),
        config(&[("mask", "x:\u{2003}")]),
        config(&[("nullable", "zip")]),
        config(&[("required", "")]),
        config(&[("mask", "ip:masked_ip"), ("mask", "ip")]),
    ]
}

fn record(sent_timestamp_ms: u64, fields: Vec<(String, Value)>) -> Row {
    Row {
        sent_timestamp_ms,
        fields,
    }
}

fn named(fields: Vec<(&str, Value)>) -> Vec<(String, Value)> {
    fields
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// A login's fields with `changes` applied: a value replaces the field's, or is appended
/// when the field is new; `None` removes the field.
fn login(changes: &[(&str, Option<Value>)]) -> Vec<(String, Value)> {
    let mut fields = named(vec![
        ("user_id", text("u-1")),
        ("app_version", text("2.3.0")),
        ("device_type", text("ios")),
        ("ip", text("1.2.3.4")),
        ("locale", text("RU")),
        ("device_id", text("593-47-5928")),
    ]);
    for (name, change) in changes {
        match (fields.iter().position(|(n, _)| n == name), change) {
            (Some(i), Some(v)) => fields[i].1 = v.clone(),
            (Some(i), None) => {
                fields.remove(i);
            }
            (None, Some(v)) => fields.push((name.to_string(), v.clone())),
            (None, None) => {}
        }
    }
    fields
}

/// 2022-12-01T01:00Z.
const SENT: u64 = 1_669_852_800_000 + 3_600_000;

fn records() -> Vec<Row> {
    let floats = [
        1.5,
        -0.0,
        0.0,
        1e21,
        1e-7,
        0.1 + 0.2,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        123456.0,
        1e16,
        2.5e-5,
        -1234.5678,
        9007199254740993.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let mut wrong: Vec<Value> = vec![
        Value::Null,
        Value::Boolean(true),
        Value::Boolean(false),
        Value::Integer(7),
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Json("[1,2]".into()),
        Value::Json(r#"{"a":1}"#.into()),
    ];
    wrong.extend(floats.iter().map(|f| Value::Float(*f)));
    let versions = [
        "",
        "2.",
        ".2",
        "2.3.4.5",
        "2.x",
        "-1.0",
        "+1.0",
        "2.1000",
        "2147.0",
        "2146.999.999",
        "1e3",
        " 2.0",
        "2.0\n",
        "２.0",
        "٣.1",
        "0.2.8",
        "2",
        "2.0",
        "2.00",
        "9.10",
        "000000001.2",
        "0000000001.2",
        "x'y\"z",
    ];

    let mut out = vec![
        record(SENT, login(&[])),
        record(SENT, login(&[("locale", Some(Value::Null))])),
    ];
    for v in versions {
        out.push(record(SENT, login(&[("app_version", Some(text(v)))])));
    }
    for v in &wrong {
        out.push(record(SENT, login(&[("app_version", Some(v.clone()))])));
        out.push(record(SENT, login(&[("ip", Some(v.clone()))])));
        out.push(record(SENT, login(&[("user_id", Some(v.clone()))])));
    }
    // 9_011_519_999_999_999 is the last millisecond of a day, and above 2^53: read as a
    // double it rounds up into the next day.
    for ms in [
        0,
        1,
        86_399_999,
        86_400_000,
        951_782_400_000,
        1_669_852_799_999,
        4_102_444_800_000,
        253_402_300_800_000,
        9_011_519_999_999_999,
        i64::MAX as u64,
        u64::MAX,
    ] {
        out.push(record(ms, login(&[])));
    }
    out.extend([
        // Several problems at once, reported in field order.
        record(
            SENT,
            login(&[
                ("ip", Some(Value::Null)),
                ("app_version", Some(Value::Integer(7))),
                ("device_id", Some(Value::Boolean(false))),
            ]),
        ),
        record(SENT, login(&[("ip", None)])),
        record(SENT, login(&[("ip", None), ("locale", None)])),
        record(SENT, vec![]),
        record(
            SENT,
            named(vec![
                ("foo", text("oops_wrong_msg_type")),
                ("bar", text("123")),
            ]),
        ),
        // Pass-through of every kind, and a body's own create_date, which is never used.
        record(
            SENT,
            login(&[
                ("create_date", Some(text("1999-01-01"))),
                ("extra_int", Some(Value::Integer(-5))),
                ("extra_float", Some(Value::Float(-0.0))),
                ("extra_json", Some(Value::Json("{}".into()))),
                ("extra_null", Some(Value::Null)),
                ("extra_bool", Some(Value::Boolean(true))),
                ("email", Some(text("a@example.com"))),
                ("masked_ip", Some(text("spoofed"))),
            ]),
        ),
        // Order of input fields decides the order of output fields.
        record(
            SENT,
            named(vec![
                ("device_id", text("d")),
                ("locale", Value::Null),
                ("ip", text("i")),
                ("create_date", Value::Null),
                ("device_type", text("t")),
                ("app_version", text("1.0")),
                ("user_id", text("u")),
            ]),
        ),
        // An empty string is masked like any other. (A body with a second `ip` never gets
        // here: masq's decoder refuses duplicate members.)
        record(SENT, login(&[("ip", Some(text("")))])),
        record(
            SENT,
            login(&[
                ("user_id", Some(text("ユーザー😀\u{0}"))),
                ("ip", Some(text("😀"))),
                ("", Some(text("nameless"))),
            ]),
        ),
        record(
            SENT,
            login(&[("email", Some(Value::Integer(1))), ("a", Some(text("x")))]),
        ),
    ]);
    out
}
