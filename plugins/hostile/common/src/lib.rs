//! Shared part of masq's hostile test policies (plugins/hostile/*): the `policy-plugin`
//! bindings, generated once here and exported by each hostile crate with
//! `hostile_common::export!(Type)`, and the pass-through behaviour every hostile policy shows
//! on records that do not trigger its attack.
//!
//! Not an attack itself: this crate only makes the attacks small. Every hostile policy is a
//! real component of the `policy-plugin` world that keeps each record's fields as they are,
//! so the good records of a batch are written, except for its one hostile behaviour.
//!
//! Trigger conventions (see plugins/hostile/README.md):
//! - a "poison record" has a field `poison` whose value is boolean `true`;
//! - `hostile-trap-one` instead triggers on a field `user_id` equal to the text "poison".

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy-plugin",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "hostile_common",
});

use masq::policy::types::{Config, Field, Outcome, PolicyInfo, Record, Setting, Value};

/// True when the record has a field `poison` with the boolean value `true`.
pub fn is_poison(record: &Record) -> bool {
    record
        .fields
        .iter()
        .any(|f| f.name == "poison" && matches!(f.value, Value::Boolean(true)))
}

/// The value of the record's field `name`, if it has one.
pub fn field<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    record
        .fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| &f.value)
}

/// Keeps the record's fields as they are.
pub fn pass_through(record: Record) -> Outcome {
    Outcome::Keep(record.fields)
}

/// A text field.
pub fn text(name: &str, value: String) -> Field {
    Field {
        name: name.into(),
        value: Value::Text(value),
    }
}

/// The one setting every hostile policy accepts: which fields `configure` reports as written,
/// so a test can match the columns of its table.
pub const WRITES_SETTING: &str = "writes";

/// `describe` for a hostile policy: named `name`, version 0.1.0, writing `default_writes`.
pub fn info(name: &str, description: &str, default_writes: &str) -> PolicyInfo {
    PolicyInfo {
        name: name.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: description.into(),
        writes: split(default_writes),
        settings: vec![Setting {
            name: WRITES_SETTING.into(),
            description: "Comma-separated field names `configure` reports as written (the \
                host checks that each is a column of the table)."
                .into(),
            default_value: default_writes.into(),
        }],
    }
}

/// `configure` for a hostile policy: accepts only `writes`, returns its fields.
pub fn configure(config: &Config, default_writes: &str) -> Result<Vec<String>, String> {
    let mut writes = default_writes.to_string();
    for (key, value) in config {
        if key != WRITES_SETTING {
            return Err(format!(
                "unknown setting '{key}': the only setting is '{WRITES_SETTING}'"
            ));
        }
        writes = value.clone();
    }
    Ok(split(&writes))
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
