//! `--receivers auto`: masq adds receives while they come back full, never beyond
//! `--max-receivers`, drops to one long poll on an empty queue, and through all of it (and
//! through failing receives) writes every message once. SQS sits 20 ms away behind
//! tools/faultproxy, so one receiver cannot keep up and the pool must grow.

use crate::support::faultproxy::FaultProxy;
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// `masq_receivers` from /metrics; None while masq does not answer yet.
async fn receivers_now(port: u16) -> Option<u64> {
    let metrics = tokio::time::timeout(Duration::from_secs(5), try_http_get(port, "/metrics"))
        .await
        .ok()??;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("masq_receivers "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn adaptive_receivers_grow_never_past_the_maximum_and_shrink_on_an_empty_queue() {
    let env = TestEnv::new("adaptive").await;
    let proxy = FaultProxy::start(json!({"delay_ms": 20, "receive_5xx": 0.05})).await;
    let port = free_port();
    let (plugin, key, addr) = (
        plugin("sha256-masker"),
        env.key_file.display().to_string(),
        format!("127.0.0.1:{port}"),
    );
    let child = env
        .command(&[
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--receivers",
            "auto",
            "--max-receivers",
            "6",
            "--wait-seconds",
            "1",
            "--metrics-addr",
            &addr,
        ])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(120);

    // An empty queue: down to one long poll.
    let started = Instant::now();
    while receivers_now(port).await != Some(1) {
        assert!(
            started.elapsed() < limit,
            "receivers never came down to 1 on an empty queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 3,000 messages 20 ms away: one receiver brings ~400/s, so the pool grows, to 6 at most.
    let bodies: Vec<String> = (0..3000)
        .map(|i| {
            login(
                &format!("ad-{i:04}"),
                &format!("10.20.{}.{}", i / 250, i % 250),
                "100-00-0001",
                "1.0",
                None,
            )
        })
        .collect();
    env.send(&bodies).await;
    let mut most = 0;
    let started = Instant::now();
    while env.ledger_count().await < 3000 {
        assert!(
            started.elapsed() < limit,
            "not all messages written within {limit:?}"
        );
        if let Some(n) = receivers_now(port).await {
            assert!(n <= 6, "{n} receivers, over --max-receivers 6");
            most = most.max(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It grew from the one long poll of the empty queue; how far depends on whether each
    // doubling paid on this machine at this moment (the unit tests of `adapt` pin the rule).
    assert!(most >= 2, "the pool never grew beyond one receiver: {most}");

    // Empty again: back to one.
    let started = Instant::now();
    while receivers_now(port).await != Some(1) {
        assert!(
            started.elapsed() < limit,
            "receivers did not shrink once the queue was empty"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("masq stops after SIGTERM")
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak: u64 = summary
        .split("receivers at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no receivers in the summary: {summary}"));
    assert!((2..=6).contains(&peak), "{summary}");
    assert!(summary.contains("(auto, up to 6)"), "{summary}");
    assert!(
        proxy.stats().await["injected"]["receive_5xx"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Exactly once, through the failed receives and every change of the pool.
    let rows = env.rows().await;
    assert_eq!(rows.len(), 3000);
    let mut users: Vec<&str> = rows.iter().map(|r| r.user_id.as_deref().unwrap()).collect();
    users.dedup();
    assert_eq!(users.len(), 3000);
    assert_eq!(env.ledger_count().await, 3000);
    assert_eq!(env.depth().await, (0, 0));
}
