//! Hot swaps: policy versions replaced while masq drains a queue lose nothing, write nothing
//! twice, and every row is traceable to the version that produced it. Broken replacements
//! are refused and the running version keeps serving.

use crate::support::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// A table for the version-stamp policy: which version wrote each message's row.
async fn stamp_table(env: &TestEnv) -> String {
    let table = format!("{}_stamps", env.table);
    env.db
        .batch_execute(&format!(
            "CREATE TABLE {table} (message_id text, policy_version text, user_id text)"
        ))
        .await
        .unwrap();
    table
}

/// Replaces `live` the way deploy tools do: write a temporary file, then rename over it.
fn replace_atomically(live: &Path, from: &Path) {
    let tmp = live.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, live).unwrap();
}

async fn events(env: &TestEnv, table: &str, event: &str) -> i64 {
    env.db
        .query_one(
            "SELECT count(*) FROM masq.policy_events WHERE target_table = $1 AND event = $2",
            &[&table, &event],
        )
        .await
        .unwrap()
        .get(0)
}

async fn wait_for_events(env: &TestEnv, table: &str, event: &str, n: i64) {
    let start = Instant::now();
    while events(env, table, event).await < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no {n}th '{event}' event within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn twenty_swaps_during_a_drain_lose_nothing_and_every_row_names_its_version() {
    swaps_during_a_drain(
        "hotswap",
        [("version-stamp", "1.0.0"), ("version-stamp-2", "2.0.0")],
    )
    .await;
}

/// A third-party 0.1 policy and a 0.2 policy replace each other while masq drains: the host
/// switches contracts between batches with the same guarantees as between versions.
#[tokio::test]
async fn twenty_swaps_between_contract_0_1_and_0_2_lose_nothing_and_every_row_names_its_version() {
    swaps_during_a_drain(
        "hotswap12",
        [("version-stamp", "1.0.0"), ("version-stamp-02", "3.0.0")],
    )
    .await;
}

/// Swaps between the two `(plugin, version)`s 20 times under load, then checks: nothing
/// lost, nothing written twice, every row's version is the ledger's version for its message,
/// and both versions wrote rows.
async fn swaps_during_a_drain(name: &str, policies: [(&str, &str); 2]) {
    let env = TestEnv::new(name).await;
    let table = stamp_table(&env).await;
    let dir = tempdir(name);
    let live = dir.join("policy.wasm");
    let versions = policies.map(|(p, _)| plugin(p));
    std::fs::copy(&versions[0], &live).unwrap();
    let key = env.key_file.display().to_string();
    let masq = env
        .command(&[
            "run",
            "--plugin",
            live.to_str().unwrap(),
            "--key-file",
            &key,
            "--table",
            &table,
            "--wait-seconds",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_events(&env, &table, "started", 1).await;
    // 20,000 messages arrive in 20 waves; each wave is still being worked on when the
    // next swap lands, whatever the machine's speed.
    for swap in 1..=20 {
        let out = env
            .masq(&["seed", "--count", "1000", "--seed", &swap.to_string()])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        replace_atomically(&live, &versions[swap % 2]);
        wait_for_events(&env, &table, "swapped", swap as i64).await;
    }
    let start = Instant::now();
    while env.ledger_count_of(&table).await < 20000 {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not all messages handled within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &masq.id().unwrap().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = masq.wait_with_output().await.unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("received 20000,") && summary.contains("policy swaps 20, refused 0"),
        "{summary}"
    );
    assert_eq!(
        env.ledger_count_of(&table).await,
        20000,
        "every message is in the ledger once"
    );

    let rows = env.count(&table).await;
    let dead: i64 = env
        .count(&format!("masq.dead_letters WHERE target_table = '{table}'"))
        .await;
    assert_eq!(rows + dead, 20000, "lost messages");
    assert_eq!(
        env.count(&format!("(SELECT DISTINCT message_id FROM {table}) d"))
            .await,
        rows,
        "duplicated rows"
    );
    // The ledger's version for each message is the version that wrote its row.
    let matching = env
        .count(&format!(
            "{table} t JOIN masq.ledger_entries('{table}') l ON l.message_id = t.message_id \
             AND l.policy_version = t.policy_version AND l.outcome = 'written'"
        ))
        .await;
    assert_eq!(
        matching, rows,
        "rows whose ledger entry names another version"
    );
    for (_, version) in policies {
        let n = env
            .count(&format!("{table} WHERE policy_version = '{version}'"))
            .await;
        assert!(n > 0, "no rows from version {version}");
    }
    assert_eq!(env.depth().await, (0, 0));
}

#[tokio::test]
async fn broken_replacements_are_refused_and_the_old_version_keeps_serving() {
    let env = TestEnv::new("badswap").await;
    let table = stamp_table(&env).await;
    let dir = tempdir("badswap");
    let live = dir.join("policy.wasm");
    std::fs::copy(plugin("version-stamp"), &live).unwrap();
    let port = free_port();
    let key = env.key_file.display().to_string();
    let masq = env
        .command(&[
            "run",
            "--plugin",
            live.to_str().unwrap(),
            "--key-file",
            &key,
            "--table",
            &table,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--wait-seconds",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_events(&env, &table, "started", 1).await;

    let mut sent = 0;
    let mut send_and_wait = async |n: usize| {
        let bodies: Vec<String> = (sent..sent + n)
            .map(|i| login(&format!("user-{i}"), "10.9.9.9", "000-00-0000", "1.0", None))
            .collect();
        sent += n;
        env.send(&bodies).await;
        let start = Instant::now();
        while env.count(&table).await < sent as i64 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "rows not written within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    send_and_wait(50).await; // also fills the canary with real records

    let v2 = std::fs::read(plugin("version-stamp-2")).unwrap();
    let not_wasm = dir.join("not-wasm.wasm");
    std::fs::write(&not_wasm, "#!/bin/sh\necho not a policy\n").unwrap();
    let truncated = dir.join("truncated.wasm");
    std::fs::write(&truncated, &v2[..v2.len() / 2]).unwrap();
    let core_module = dir.join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let broken: Vec<(&str, std::path::PathBuf, &str)> = vec![
        ("not wasm", not_wasm, "is not a WebAssembly component"),
        (
            "core module, not a component",
            core_module,
            "is not a WebAssembly component",
        ),
        (
            "foreign import",
            plugin("hostile-imports"),
            "imports evil:net/exfiltrate, which masq does not grant",
        ),
        (
            "filesystem import",
            plugin("hostile-imports-fs"),
            "imports wasi:filesystem/types@0.2.12, wasi:filesystem/preopens@0.2.12, which masq does not grant",
        ),
        (
            "trapping describe",
            plugin("hostile-describe"),
            "`describe` failed",
        ),
        (
            "trapping on the canary",
            plugin("hostile-panic"),
            "failed on a canary batch",
        ),
        (
            "truncated mid-copy",
            truncated,
            "is not a WebAssembly component",
        ),
    ];
    for (i, (label, file, expected)) in broken.iter().enumerate() {
        replace_atomically(&live, file);
        wait_for_events(&env, &table, "refused", i as i64 + 1).await;
        let detail: String = env
            .db
            .query_one(
                "SELECT detail FROM masq.policy_events WHERE target_table = $1 AND event = 'refused' ORDER BY id DESC LIMIT 1",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            detail.contains(expected),
            "{label}: refusal says {detail:?}"
        );
        let metrics = http_get(port, "/metrics").await;
        assert!(
            metrics.contains(&format!("masq_policy_refusals_total {}", i + 1)),
            "{label}: {metrics}"
        );
        assert!(
            metrics.contains("version=\"1.0.0\""),
            "{label}: old version not serving"
        );
        send_and_wait(20).await;
    }

    // A copy in place, caught half-written, is retried and not refused.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&live)
            .unwrap();
        f.write_all(&v2[..v2.len() / 2]).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        f.write_all(&v2[v2.len() / 2..]).unwrap();
    }
    wait_for_events(&env, &table, "swapped", 1).await;
    assert_eq!(
        events(&env, &table, "refused").await,
        broken.len() as i64,
        "a copy in progress was refused"
    );
    send_and_wait(20).await;

    let status = env.masq(&["status", "--table", &table]).await;
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("serving: policy version-stamp 2.0.0"),
        "{status}"
    );
    assert!(status.contains("refused"), "{status}");

    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &masq.id().unwrap().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = masq.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("new policy refused, old one keeps serving")
            .count(),
        broken.len(),
        "one log line per refusal: {stderr}"
    );
    // Nothing lost, nothing twice, old version until the good swap.
    assert_eq!(env.count(&table).await, sent as i64);
    assert_eq!(
        env.count(&format!("(SELECT DISTINCT message_id FROM {table}) d"))
            .await,
        sent as i64
    );
    assert_eq!(
        env.count(&format!("{table} WHERE policy_version = '2.0.0'"))
            .await,
        20
    );
    assert_eq!(env.depth().await, (0, 0));
}

#[tokio::test]
async fn a_pinned_digest_refuses_any_other_file() {
    let env = TestEnv::new("pin").await;
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let wrong = "0".repeat(64);
    let out = env
        .masq(&[
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--plugin-sha256",
            &wrong,
        ])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    use sha2::Digest;
    let actual = hex::encode(sha2::Sha256::digest(std::fs::read(&plugin).unwrap()));
    assert!(
        err.contains(&actual) && err.contains(&wrong),
        "error must name both digests: {err}"
    );

    // The right digest starts.
    env.send(&[login("u1", "1.2.3.4", "111-11-1111", "1.0", None)])
        .await;
    env.drain(&["--plugin-sha256", &actual]).await;
    assert_eq!(env.rows().await.len(), 1);
}

#[tokio::test]
async fn a_rotated_key_file_applies_to_new_batches_while_running() {
    let env = TestEnv::new("keyswap").await;
    let port = free_port();
    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let masq = env
        .command(&[
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--wait-seconds",
            "1",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_events(&env, &env.table, "started", 1).await;
    // Probes for Kubernetes: alive, and ready once the policy is loaded and masq is running.
    assert!(http_get(port, "/healthz").await.starts_with("HTTP/1.1 200"));
    let start = Instant::now();
    while !http_get(port, "/readyz").await.starts_with("HTTP/1.1 200") {
        assert!(start.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let wait_rows = async |n: usize| {
        let start = Instant::now();
        while env.rows().await.len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "rows not written within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    env.send(&[login("before", "10.7.0.1", "700-00-0001", "1.0", None)])
        .await;
    wait_rows(1).await;

    // Rotate: a new active key, the old one kept.
    let out = env.masq(&["keygen", "--add-to", &key]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!new_id.is_empty() && new_id != env.key_id, "{new_id}");
    wait_for_events(&env, &env.table, "key_rotated", 1).await;
    env.send(&[
        login("after", "10.7.0.1", "700-00-0001", "1.0", None),
        login("after-2", "10.7.0.1", "700-00-0002", "1.0", None),
    ])
    .await;
    wait_rows(3).await;

    let rows = env.rows().await;
    let ip_of = |user: &str| {
        rows.iter()
            .find(|r| r.user_id.as_deref() == Some(user))
            .unwrap()
            .masked_ip
            .clone()
            .unwrap()
    };
    // Before: the old key, exactly as computed independently.
    assert_eq!(ip_of("before"), env.token("10.7.0.1"));
    // After: the new key id; the same value under the same (new) key gives the same token.
    assert!(
        ip_of("after").starts_with(&format!("{new_id}:")),
        "{}",
        ip_of("after")
    );
    assert_eq!(ip_of("after"), ip_of("after-2"));
    assert_ne!(ip_of("after"), ip_of("before"));
    let metrics = http_get(port, "/metrics").await;
    assert!(metrics.contains("masq_key_reloads_total 1"), "{metrics}");

    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &masq.id().unwrap().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(masq.wait_with_output().await.unwrap().status.success());
}
