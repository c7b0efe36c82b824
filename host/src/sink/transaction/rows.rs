//! A batch's rows: by binary COPY, one COPY per shape of row (the set of columns it fills),
//! or, to find the rows the database refuses, each by its own INSERT under a savepoint.

use super::{Batch, Prepared, Target};
use crate::pipeline::batch::Stage;
use crate::sink::ledger::blocks::Blocks;
use crate::sink::ledger::claim;
use crate::sink::schema::TableSchema;
use crate::sink::sql::{self, ErrorClass, storable};
use futures_util::pin_mut;
use postgres_types::{ToSql, Type};
use std::collections::HashMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Statement, Transaction};

fn column_list(schema: &TableSchema, columns: &[usize]) -> String {
    columns
        .iter()
        .map(|&c| sql::ident(&schema.columns[c].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distinct column sets of the rows to write, in order of first appearance.
fn shapes<'a>(prepared: &'a [Prepared<'_>], take: &[bool]) -> Vec<&'a [usize]> {
    let mut shapes: Vec<&[usize]> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        if let Prepared::Row(row) = p
            && take[i]
            && !shapes.contains(&row.columns.as_slice())
        {
            shapes.push(&row.columns);
        }
    }
    shapes
}

fn insert_sql(schema: &TableSchema, shape: &[usize]) -> String {
    let table = schema.table.quoted();
    if shape.is_empty() {
        return format!("INSERT INTO {table} DEFAULT VALUES");
    }
    let params = (1..=shape.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({}) VALUES ({params})",
        column_list(schema, shape)
    )
}

/// Every row by binary COPY, one COPY per shape (most batches have one).
pub(super) async fn copy_rows(
    tx: &Transaction<'_>,
    target: &Target<'_>,
    prepared: &[Prepared<'_>],
    take: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let schema = target.schema;
    for shape in shapes(prepared, take) {
        let rows = prepared.iter().enumerate().filter_map(|(i, p)| match p {
            Prepared::Row(row) if take[i] && row.columns == shape => Some(row),
            _ => None,
        });
        if shape.is_empty() {
            // Nothing to COPY: every column takes its default.
            let insert = insert_sql(schema, shape);
            for _ in rows {
                tx.batch_execute(&insert).await?;
            }
            continue;
        }
        let types: Vec<Type> = shape
            .iter()
            .map(|&c| schema.columns[c].ty.clone())
            .collect();
        let sink = tx
            .copy_in(&format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                schema.table.quoted(),
                column_list(schema, shape)
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        let mut cells: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(shape.len());
        for row in rows {
            cells.clear();
            cells.extend(row.cells.iter().map(|c| c as &(dyn ToSql + Sync)));
            writer.as_mut().write(&cells).await?;
        }
        writer.finish().await?;
    }
    Ok(())
}

/// Every row by its own INSERT under a savepoint: a row the database refuses becomes a dead
/// letter with the database's reason, and its ledger entry says so.
pub(super) async fn write_rows_one_by_one(
    tx: &mut Transaction<'_>,
    batch: &Batch<'_>,
    prepared: &mut [Prepared<'_>],
    take: &[bool],
    blocks: &mut Blocks,
) -> Result<(), tokio_postgres::Error> {
    let target = batch.target;
    let mut refused_blocks = Vec::new();
    // Prepared here, in the transaction that uses them, and closed before it ends.
    let mut inserts: HashMap<Vec<usize>, Statement> = HashMap::new();
    for shape in shapes(prepared, take) {
        let statement = tx.prepare(&insert_sql(target.schema, shape)).await?;
        inserts.insert(shape.to_vec(), statement);
    }
    for i in 0..prepared.len() {
        let Prepared::Row(row) = &prepared[i] else {
            continue;
        };
        if !take[i] {
            continue;
        }
        let params: Vec<&(dyn ToSql + Sync)> =
            row.cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let sp = tx.savepoint("masq_row").await?;
        match sp.execute(&inserts[&row.columns], &params).await {
            Ok(_) => sp.commit().await?,
            Err(e) if sql::classify(&e) == ErrorClass::Data => {
                sp.rollback().await?;
                prepared[i] = Prepared::Dead(
                    Stage::Sink,
                    storable(&format!(
                        "PostgreSQL refused the row: {}",
                        sql::server_message(&e)
                    ))
                    .into_owned(),
                );
                match blocks.dead_letter(i) {
                    Some(block) => refused_blocks.push(block),
                    None => {
                        let sent_ms = batch.items[i].message.sent_ms;
                        claim::mark_dead_letter(tx, target.owner.target, sent_ms, batch.keys[i].uuid)
                            .await?
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    refused_blocks.sort_unstable();
    refused_blocks.dedup();
    blocks.rewrite(tx, target.owner, &refused_blocks).await
}
