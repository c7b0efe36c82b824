//! The SQS server's own receive+delete ceiling, for `just bench`: N loops that receive ten
//! messages (long poll 1 s, as `masq run --drain` does) and delete them in one batch call,
//! with no processing, until every loop finds the queue empty. Prints one JSON line.
//!
//! The calls go through masq's own SQS client (`source::sqs::http`), the cheapest this project
//! has: the ceiling is what the server can do, and a client that burns more CPU per call
//! (the AWS SDK) would lower it on a machine whose cores the server shares, flattering masq.
//!
//! Usage: sqs_ceiling QUEUE_URL [LOOPS]

use masq::source::sqs::http::SqsHttp;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    let client = Arc::new(SqsHttp::new(&config, Duration::from_secs(5)).expect("SQS client"));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..loops {
        let (client, queue_url, done) = (client.clone(), queue_url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let messages = client.receive(&queue_url, 1, 30).await.expect("receive");
                if messages.is_empty() {
                    return;
                }
                let entries: Vec<(usize, &str)> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (i, m.receipt_handle.as_deref().expect("receipt handle")))
                    .collect();
                let failed = client
                    .delete_batch(&queue_url, &entries)
                    .await
                    .expect("delete");
                assert!(failed.ids.is_empty(), "deletes failed");
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
