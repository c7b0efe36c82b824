//! SQL text and SQL errors, in one place for every writer: identifiers quoted the way
//! PostgreSQL reads them, strings made storable, and every error sorted into what to do next.

use postgres_types::{ToSql, Type};
use std::borrow::Cow;
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSqlOwned;

/// An identifier (column, table or schema name) quoted for SQL text: embedded quotes are
/// doubled, so a column named `a"b` is `"a""b"`, never a syntax error or an injection.
pub fn ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// A string PostgreSQL `text` can hold. Text cannot hold NUL, which a message can carry
/// (`"\u0000"` in JSON) and which reasons can quote: NUL becomes the six characters `\u0000`,
/// everything else stays byte for byte. Everything a message or a policy puts into a text
/// column of masq's own tables (bodies, reasons, ids, names) goes through this first.
pub fn storable(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\\u0000"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Parameters for `query_typed`/`execute_typed`, all of type `text`: statements sent whole,
/// unnamed, in one request (nothing left prepared on a pooled server connection).
pub fn texts<'a>(values: &[&'a (dyn ToSql + Sync)]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    values.iter().map(|v| (*v, Type::TEXT)).collect()
}

/// The first column of the first row of a query without parameters, sent unnamed.
pub async fn scalar<T: FromSqlOwned>(
    client: &impl GenericClient,
    query: &str,
) -> Result<T, tokio_postgres::Error> {
    client.query_typed_one(query, &[]).await?.try_get(0)
}

/// What to do about an error from PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Caused by the data of some row (a data exception, a constraint, a trigger's RAISE):
    /// find that row and make it a dead letter, write the rest.
    Data,
    /// The connection, the server's state or a lock: retry the same batch after a pause.
    Transient,
    /// Retrying cannot help (privileges, a missing table or column, a syntax error, a
    /// read-only database): stop, say what to fix, and leave the messages in the queue.
    Permanent,
}

/// Sorts an error by its SQLSTATE. Errors without one (the connection broke, the server
/// stopped answering) are transient.
pub fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    match e.code() {
        None => ErrorClass::Transient,
        Some(code) => classify_code(code.code()),
    }
}

fn classify_code(code: &str) -> ErrorClass {
    // Class 22 data exception, 23 integrity constraint, P0 a PL/pgSQL RAISE (a trigger that
    // refuses a row): the row's fault.
    if code.starts_with("22") || code.starts_with("23") || code.starts_with("P0") {
        return ErrorClass::Data;
    }
    // The server refused what masq asked for, whatever the data: fix the setup, not the data.
    let permanent_classes = [
        "42", // syntax error or access rule violation: privileges, missing table/column
        "28", // invalid authorization
        "3D", // the database does not exist
        "3F", // the schema does not exist
        "0A", // feature not supported
        "44", // WITH CHECK OPTION violation on a view
    ];
    if permanent_classes.iter().any(|c| code.starts_with(c))
        || code == SqlState::READ_ONLY_SQL_TRANSACTION.code()
        || code == SqlState::UNDEFINED_DATABASE.code()
    {
        return ErrorClass::Permanent;
    }
    // Connection exceptions (08), serialization failures and deadlocks (40), out of
    // resources (53, 54), operator intervention such as a restart or a cancelled statement
    // (57), lock timeouts (55P03), system errors (58, XX): worth a retry.
    ErrorClass::Transient
}

/// The server's words for an error, without any value from a row: PostgreSQL puts offending
/// values after a colon (`invalid input syntax for type integer: "..."`) and in the DETAIL
/// (`Failing row contains (...)`, `Key (id)=(...) already exists`), so both are cut, and the
/// column and constraint it names are added. These words go into dead-letter reasons and logs.
pub fn server_message(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut text = db
        .message()
        .split(": ")
        .next()
        .unwrap_or_default()
        .to_string();
    if let Some(column) = db.column()
        && !text.contains(column)
    {
        text.push_str(&format!(" (column {column})"));
    }
    if let Some(constraint) = db.constraint()
        && !text.contains(constraint)
    {
        text.push_str(&format!(" (constraint {constraint})"));
    }
    text
}

/// What an operator should do about a permanent error, by SQLSTATE class.
pub fn permanent_advice(e: &tokio_postgres::Error, table: &str) -> String {
    let code = e.code().map(|c| c.code()).unwrap_or("");
    let what = if code == SqlState::INSUFFICIENT_PRIVILEGE.code() {
        format!(
            "grant the database user INSERT on {table}; SELECT, INSERT, UPDATE on masq.ledger, \
             masq.targets, masq.policy_versions, masq.loads and masq.dead_letters; SELECT on \
             masq.ledger_packed; EXECUTE on masq.ledger_prepare and masq.ledger_prune (or run \
             masq as the tables' owner)"
        )
    } else if code == SqlState::UNDEFINED_TABLE.code() {
        format!("the table is gone: create {table} again and run `masq db init`")
    } else if code == SqlState::UNDEFINED_COLUMN.code() {
        format!(
            "a column of {table} was dropped or renamed while masq ran: restart masq so it reads the table again"
        )
    } else if code == SqlState::READ_ONLY_SQL_TRANSACTION.code() {
        "the database is read-only here: point DATABASE_URL at the primary".to_string()
    } else if code.starts_with("28") || code.starts_with("3D") {
        "check the user, password and database name in DATABASE_URL".to_string()
    } else {
        format!("fix the table {table} or the database setup, then start masq again")
    };
    format!(
        "{} (SQLSTATE {code}): {what}. Nothing was dead-lettered; the messages stay in the queue",
        server_message(e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_double_embedded_quotes() {
        assert_eq!(ident("user_id"), "\"user_id\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("Mixed Case"), "\"Mixed Case\"");
    }

    #[test]
    fn nul_becomes_storable_and_nothing_else_changes() {
        assert!(matches!(storable("plain é"), Cow::Borrowed("plain é")));
        assert_eq!(storable("2.0\0"), "2.0\\u0000");
        assert_eq!(storable("\0a\0"), "\\u0000a\\u0000");
    }

    #[test]
    fn errors_are_sorted_by_sqlstate() {
        for data in ["22P02", "22001", "23514", "23505", "22P05", "P0001"] {
            assert_eq!(classify_code(data), ErrorClass::Data, "{data}");
        }
        for permanent in [
            "42501", "42P01", "42703", "42601", "28P01", "3D000", "25006", "0A000",
        ] {
            assert_eq!(
                classify_code(permanent),
                ErrorClass::Permanent,
                "{permanent}"
            );
        }
        for transient in [
            "08006", "40001", "40P01", "53300", "57P01", "57014", "55P03", "XX000", "26000",
        ] {
            assert_eq!(
                classify_code(transient),
                ErrorClass::Transient,
                "{transient}"
            );
        }
    }
}
