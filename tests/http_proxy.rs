//! masq behind an HTTP proxy (`HTTP_PROXY`/`HTTPS_PROXY`, as corporate networks set them):
//! every SQS call goes through it, the hot-path ones (receive, delete, visibility, made by
//! masq's own client) as CONNECT tunnels, the others (made by the AWS SDK) as proxied requests;
//! nothing reaches SQS around it, and every message is written once.

use crate::support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A forward proxy on loopback: CONNECT opens a tunnel; a request in absolute form
/// (`POST http://host:port/ HTTP/1.1`) is sent on to its host, one request per connection.
struct ForwardProxy {
    port: u16,
    tunnels: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ForwardProxy {
    async fn start() -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (t, f) = (tunnels.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, t.clone(), f.clone()));
            }
        });
        ForwardProxy {
            port,
            tunnels,
            forwarded,
            task,
        }
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, tunnels: Arc<AtomicU64>, forwarded: Arc<AtomicU64>) {
    // The request head: up to the blank line.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        tunnels.fetch_add(1, Ordering::Relaxed);
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // Absolute form: send it on in origin form, asking the server to close after answering,
    // so every request on this connection is seen here.
    let rest = target.strip_prefix("http://").unwrap_or(target);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut upstream) = TcpStream::connect(host).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    forwarded.fetch_add(1, Ordering::Relaxed);
    let mut out = format!(
        "{method} {} HTTP/1.1\r\n",
        if path.is_empty() { "/" } else { path }
    );
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "connection" && name != "proxy-connection" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await.unwrap();
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[tokio::test]
async fn every_sqs_call_goes_through_the_proxy_from_the_environment() {
    let env = TestEnv::new("httpproxy").await;
    let bodies: Vec<String> = (0..150)
        .map(|i| {
            login(
                &format!("user-{i}"),
                &format!("10.1.{}.{}", i / 200, i % 200),
                &format!("dev-{i}"),
                "2.3.0",
                Some("en_US"),
            )
        })
        .collect();
    env.send(&bodies).await;
    let proxy = ForwardProxy::start().await;
    let url = format!("http://127.0.0.1:{}", proxy.port);

    let out = env
        .drain_command(&[])
        // SQS is 127.0.0.1: NO_PROXY must not exclude it for this test.
        .env("HTTP_PROXY", &url)
        .env("HTTPS_PROXY", &url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SQS calls go through the HTTP proxy from the environment"),
        "{stderr}"
    );

    // Every message written once, none left in the queue.
    assert_eq!(env.rows().await.len(), 150);
    assert_eq!(env.ledger_count().await, 150);
    assert_eq!(env.depth().await, (0, 0));
    // Receives and deletes (at least 15 of each) came through tunnels; the SDK's calls (the
    // queue check at start, the depth in the summary) as forwarded requests.
    let tunnels = proxy.tunnels.load(Ordering::Relaxed);
    let forwarded = proxy.forwarded.load(Ordering::Relaxed);
    assert!(tunnels >= 1, "no tunnel: masq's SQS client went around the proxy");
    assert!(forwarded >= 1, "no forwarded request: the SDK went around the proxy");
}
