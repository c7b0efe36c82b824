//! No peer can make masq hang without saying so: a PostgreSQL or SQS endpoint that accepts
//! connections and never answers fails the start with the timeout named; a PostgreSQL that
//! freezes mid-run is logged within the timeout, turns /healthz unhealthy, and once it thaws
//! every message is written exactly once.

use crate::support::net::{FreezingProxy, SilentServer};
use crate::support::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Runs masq to its end, which must come (a hang fails the test after `limit`).
async fn run_until_exit(
    cmd: &mut tokio::process::Command,
    limit: Duration,
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("masq still running after {limit:?}: it hangs"))
        .unwrap();
    (out, started.elapsed())
}

#[tokio::test]
async fn a_silent_postgresql_or_sqs_fails_the_start_naming_the_timeout() {
    let env = TestEnv::new("silentstart").await;
    let silent = SilentServer::start().await;
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let base = [
        "run",
        "--drain",
        "--plugin",
        plugin.to_str().unwrap(),
        "--key-file",
        &key,
    ];

    // As PostgreSQL: the connection is accepted, the startup message never answered.
    let url = format!("postgres://postgres@127.0.0.1:{}/masq_test", silent.port);
    let mut cmd = env.command(&base);
    cmd.args(["--database-url", &url, "--pg-connect-timeout", "2"]);
    let (out, took) = run_until_exit(&mut cmd, Duration::from_secs(60)).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "PostgreSQL at postgres@127.0.0.1:{}/masq_test did not answer within 2 s",
            silent.port
        )) && err.contains("--pg-connect-timeout"),
        "{err}"
    );
    // The 2 s asked for, not the 10 s default (a loose bound: start-up included).
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // As SQS: the HTTP request is sent, no response ever comes.
    let mut cmd = env.command(&base);
    cmd.env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", silent.port),
    )
    .args(["--sqs-timeout", "2"]);
    let (out, took) = run_until_exit(&mut cmd, Duration::from_secs(60)).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "SQS at http://127.0.0.1:{} did not answer within 2 s",
            silent.port
        )) && err.contains("--sqs-timeout"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// masq's stderr lines as they come, for a running process.
fn collect_lines(stderr: tokio::process::ChildStderr) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut check: F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_postgresql_that_freezes_mid_run_is_reported_and_nothing_is_lost_or_doubled() {
    let env = TestEnv::new("pgfreeze").await;
    let proxy = FreezingProxy::start("127.0.0.1:5432").await;
    let url = database_url().replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(
        url,
        database_url(),
        "the test database must be on 127.0.0.1:5432"
    );
    let metrics = free_port();
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let addr = format!("127.0.0.1:{metrics}");
    let mut child = env
        .command(&[
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--database-url",
            &url,
            "--pg-timeout",
            "3",
            "--pg-connect-timeout",
            "3",
            "--stall-timeout",
            "4",
            "--metrics-addr",
            &addr,
            "--batch-wait-ms",
            "50",
            "--visibility-timeout",
            "10",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = collect_lines(child.stderr.take().unwrap());
    let batch = |from: usize| -> Vec<String> {
        (from..from + 50)
            .map(|i| {
                login(
                    &format!("freeze-{i:03}"),
                    &format!("10.4.0.{}", i % 250),
                    &format!("200-00-{i:04}"),
                    "1.2.3",
                    None,
                )
            })
            .collect()
    };

    env.send(&batch(0)).await;
    wait_for("first 50 rows", Duration::from_secs(60), async || {
        env.rows().await.len() == 50
    })
    .await;
    assert!(
        http_get(metrics, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    proxy.freeze();
    env.send(&batch(50)).await;
    wait_for(
        "a log line naming the timeout",
        Duration::from_secs(60),
        async || {
            log.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("did not answer within 3 s"))
        },
    )
    .await;
    wait_for("/healthz unhealthy", Duration::from_secs(60), async || {
        http_get(metrics, "/healthz")
            .await
            .starts_with("HTTP/1.1 503")
    })
    .await;
    assert!(
        http_get(metrics, "/healthz")
            .await
            .contains("stalled: holding")
    );
    wait_for("the stall logged", Duration::from_secs(30), async || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("no progress while holding messages"))
    })
    .await;
    assert_eq!(env.rows().await.len(), 50, "nothing written while frozen");

    proxy.thaw();
    wait_for("all 100 rows", Duration::from_secs(90), async || {
        env.rows().await.len() >= 100
    })
    .await;
    wait_for("the queue empty", Duration::from_secs(60), async || {
        env.depth().await == (0, 0)
    })
    .await;
    wait_for(
        "/healthz healthy again",
        Duration::from_secs(30),
        async || {
            http_get(metrics, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        },
    )
    .await;

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("masq exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");

    // Exactly once: 100 rows, 100 distinct users, 100 ledger entries, no dead letters.
    let rows = env.rows().await;
    assert_eq!(rows.len(), 100);
    let mut users: Vec<String> = rows.iter().map(|r| r.user_id.clone().unwrap()).collect();
    users.dedup();
    assert_eq!(users.len(), 100);
    assert_eq!(env.ledger_count().await, 100);
    assert!(env.dead_letters().await.is_empty());
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|l| l.contains("progress again")),
        "the recovery was logged: {log:#?}"
    );
}
