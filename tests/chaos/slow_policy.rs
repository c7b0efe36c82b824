//! A policy slower than the visibility timeout: every batch takes longer than the 5 s SQS
//! hides a message for, so only the heartbeat keeps SQS from handing the batch's messages to
//! another receiver. Nothing may be received twice.

use crate::harness::*;
use std::time::{Duration, Instant};

/// Records per batch.
const BATCH: u64 = 10;

/// The `spin` setting that makes the slow policy take about `per_record` on one record on
/// this machine, found by timing `masq plugin test` from outside: once with `spin=0` (start-up,
/// compilation, one record) and then with growing spins until the spinning alone takes over
/// half a second. Each is the fastest of three runs, so a busy moment during calibration
/// makes the spin larger (the batches slower), never smaller.
async fn calibrate_spin(env: &ChaosEnv, per_record: Duration) -> u64 {
    let input = env.dir().join("one-record.jsonl");
    std::fs::write(
        &input,
        masq::source::synthetic::login(&mut masq::source::synthetic::SplitMix(random_u64())) + "\n",
    )
    .unwrap();
    let plugin = plugin("slow");
    let fastest = async |spin: u64| -> Duration {
        let config = format!("spin={spin}");
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let out = env
                .command(
                    &sqs_endpoint(),
                    &[
                        "plugin",
                        "test",
                        plugin.to_str().unwrap(),
                        "--input",
                        input.to_str().unwrap(),
                        "--policy-config",
                        &config,
                    ],
                )
                .output()
                .await
                .unwrap();
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "masq plugin test slow.wasm failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            best = best.min(took);
        }
        best
    };
    let base = fastest(0).await;
    let mut spin: u64 = 10_000_000;
    loop {
        let spinning = fastest(spin).await.saturating_sub(base);
        if spinning >= Duration::from_millis(500) {
            let per_iteration = spinning.as_secs_f64() / spin as f64;
            let chosen = (per_record.as_secs_f64() / per_iteration).ceil() as u64;
            eprintln!(
                "[slow] calibration: start-up {base:?}, spin={spin} took {spinning:?} more; \
                 spin={chosen} for {per_record:?} per record"
            );
            return chosen;
        }
        assert!(
            spin < 1 << 50,
            "the slow policy does not get slower with spin ({spin} iterations: {spinning:?})"
        );
        // Aim at about a second, at most 16 times more per step.
        let factor = if spinning.is_zero() {
            16.0
        } else {
            (1.0 / spinning.as_secs_f64()).clamp(2.0, 16.0)
        };
        spin = (spin as f64 * factor) as u64;
    }
}

#[tokio::test]
async fn heartbeats_keep_a_slow_batch_invisible_past_the_visibility_timeout() {
    let _one_at_a_time = exclusive().await;
    let messages = if full() { 100 } else { 30 };
    let env = ChaosEnv::new("slow", messages).await;
    // A batch takes about twice the visibility timeout.
    let spin = calibrate_spin(&env, Duration::from_secs(2 * VISIBILITY) / BATCH as u32).await;
    let metrics_port = free_port();
    let plugin = plugin("slow");
    let spin = format!("spin={spin}");
    let batch = BATCH.to_string();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut child = env
        .command(
            &sqs_endpoint(),
            &[
                "run",
                "--drain",
                "--plugin",
                plugin.to_str().unwrap(),
                "--policy-config",
                &spin,
                "--policy-deadline-ms",
                "600000",
                "--visibility-timeout",
                &VISIBILITY.to_string(),
                "--batch-size",
                &batch,
                "--batch-wait-ms",
                "100",
                "--workers",
                "2",
                "--metrics-addr",
                &metrics,
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Read the policy's time per batch from /metrics while masq runs.
    let started = Instant::now();
    let mut per_batch = 0.0f64;
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the slow drain took over 10 minutes"
        );
        if let Some((seconds, batches)) = policy_time(metrics_port).await
            && batches > 0.0
        {
            per_batch = seconds / batches;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "masq failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8(out.stdout).unwrap();
    eprintln!(
        "[slow] {summary}[slow] policy time per batch {per_batch:.1} s, visibility timeout {VISIBILITY} s"
    );

    assert!(
        per_batch > VISIBILITY as f64,
        "batches took {per_batch:.1} s, not longer than the {VISIBILITY} s visibility timeout: \
         the calibration of spin was wrong"
    );
    // Received exactly once each: no message came back while it was being worked on.
    assert_eq!(summary_count(&summary, "received"), env.sent, "{summary}");
    assert_eq!(
        summary_count(&summary, "duplicates skipped"),
        0,
        "{summary}"
    );
    assert_eq!(
        summary_count(&summary, "written"),
        env.sent - env.malformed,
        "{summary}"
    );
    env.assert_exactly_once().await;
}

/// (masq_policy_seconds_total, masq_batches_total) from /metrics; None if not answering.
async fn policy_time(port: u16) -> Option<(f64, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
    };
    Some((
        value("masq_policy_seconds_total ")?,
        value("masq_batches_total ")?,
    ))
}
