//! Hostile policies: each attack costs at most the records that trigger it. The host stays
//! up, good records of the same batch are written, bad ones become dead letters with a reason
//! that says what happened, and a policy that fails on everything is called broken instead
//! of emptying the queue into the dead letters.

use crate::support::*;

/// The pass-through table hostile policies write to; created if missing.
async fn hostile_table(env: &TestEnv) -> String {
    let table = format!("{}_h", env.table);
    env.db
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (user_id text, poison boolean, seen_before text)"
        ))
        .await
        .unwrap();
    table
}

/// `good` plain records (user ids `good-0`, ...) with the `bad` bodies mixed in.
fn hostile_bodies(good: usize, bad: &[&str]) -> Vec<String> {
    let mut bodies: Vec<String> = (0..good)
        .map(|i| format!(r#"{{"user_id": "good-{i}"}}"#))
        .collect();
    for (i, b) in bad.iter().enumerate() {
        bodies.insert((i * 7 + 3).min(bodies.len()), b.to_string());
    }
    bodies
}

/// `masq run` arguments for `policy` (a built policy's path) into `table`, plus `extra`.
fn hostile_args<'a>(
    env_key: &'a str,
    plugin: &'a str,
    table: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--plugin",
        plugin,
        "--key-file",
        env_key,
        "--table",
        table,
    ];
    if !extra.contains(&"--batch-size") {
        // One batch holds good and bad records together.
        args.extend(["--batch-size", "100", "--batch-wait-ms", "300"]);
    }
    args.extend(extra);
    args
}

/// Sends `good` plain records and `bad` bodies, then drains with a hostile policy into a
/// pass-through table. Returns (exit code, stdout, stderr).
async fn run_hostile(
    env: &TestEnv,
    policy: &str,
    good: usize,
    bad: &[&str],
    extra: &[&str],
) -> (i32, String, String) {
    let table = hostile_table(env).await;
    env.send(&hostile_bodies(good, bad)).await;
    let plugin = plugin(policy);
    let key = env.key_file.display().to_string();
    let mut args = hostile_args(&key, plugin.to_str().unwrap(), &table, extra);
    args.insert(1, "--drain");
    let out = env.masq(&args).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn good_rows(env: &TestEnv) -> i64 {
    env.count(&format!("{}_h WHERE user_id LIKE 'good-%'", env.table))
        .await
}

async fn dead_reasons(env: &TestEnv) -> Vec<String> {
    env.db
        .query(
            "SELECT reason FROM masq.dead_letters WHERE target_table = $1 ORDER BY id",
            &[&format!("{}_h", env.table)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const POISON: &str = r#"{"user_id": "bad", "poison": true}"#;

#[tokio::test]
async fn an_endless_loop_is_stopped_at_its_deadline_and_costs_only_its_record() {
    let env = TestEnv::new("sbloop").await;
    // How soon after the deadline the loop is stopped depends on the machine's load; what
    // does not: the run finishes (a generous guard against a hang), the record's dead letter
    // names the deadline, and every other record of its batch is written.
    let (code, out, err) = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        run_hostile(
            &env,
            "hostile-loop",
            20,
            &[POISON],
            &["--policy-deadline-ms", "500"],
        ),
    )
    .await
    .expect("masq --drain with an endless-loop policy was still running after 300 s");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(good_rows(&env).await, 20);
    let reasons = dead_reasons(&env).await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    let re = regex_lite_after(
        &reasons[0],
        "policy ran past its deadline of 500 ms and was stopped after ",
    );
    let stopped_after: u64 = re
        .trim_end_matches(" ms")
        .parse()
        .unwrap_or_else(|_| panic!("{}", reasons[0]));
    // Never before its deadline (an upper bound would measure the machine, not masq).
    assert!(
        stopped_after >= 500,
        "stopped after {stopped_after} ms, before the 500 ms deadline"
    );
    let bad = env
        .count(&format!("{}_h WHERE user_id = 'bad'", env.table))
        .await;
    assert_eq!(bad, 0, "the looping record was written");
    assert_eq!(env.depth().await, (0, 0));
}

/// The text after `prefix` in `s` (panics if `s` does not start with it).
fn regex_lite_after<'a>(s: &'a str, prefix: &str) -> &'a str {
    s.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{s:?} does not start with {prefix:?}"))
}

/// A process's resident memory figure `field` (VmHWM: the peak so far; VmRSS: now), in KiB.
fn resident_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Runs `masq run` (not a drain) with `policy` into the pass-through table until `done`
/// holds, reads its peak resident memory (VmHWM) while it still runs, then stops it with
/// SIGTERM. Returns (peak KiB, stdout, stderr).
async fn peak_resident_while<F: AsyncFn() -> bool>(
    env: &TestEnv,
    policy: &str,
    extra: &[&str],
    done: F,
) -> (u64, String, String) {
    use std::time::{Duration, Instant};
    let table = hostile_table(env).await;
    let plugin = plugin(policy);
    let key = env.key_file.display().to_string();
    let mut args = hostile_args(&key, plugin.to_str().unwrap(), &table, extra);
    args.extend(["--wait-seconds", "1"]);
    let dir = tempdir("sbmem");
    let (out_file, err_file) = (dir.join("out"), dir.join("err"));
    let mut child = env
        .command(&args)
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .expect("masq starts");
    let pid = child.id().unwrap();
    let read = |f: &std::path::Path| std::fs::read_to_string(f).unwrap_or_default();
    let start = Instant::now();
    while !done().await {
        assert!(
            child.try_wait().unwrap().is_none(),
            "masq exited before the work was done:\n{}{}",
            read(&out_file),
            read(&err_file)
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the work was not done within 120 s:\n{}",
            read(&err_file)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = resident_kib(pid, "VmHWM");
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("masq did not exit within 30 s of SIGTERM")
        .unwrap();
    let (out, err) = (read(&out_file), read(&err_file));
    assert!(status.success(), "masq exited with {status}:\n{out}{err}");
    (peak, out, err)
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_cap() {
    let env = TestEnv::new("sbmem").await;
    let limit_mb = 16u64;
    let cap = ["--policy-memory-mb", "16"];

    // The host's own peak with this policy and batch shape, without the bomb.
    let baseline_ids: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"user_id": "base-{i}"}}"#))
        .collect();
    env.send(&baseline_ids).await;
    let base_rows = format!("{}_h WHERE user_id LIKE 'base-%'", env.table);
    let (baseline, _, _) = peak_resident_while(&env, "hostile-memory", &cap, async || {
        env.count(&base_rows).await == 20
    })
    .await;

    // The same with the bomb in the batch: a dead letter for it, rows for the rest.
    env.send(&hostile_bodies(20, &[POISON])).await;
    let (peak, out, err) = peak_resident_while(&env, "hostile-memory", &cap, async || {
        good_rows(&env).await == 20 && dead_reasons(&env).await.len() == 1
    })
    .await;
    assert_eq!(good_rows(&env).await, 20, "{out}{err}");
    let reasons = dead_reasons(&env).await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    let limit = limit_mb << 20;
    let rest = regex_lite_after(&reasons[0], "policy ran out of memory: it asked for ");
    let asked: u64 = rest.split(' ').next().unwrap().parse().unwrap();
    // What it asked for was refused: the memory it had never went past the cap.
    assert!(asked > limit, "{}", reasons[0]);
    assert!(
        reasons[0].ends_with(&format!("the limit is {limit} bytes")),
        "{}",
        reasons[0]
    );
    assert_eq!(env.depth().await, (0, 0));

    // And masq itself did not grow by what the bomb took: at most the cap over its peak
    // without the bomb, plus 64 MiB for everything else a failing batch costs (isolating
    // the record, the dead letter). Uncapped, the bomb would take 4 GiB.
    let allowed = baseline + (limit_mb << 10) + (64 << 10);
    eprintln!(
        "masq peak resident memory: {baseline} KiB without the bomb, {peak} KiB with it \
         (allowed {allowed} KiB)"
    );
    assert!(
        peak < allowed,
        "masq's peak resident memory was {peak} KiB with the bomb, {baseline} KiB without: \
         more than the {limit_mb} MiB cap and 64 MiB over"
    );
}

#[tokio::test]
async fn deep_recursion_traps_only_its_record() {
    let env = TestEnv::new("sbrec").await;
    let (code, out, err) = run_hostile(&env, "hostile-recursion", 20, &[POISON], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(good_rows(&env).await, 20);
    let reasons = dead_reasons(&env).await;
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("policy trapped: "), "{}", reasons[0]);
}

#[tokio::test]
async fn a_huge_output_value_is_refused() {
    let env = TestEnv::new("sbhuge").await;
    let (code, out, err) = run_hostile(&env, "hostile-huge-output", 20, &[POISON], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(good_rows(&env).await, 20);
    assert_eq!(
        dead_reasons(&env).await,
        [
            "policy output refused: field 'user_id' holds 16777216 bytes, more than the 1048576 allowed"
        ]
    );
}

#[tokio::test]
async fn a_trap_on_one_record_costs_only_that_record() {
    let env = TestEnv::new("sbtrap").await;
    let poison = r#"{"user_id": "poison"}"#;
    let (code, out, err) = run_hostile(&env, "hostile-trap-one", 40, &[poison, poison], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(good_rows(&env).await, 40);
    assert_eq!(
        dead_reasons(&env).await,
        ["policy trapped: wasm trap: wasm `unreachable` instruction executed"; 2]
    );
    assert_eq!(env.depth().await, (0, 0));
}

#[tokio::test]
async fn a_policy_that_fails_on_everything_is_broken_and_the_queue_keeps_its_messages() {
    for policy in ["hostile-panic", "hostile-wrong-count"] {
        let env = TestEnv::new("sbbroken").await;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let (code, out, err) = run_hostile(&env, policy, 30, &[], &["--metrics-addr", &addr]).await;
        assert_eq!(
            code, 3,
            "{policy}: a drain with a broken policy exits 3: {out}{err}"
        );
        assert!(out.contains("policy BROKEN"), "{policy}: {out}");
        assert!(err.contains("policy is BROKEN"), "{policy}: {err}");
        assert_eq!(
            dead_reasons(&env).await.len(),
            0,
            "{policy}: the queue was emptied into dead letters"
        );
        assert_eq!(good_rows(&env).await, 0);
        let (visible, in_flight) = env.depth().await;
        assert_eq!(visible + in_flight, 30, "{policy}: messages left the queue");
    }
}

#[tokio::test]
async fn no_state_survives_from_one_batch_to_the_next() {
    let env = TestEnv::new("sbstate").await;
    // Ten batches of five: an instance reused across batches would report earlier ids.
    let (code, out, err) = run_hostile(
        &env,
        "hostile-state",
        50,
        &[],
        &[
            "--batch-size",
            "5",
            "--batch-wait-ms",
            "0",
            "--policy-config",
            "writes=user_id,seen_before",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(good_rows(&env).await, 50);
    let leaked = env
        .count(&format!("{}_h WHERE seen_before <> ''", env.table))
        .await;
    assert_eq!(leaked, 0, "a policy saw records of an earlier batch");
}

#[tokio::test]
async fn forbidden_imports_and_a_trapping_describe_are_refused_at_load() {
    let env = TestEnv::new("sbload").await;
    let key = env.key_file.display().to_string();
    for (policy, expected) in [
        (
            "hostile-imports",
            "imports evil:net/exfiltrate, which masq does not grant",
        ),
        (
            "hostile-imports-fs",
            "imports wasi:filesystem/types@0.2.12, wasi:filesystem/preopens@0.2.12, which masq does not grant",
        ),
        ("hostile-describe", "`describe` failed: policy trapped"),
    ] {
        let plugin = plugin(policy);
        let out = env
            .masq(&[
                "run",
                "--plugin",
                plugin.to_str().unwrap(),
                "--key-file",
                &key,
            ])
            .await;
        assert!(!out.status.success(), "{policy} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{policy}: {err}");
        let out = env
            .masq(&["plugin", "check", plugin.to_str().unwrap()])
            .await;
        assert!(!out.status.success(), "plugin check passed {policy}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{policy}"
        );
    }
    let out = env
        .masq(&["plugin", "check", plugin("sha256-masker").to_str().unwrap()])
        .await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.starts_with("ok: sha256-masker 0.1.0"), "{report}");
    assert!(
        report.contains("contract:    masq:policy@0.2.0\n"),
        "{report}"
    );
    assert!(
        report.contains("imports:     masq:policy/types@0.2.0, masq:policy/pseudonym@0.2.0"),
        "{report}"
    );
    assert!(report.contains("pii:         ip, device_id\n"), "{report}");
    // A policy built against 0.1 still loads, and says so.
    let out = env
        .masq(&[
            "plugin",
            "check",
            plugin("python-masker-0.1").to_str().unwrap(),
        ])
        .await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("contract:    masq:policy@0.1.0\n"),
        "{report}"
    );
}

#[tokio::test]
async fn load_stops_on_a_broken_policy_by_the_same_rule_and_words_as_run() {
    let env = TestEnv::new("sbloadbroken").await;
    let table = hostile_table(&env).await;
    let dir = tempdir("sbloadbroken");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, hostile_bodies(30, &[]).join("\n")).unwrap();
    let plugin = plugin("hostile-panic");
    let key = env.key_file.display().to_string();
    let out = env
        .masq(&[
            "load",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--table",
            &table,
            "--input",
            input.to_str().unwrap(),
            "--batch-size",
            "100",
        ])
        .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // The same exit code, summary words and log line as `run --drain` (the test above).
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("policy BROKEN"), "{stdout}");
    assert!(stderr.contains("policy is BROKEN"), "{stderr}");
    assert!(stdout.contains("30 lines not loaded"), "{stdout}");
    assert_eq!(
        dead_reasons(&env).await.len(),
        0,
        "no line became a dead letter"
    );
    assert_eq!(good_rows(&env).await, 0);
    assert_eq!(env.ledger_count_of(&table).await, 0);
}

/// A policy that logs records' values (ip, user_id, its whole field list) at every level:
/// masq's log must carry none of them, only the field names in their place.
#[tokio::test]
async fn a_policy_cannot_log_a_records_values() {
    let env = TestEnv::new("logleak").await;
    let table = hostile_table(&env).await;
    let bodies: Vec<String> = (0..25)
        .map(|i| {
            format!(
                r#"{{"user_id": "good-{i}", "ip": "203.0.113.{}"}}"#,
                100 + i
            )
        })
        .collect();
    env.send(&bodies).await;
    let plugin = plugin("hostile-log-values");
    let key = env.key_file.display().to_string();
    let mut args = hostile_args(&key, plugin.to_str().unwrap(), &table, &[]);
    args.insert(1, "--drain");
    let out = env
        .command(&args)
        .env("MASQ_LOG", "debug")
        .output()
        .await
        .unwrap();
    let (stdout, log) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{log}");
    assert!(stdout.contains("written 25"), "{stdout}");
    // The lines were logged (three per record), with the fields named instead of the values.
    assert!(
        log.contains("user <field user_id> logged in from ip=<field ip>;"),
        "{log}"
    );
    assert!(log.contains(r#"Value::Text("<field ip>")"#), "{log}");
    for i in 0..25 {
        let ip = format!("203.0.113.{}", 100 + i);
        assert!(!log.contains(&ip), "ip {ip} reached the log:\n{log}");
        assert!(
            !log.contains(&format!("good-{i}\"")) && !log.contains(&format!("good-{i} ")),
            "user_id good-{i} reached the log:\n{log}"
        );
    }
}
