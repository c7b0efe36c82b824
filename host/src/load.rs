//! `masq load`: the same decode -> policy -> COPY path as `masq run`, fed from a JSONL file
//! or stdin instead of SQS. For backfills (re-running a load is safe: each line's id is
//! `<source-id>:<line>`, and the ledger skips lines already written) and for measuring the
//! host path without a queue in front of it.

use crate::batch::Provenance;
use crate::cli::LoadArgs;
use crate::decide::decide;
use crate::keys::Keys;
use crate::policy::PolicyOptions;
use crate::setup;
use crate::sink::postgres::{PostgresSink, WriteReport};
use crate::source::Message;
use anyhow::{Context, bail};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

pub async fn run(args: LoadArgs) -> anyhow::Result<String> {
    let keys = Arc::new(Keys::new(setup::pseudonymizer(
        args.key_file.as_deref(),
        args.unkeyed,
    )?));
    let options = PolicyOptions {
        config: args.policy_config.clone(),
        ..PolicyOptions::default()
    };
    let database = args.database.database()?;
    let loaded =
        setup::load_policy(&args.plugin, &database, &args.table, options, keys, None).await?;
    let (schema, policy) = (loaded.schema, Arc::new(loaded.policy));
    let provenance = Provenance::of(&policy);
    let sink = PostgresSink::connect(&database, schema.clone()).await?;

    let stdin = args.input.as_os_str() == "-";
    let source_id = args.source_id.clone().unwrap_or_else(|| {
        if stdin {
            "stdin".to_string()
        } else {
            args.input.display().to_string()
        }
    });
    let sent_ms = setup::sent_at_ms(args.sent_at.as_deref(), 0)?;
    let reader: Box<dyn BufRead + Send> = if stdin {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&args.input)
                .with_context(|| format!("cannot open {}", args.input.display()))?,
        ))
    };

    // Reading runs on a blocking thread; the policy of one batch overlaps the COPY of the last.
    let batch_size = args.batch_size as usize;
    let (lines_tx, lines_rx) = mpsc::channel::<anyhow::Result<Vec<Message>>>(2);
    let reading = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(batch_size);
        for (n, line) in reader.lines().enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    let _ = lines_tx
                        .blocking_send(Err(anyhow::anyhow!("cannot read line {}: {e}", n + 1)));
                    return;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            batch.push(Message {
                id: format!("{source_id}:{}", n + 1),
                receipt: String::new(),
                body: line,
                sent_ms,
                receive_count: 1,
            });
            if batch.len() == batch_size
                && lines_tx
                    .blocking_send(Ok(std::mem::take(&mut batch)))
                    .is_err()
            {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = lines_tx.blocking_send(Ok(batch));
        }
    });
    // Two batches in the policy at once (one per core) and two connections writing, so the
    // policy, the COPY and the database's own work overlap; order between batches is free.
    let (decided_tx, decided_rx) = mpsc::channel(2);
    let source_name = format!("file:{}", args.input.display());
    let deciding = tokio::spawn(async move {
        use futures_util::StreamExt;
        let batches = futures_util::stream::unfold(lines_rx, |mut rx| async move {
            rx.recv().await.map(|b| (b, rx))
        });
        let decided = batches
            .map(|batch| {
                let (policy, source_name) = (policy.clone(), source_name.clone());
                async move {
                    match batch {
                        Ok(batch) => Ok(decide(&policy, &source_name, batch, None).await),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(2);
        let mut decided = std::pin::pin!(decided);
        while let Some(d) = decided.next().await {
            if decided_tx.send(d).await.is_err() {
                return;
            }
        }
    });

    let started = Instant::now();
    let decided_rx = Arc::new(tokio::sync::Mutex::new(decided_rx));
    let mut writers = tokio::task::JoinSet::new();
    for mut sink in [
        sink,
        PostgresSink::connect(&database, schema.clone()).await?,
    ] {
        let (decided_rx, provenance) = (decided_rx.clone(), provenance.clone());
        writers.spawn(async move {
            let mut total = WriteReport::default();
            let mut lines = 0u64;
            loop {
                let Some(decided) = decided_rx.lock().await.recv().await else {
                    break;
                };
                let (items, health) = decided?;
                if health.failed * 2 > health.evaluated && health.failed >= 10 {
                    bail!(
                        "policy fails on {} of {} records ({}): it looks broken; stopped",
                        health.failed,
                        health.evaluated,
                        health.last_error
                    );
                }
                lines += items.len() as u64;
                let r = sink.write(&items, &provenance).await?;
                total.written += r.written;
                total.dropped += r.dropped;
                total.dead_lettered += r.dead_lettered;
                total.duplicates += r.duplicates;
            }
            anyhow::Ok((lines, total))
        });
    }
    let mut total = WriteReport::default();
    let mut lines = 0u64;
    while let Some(done) = writers.join_next().await {
        let (l, r) = done.context("writer task")??;
        lines += l;
        total.written += r.written;
        total.dropped += r.dropped;
        total.dead_lettered += r.dead_lettered;
        total.duplicates += r.duplicates;
    }
    reading.await.context("reader thread")?;
    deciding.await.context("policy task")?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(format!(
        "loaded {lines} lines: written {}, dead-lettered {}, dropped {}, duplicates skipped {}, in {seconds:.2} s ({:.0} rows/s)\n",
        total.written,
        total.dead_lettered,
        total.dropped,
        total.duplicates,
        lines as f64 / seconds.max(1e-9)
    ))
}
