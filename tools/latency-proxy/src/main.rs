//! latency-proxy: SQS as far away as a real region is, on loopback. Every request that goes
//! through waits a round trip drawn from a lognormal distribution (median and 99th percentile
//! configurable; 20 ms and 100 ms by default, about what a consumer in the same AWS region
//! sees), then is forwarded; responses come back at once. Requests on one connection stay in
//! order. It also counts the SQS API calls by action (the `X-Amz-Target` header), because SQS
//! bills per request.
//!
//! Usage:
//!   latency-proxy --upstream 127.0.0.1:4566 [--listen 127.0.0.1:0] [--control 127.0.0.1:0]
//!                 [--median-ms 20] [--p99-ms 100] [--seed 1]
//! Prints `latency-proxy listening on ADDR, control on ADDR, forwarding to UPSTREAM` and runs.
//! Control (plain HTTP): `GET /stats` gives `{"requests": {"ReceiveMessage": n, ...}, "total": n}`,
//! `POST /reset` zeroes the counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks that arrive closer together than this belong to one request (headers and body).
const SAME_REQUEST: Duration = Duration::from_millis(1);

struct Settings {
    upstream: String,
    /// ln of the median round trip, in seconds, and the spread, of the lognormal.
    mu: f64,
    sigma: f64,
}

/// SplitMix64: a small, fast, seedable generator; plenty for delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |name: &str, default: &str| -> f64 {
        arg(&args, name, default)
            .parse()
            .unwrap_or_else(|_| panic!("{name} takes a number"))
    };
    let (median, p99) = (number("--median-ms", "20"), number("--p99-ms", "100"));
    assert!(
        median > 0.0 && p99 >= median,
        "--p99-ms must be at least --median-ms, both positive"
    );
    // p99 = median * exp(2.3263 sigma): the 99th percentile of the standard normal.
    let settings = Arc::new(Settings {
        upstream: arg(&args, "--upstream", "127.0.0.1:4566"),
        mu: (median / 1e3).ln(),
        sigma: (p99 / median).ln() / 2.3263,
    });
    let rng = Arc::new(Mutex::new(Rng(number("--seed", "1") as u64)));
    let counts: Counts = Arc::default();
    let listener = TcpListener::bind(arg(&args, "--listen", "127.0.0.1:0"))
        .await
        .expect("cannot listen");
    let control = TcpListener::bind(arg(&args, "--control", "127.0.0.1:0"))
        .await
        .expect("cannot listen for control");
    println!(
        "latency-proxy listening on {}, control on {}, forwarding to {}",
        listener.local_addr().unwrap(),
        control.local_addr().unwrap(),
        settings.upstream
    );
    tokio::spawn(serve_control(control, counts.clone()));
    while let Ok((client, _)) = listener.accept().await {
        let (settings, rng, counts) = (settings.clone(), rng.clone(), counts.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&settings.upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(requests(client_read, server_write, settings, rng, counts));
            responses(server_read, client_write).await;
        });
    }
}

/// Client to server: each request waits its round trip, in order.
async fn requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    settings: Arc<Settings>,
    rng: Arc<Mutex<Rng>>,
    counts: Counts,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((release, bytes)) = rx.recv().await {
            tokio::time::sleep_until(release).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut last_arrival: Option<Instant> = None;
    let mut release = Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        if last_arrival.is_none_or(|t| now - t > SAME_REQUEST) {
            // A new request: its own round trip, never before the one ahead of it.
            let seconds = (settings.mu + settings.sigma * rng.lock().unwrap().normal()).exp();
            release = release.max(now + Duration::from_secs_f64(seconds));
            if let Some(action) = action_of(&buf[..n]) {
                *counts.lock().unwrap().entry(action).or_default() += 1;
            }
        }
        last_arrival = Some(now);
        if tx.send((release, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Server to client: at once.
async fn responses(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// The SQS action a request's headers name, e.g. `ReceiveMessage`.
fn action_of(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(8192)]);
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("x-amz-target") {
            return None;
        }
        let value = value.trim();
        Some(value.rsplit('.').next().unwrap_or(value).to_string())
    })
}

async fn serve_control(listener: TcpListener, counts: Counts) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            if request.starts_with("POST /reset") {
                counts.lock().unwrap().clear();
            }
            let snapshot = counts.lock().unwrap().clone();
            let total: u64 = snapshot.values().sum();
            let body = serde_json::json!({ "requests": snapshot, "total": total }).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
