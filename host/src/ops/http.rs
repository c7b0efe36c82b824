//! The small HTTP server behind `--metrics-addr`: /metrics, /healthz, /readyz. No dependency:
//! the protocol needed is one GET line.

use super::metrics::Counters;
use crate::policy::ActivePolicy;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves /metrics, /healthz (alive: fails while masq holds messages without moving for longer
/// than the stall timeout) and /readyz (policy loaded, database reached).
pub async fn serve(listener: TcpListener, counters: Arc<Counters>, policy: Arc<ActivePolicy>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let (counters, policy) = (counters.clone(), policy.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                socket.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", counters.render(Some(&policy))),
                "/healthz" => match counters.stalled() {
                    None => ("200 OK", "ok\n".to_string()),
                    Some(since) => (
                        "503 Service Unavailable",
                        format!(
                            "stalled: holding {} messages, no progress for {} s\n",
                            Counters::get(&counters.held),
                            since.as_secs()
                        ),
                    ),
                },
                "/readyz" if counters.ready.load(Ordering::Relaxed) => {
                    ("200 OK", "ready\n".to_string())
                }
                "/readyz" => ("503 Service Unavailable", "not ready\n".to_string()),
                _ => (
                    "404 Not Found",
                    "try /metrics, /healthz or /readyz\n".to_string(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
