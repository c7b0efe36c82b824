//! The SQS server's own receive+delete ceiling, for `just bench`: N loops that receive ten
//! messages (long poll 1 s, as `masq run --drain` does) and delete them in one batch call,
//! with no processing, until every loop finds the queue empty. Prints one JSON line.
//!
//! Usage: sqs_ceiling QUEUE_URL [LOOPS]

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let queue_url = args.next().expect("usage: sqs_ceiling QUEUE_URL [LOOPS]");
    let loops: usize = args
        .next()
        .map(|s| s.parse().expect("LOOPS is a number"))
        .unwrap_or(4);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&config);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..loops {
        let (client, queue_url, done) = (client.clone(), queue_url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let out = client
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .expect("receive");
                let messages = out.messages();
                if messages.is_empty() {
                    return;
                }
                let entries = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap())
                            .build()
                            .unwrap()
                    })
                    .collect();
                let del = client
                    .delete_message_batch()
                    .queue_url(&queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .expect("delete");
                assert!(del.failed().is_empty(), "deletes failed");
                done.fetch_add(messages.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("loop");
    }
    let seconds = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        r#"{{"messages": {n}, "seconds": {seconds:.3}, "per_second": {:.1}, "loops": {loops}}}"#,
        n as f64 / seconds
    );
}
