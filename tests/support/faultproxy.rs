//! tools/faultproxy, started for one scenario: SQS through it fails at the rates asked for.

use super::{endpoint, repo_root};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub struct FaultProxy {
    pub port: u16,
    _child: Child,
}

impl FaultProxy {
    /// Starts the proxy in front of the SQS server with these rates (see its --help).
    pub async fn start(config: Value) -> FaultProxy {
        let mut child = Command::new("python3")
            .arg(repo_root().join("tools/faultproxy/faultproxy.py"))
            .args(["--listen", "127.0.0.1:0", "--upstream", &endpoint()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs tools/faultproxy/faultproxy.py");
        // "faultproxy listening on 127.0.0.1:PORT, forwarding to ..."
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        let port = line
            .split_once("127.0.0.1:")
            .and_then(|(_, rest)| rest.split(',').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("faultproxy did not start: {line:?}"));
        let proxy = FaultProxy {
            port,
            _child: child,
        };
        proxy.configure(config).await;
        proxy
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes rates while running, e.g. `json!({"drop_after": 0})`.
    pub async fn configure(&self, config: Value) -> Value {
        self.call("POST", "/config", &config.to_string()).await
    }

    /// What it forwarded and injected so far.
    pub async fn stats(&self) -> Value {
        self.call("GET", "/stats", "").await
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> Value {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("faultproxy answers");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: faultproxy\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).await.unwrap();
        let (head, json) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "faultproxy refused {method} {path} {body}: {response}"
        );
        serde_json::from_str(json).expect("JSON from faultproxy")
    }
}
