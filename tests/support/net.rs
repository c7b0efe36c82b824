//! Network peers that misbehave on purpose: a server that accepts connections and never
//! answers, and a TCP proxy that can freeze (stop forwarding) and thaw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Accepts every connection and never sends a byte: what a hung server looks like from the
/// client's side (TCP connects, nothing comes back).
pub struct SilentServer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                // Kept open, never read or written.
                held.push(socket);
            }
        });
        SilentServer { port, task }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy on loopback in front of `upstream`. `freeze()` stops it forwarding anything in
/// either direction on every connection, old and new (connections stay open, bytes are held);
/// `thaw()` delivers what was held and forwards again.
pub struct FreezingProxy {
    pub port: u16,
    frozen: watch::Sender<bool>,
    forwarded: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    pub async fn start(upstream: &str) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, watcher) = watch::channel(false);
        let forwarded = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let flag = forwarded.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, watcher.clone(), flag.clone()));
                tokio::spawn(pipe(sr, cw, watcher.clone(), flag.clone()));
            }
        });
        FreezingProxy {
            port,
            frozen,
            forwarded,
            task,
        }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Whether any byte went through so far.
    pub fn forwarded(&self) -> bool {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
    forwarded: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        // Frozen: hold the bytes (and the end of the stream) until thawed.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        forwarded.store(true, Ordering::Relaxed);
    }
}
