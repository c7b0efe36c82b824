//! The target table as the sink sees it: its columns, and how a policy's value becomes a cell
//! of a column. A value that does not fit (wrong type, too long, out of range) is refused here,
//! per field, so one bad record becomes one dead letter instead of a failed COPY.

use crate::policy::{Field, Value};
use anyhow::{Context, bail};
use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use std::error::Error;
use tokio_postgres::Client;

/// A table name split into optional schema and name, both validated plain identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    /// Accepts `table` or `schema.table`, each a plain SQL identifier, so the name can be
    /// quoted safely into DDL and COPY statements.
    pub fn parse(raw: &str) -> anyhow::Result<TableName> {
        let parts: Vec<&str> = raw.split('.').collect();
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        match parts.as_slice() {
            [name] if ok(name) => Ok(TableName {
                schema: None,
                name: name.to_string(),
            }),
            [schema, name] if ok(schema) && ok(name) => Ok(TableName {
                schema: Some(schema.to_string()),
                name: name.to_string(),
            }),
            _ => bail!(
                "table name '{raw}' is not `table` or `schema.table` made of letters, digits and '_'"
            ),
        }
    }

    /// The quoted form for SQL text.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", super::sql::ident(s), super::sql::ident(&self.name)),
            None => super::sql::ident(&self.name),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One column of the target table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: Type,
    /// Most characters a varchar(n)/char(n) column holds.
    pub max_chars: Option<usize>,
    pub not_null: bool,
    /// Whether PostgreSQL fills the column when masq leaves it out: a default, an identity
    /// or a generated column.
    pub filled_by_database: bool,
}

/// The columns of the target table, in table order.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub table: TableName,
    pub columns: Vec<Column>,
}

/// A value ready for binary COPY. Text is borrowed from the policy's output, which outlives
/// the write: a copy per text value was 2-3% of `masq run`'s CPU.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Text(&'a str),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Json(serde_json::Value),
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::I16(v) => v.to_sql(ty, out),
            Cell::I32(v) => v.to_sql(ty, out),
            Cell::I64(v) => v.to_sql(ty, out),
            Cell::F32(v) => v.to_sql(ty, out),
            Cell::F64(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Date(v) => v.to_sql(ty, out),
            Cell::Timestamp(v) => v.to_sql(ty, out),
            Cell::TimestampTz(v) => v.to_sql(ty, out),
            Cell::Json(v) => v.to_sql(ty, out),
        }
    }

    // Every cell was made for its column's type by `TableSchema::cells`.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The column types masq can write.
fn supported(ty: &Type) -> bool {
    [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::DATE,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::JSON,
        Type::JSONB,
    ]
    .contains(ty)
}

impl TableSchema {
    /// Reads the table's columns from the catalog.
    pub async fn load(client: &Client, table: &TableName) -> anyhow::Result<TableSchema> {
        let quoted = table.quoted();
        let rows = client
            .query_typed(
                "SELECT a.attname::text, a.atttypid, a.atttypmod, a.attnotnull, \
                        a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' \
                 FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1)::oid AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[(&quoted, Type::TEXT)],
            )
            .await
            .with_context(|| format!("cannot read the columns of table {table}"))?;
        if rows.is_empty() {
            bail!("table {table} does not exist: create it with `masq db init --table {table}`");
        }
        let columns = rows
            .iter()
            .map(|row| {
                let oid: u32 = row.get(1);
                let typmod: i32 = row.get(2);
                let ty = Type::from_oid(oid).unwrap_or(Type::UNKNOWN);
                let max_chars = (matches!(ty, Type::VARCHAR | Type::BPCHAR) && typmod > 4)
                    .then(|| (typmod - 4) as usize);
                Column {
                    name: row.get(0),
                    ty,
                    max_chars,
                    not_null: row.get(3),
                    filled_by_database: row.get(4),
                }
            })
            .collect();
        Ok(TableSchema {
            table: table.clone(),
            columns,
        })
    }

    /// Checks that every field a policy says it writes is a column of a type masq can write.
    pub fn check_writes(&self, policy: &str, writes: &[String]) -> anyhow::Result<()> {
        for field in writes {
            match self.columns.iter().find(|c| &c.name == field) {
                None => bail!(
                    "policy {policy} writes field '{field}', but table {} has no such column (it has {}). \
                     Add the column, or pick the table with --table",
                    self.table,
                    self.columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(c) if !supported(&c.ty) => bail!(
                    "policy {policy} writes column {}.{} of type {}, which masq cannot write; use \
                     text, varchar, integer types, float types, boolean, date, timestamp(tz) or json(b)",
                    self.table,
                    c.name,
                    c.ty
                ),
                Some(_) => {}
            }
        }
        // A NOT NULL column that nobody fills would make every message a dead letter: refuse
        // now, with the fix, rather than fill the dead letters.
        if let Some(column) = self
            .columns
            .iter()
            .find(|c| c.not_null && !c.filled_by_database && !writes.contains(&c.name))
        {
            bail!(
                "table {} has column {} NOT NULL without a default, but policy {policy} never writes it \
                 (it writes {}): every message would become a dead letter. Give the column a default, \
                 drop NOT NULL, or configure the policy to write it",
                self.table,
                column.name,
                if writes.is_empty() {
                    "nothing".to_string()
                } else {
                    writes.join(", ")
                }
            );
        }
        Ok(())
    }

    /// The row a policy's fields make: the columns it writes (in table order) and a cell
    /// for each, or the reason the row does not fit. Columns the row does not write keep
    /// their defaults, whatever other rows of the batch write.
    pub fn row<'a>(&self, fields: &'a [Field]) -> Result<Row<'a>, String> {
        let mut problems = Vec::new();
        // (column, field) pairs: each field's column, found once.
        let mut pairs: Vec<(usize, &Value)> = Vec::with_capacity(fields.len());
        for field in fields {
            match self.columns.iter().position(|c| c.name == field.name) {
                Some(i) if pairs.iter().any(|&(c, _)| c == i) => problems.push(format!(
                    "field '{}' appears twice in the policy's output",
                    field.name
                )),
                Some(i) => pairs.push((i, &field.value)),
                None => problems.push(format!(
                    "field '{}' has no column in table {}",
                    field.name, self.table
                )),
            }
        }
        pairs.sort_unstable_by_key(|&(c, _)| c);
        let mut columns = Vec::with_capacity(pairs.len());
        let mut cells = Vec::with_capacity(pairs.len());
        for (i, value) in pairs {
            let column = &self.columns[i];
            columns.push(i);
            match to_cell(value, column) {
                Ok(cell) => cells.push(cell),
                Err(why) => problems.push(format!("field '{}': {why}", column.name)),
            }
        }
        if problems.is_empty() {
            Ok(Row { columns, cells })
        } else {
            // Reasons quote field names, which come from the message: storable, like all text.
            Err(super::sql::storable(&problems.join("; ")).into_owned())
        }
    }
}

/// `YYYY-MM-DD` read without chrono's format parser, which costs about 1% of `masq run`'s
/// CPU on the login data set (one date per row); anything else goes to that parser.
fn plain_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

/// One row ready for the table: the columns it writes, in table order, and their cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    pub columns: Vec<usize>,
    pub cells: Vec<Cell<'a>>,
}

fn to_cell<'a>(value: &'a Value, column: &Column) -> Result<Cell<'a>, String> {
    let ty = &column.ty;
    let mismatch = || {
        let what = match value {
            Value::Null => "null",
            Value::Boolean(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Text(_) => "a string",
            Value::Json(_) => "a JSON array or object",
        };
        format!("{what} does not fit column type {ty}")
    };
    let cell = match value {
        Value::Null if column.not_null => {
            return Err("null, but the column is NOT NULL".to_string());
        }
        Value::Null => Cell::Null,
        Value::Boolean(b) if *ty == Type::BOOL => Cell::Bool(*b),
        Value::Integer(i) if *ty == Type::INT2 => {
            Cell::I16(i16::try_from(*i).map_err(|_| "out of range for smallint".to_string())?)
        }
        Value::Integer(i) if *ty == Type::INT4 => {
            Cell::I32(i32::try_from(*i).map_err(|_| "out of range for integer".to_string())?)
        }
        Value::Integer(i) if *ty == Type::INT8 => Cell::I64(*i),
        Value::Integer(i) if *ty == Type::FLOAT8 => Cell::F64(*i as f64),
        Value::Integer(i) if *ty == Type::FLOAT4 => Cell::F32(*i as f32),
        Value::Float(f) if *ty == Type::FLOAT8 => Cell::F64(*f),
        Value::Float(f) if *ty == Type::FLOAT4 => Cell::F32(*f as f32),
        Value::Text(s) if [Type::TEXT, Type::VARCHAR, Type::BPCHAR].contains(ty) => {
            if s.contains('\0') {
                return Err(
                    "contains a NUL character, which PostgreSQL text cannot hold".to_string(),
                );
            }
            if let Some(max) = column.max_chars {
                let chars = s.chars().count();
                if chars > max {
                    return Err(format!("{chars} characters do not fit {ty}({max})"));
                }
            }
            Cell::Text(s)
        }
        Value::Text(s) if *ty == Type::DATE => Cell::Date(
            plain_date(s)
                .map_or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d"), Ok)
                .map_err(|_| "not a date (YYYY-MM-DD)".to_string())?,
        ),
        Value::Text(s) if *ty == Type::TIMESTAMPTZ => Cell::TimestampTz(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| "not an RFC 3339 timestamp".to_string())?
                .with_timezone(&Utc),
        ),
        Value::Text(s) if *ty == Type::TIMESTAMP => Cell::Timestamp(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .map_err(|_| "not a timestamp (YYYY-MM-DDTHH:MM:SS)".to_string())?,
        ),
        Value::Json(j) if [Type::JSON, Type::JSONB].contains(ty) => {
            let json: serde_json::Value =
                serde_json::from_str(j).map_err(|e| format!("not valid JSON: {e}"))?;
            if *ty == Type::JSONB && json_has_nul(&json) {
                return Err("holds a NUL character (\\u0000), which jsonb cannot store".to_string());
            }
            Cell::Json(json)
        }
        _ if [Type::JSON, Type::JSONB].contains(ty) => Cell::Json(match value {
            Value::Boolean(b) => serde_json::Value::Bool(*b),
            Value::Integer(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Value::from(*f),
            Value::Text(s) if *ty == Type::JSONB && s.contains('\0') => {
                return Err("holds a NUL character, which jsonb cannot store".to_string());
            }
            Value::Text(s) => serde_json::Value::String(s.clone()),
            _ => return Err(mismatch()),
        }),
        _ => return Err(mismatch()),
    };
    Ok(cell)
}

/// Whether any string or member name in a JSON value holds NUL.
fn json_has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(json_has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_fast_are_read_as_chrono_reads_them() {
        for s in [
            "2024-02-29", "2023-02-29", "0000-01-01", "9999-12-31", "2024-13-01", "2024-00-10",
            "2024-1-05", "+2024-01-05", "2024-01-5 ", "2024/01/05", "２０24-01-05", "",
        ] {
            let chrono = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
            let value = Value::Text(s.into());
            let cell = to_cell(
                &value,
                &Column {
                    name: "d".into(),
                    ty: Type::DATE,
                    max_chars: None,
                    not_null: false,
                    filled_by_database: false,
                },
            );
            assert_eq!(cell.ok(), chrono.map(Cell::Date), "{s:?}");
        }
        assert_eq!(plain_date("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert_eq!(plain_date("2024-1-05"), None);
    }

    fn login_schema() -> TableSchema {
        let col = |name: &str, ty: Type, max: Option<usize>| Column {
            name: name.into(),
            ty,
            max_chars: max,
            not_null: false,
            filled_by_database: false,
        };
        TableSchema {
            table: TableName::parse("user_logins").unwrap(),
            columns: vec![
                col("user_id", Type::VARCHAR, Some(128)),
                col("device_type", Type::VARCHAR, Some(32)),
                col("masked_ip", Type::VARCHAR, Some(256)),
                col("masked_device_id", Type::VARCHAR, Some(256)),
                col("locale", Type::VARCHAR, Some(32)),
                col("app_version", Type::INT4, None),
                col("create_date", Type::DATE, None),
            ],
        }
    }

    fn field(name: &str, value: Value) -> Field {
        Field {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(
            TableName::parse("user_logins").unwrap().quoted(),
            "\"user_logins\""
        );
        assert_eq!(
            TableName::parse("app.logins").unwrap().quoted(),
            "\"app\".\"logins\""
        );
        for bad in ["", "a.b.c", "x;drop", "1abc", "a\"b", "a b"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fitting_values_become_cells_in_column_order() {
        let s = login_schema();
        let row = vec![
            field("create_date", Value::Text("2022-12-01".into())),
            field("user_id", Value::Text("u".into())),
            field("app_version", Value::Integer(2_003_000)),
            field("locale", Value::Null),
        ];
        let made = s.row(&row).unwrap();
        assert_eq!(made.columns, vec![0, 4, 5, 6]);
        assert_eq!(
            made.cells,
            vec![
                Cell::Text("u"),
                Cell::Null,
                Cell::I32(2_003_000),
                Cell::Date(NaiveDate::from_ymd_opt(2022, 12, 1).unwrap())
            ]
        );
    }

    #[test]
    fn misfits_are_refused_naming_each_field() {
        let s = login_schema();
        let reason = |row: Vec<Field>| s.row(&row).unwrap_err();
        assert_eq!(
            reason(vec![field("user_id", Value::Text("x".repeat(129)))]),
            "field 'user_id': 129 characters do not fit varchar(128)"
        );
        assert_eq!(
            reason(vec![field("app_version", Value::Integer(1 << 40))]),
            "field 'app_version': out of range for integer"
        );
        assert_eq!(
            reason(vec![field("user_id", Value::Integer(5))]),
            "field 'user_id': an integer does not fit column type varchar"
        );
        assert_eq!(
            reason(vec![field("foo", Value::Text("oops".into()))]),
            "field 'foo' has no column in table user_logins"
        );
        assert!(
            reason(vec![field("create_date", Value::Text("yesterday".into()))])
                .contains("not a date")
        );
        assert!(reason(vec![field("locale", Value::Text("a\0b".into()))]).contains("NUL"));
        assert_eq!(
            reason(vec![field("a\0b", Value::Null)]),
            "field 'a\\u0000b' has no column in table user_logins",
            "reasons are storable"
        );
        assert_eq!(
            reason(vec![
                field("locale", Value::Null),
                field("locale", Value::Null)
            ]),
            "field 'locale' appears twice in the policy's output"
        );
        // Unicode counts as characters, like PostgreSQL does, not bytes.
        assert!(
            s.row(&[field("device_type", Value::Text("é".repeat(32)))])
                .is_ok()
        );
    }
}
