//! Reversible masking: seal-masker on the real data set, `masq reveal`, wrong keys, key
//! rotation with `masq keygen --add-to`, and the refusal of a sealing policy under --unkeyed.

use crate::support::*;
use aes_siv::KeyInit as _;
use base64::Engine as _;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Output, Stdio};
use tokio::io::AsyncWriteExt;

/// The sealed token for `value` under a raw 32-byte master key, computed as documented in
/// wit/policy.wit and host/src/keys.rs: AES-SIV (no associated data) keyed with
/// HKDF-SHA256(salt none, IKM master, info "masq seal v1", 64 bytes); `<id>.<base64url>`.
fn sealed(key_id: &str, master: &[u8], value: &str) -> String {
    let mut siv_key = [0u8; 64];
    hkdf::Hkdf::<sha2::Sha256>::new(None, master)
        .expand(b"masq seal v1", &mut siv_key)
        .unwrap();
    let mut siv = aes_siv::siv::Aes256Siv::new(
        aes_siv::Key::<aes_siv::siv::Aes256Siv>::from_slice(&siv_key),
    );
    let out = siv.encrypt([&[] as &[u8]; 0], value.as_bytes()).unwrap();
    format!(
        "{key_id}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    )
}

/// `masq reveal --key-file FILE` with `tokens` on standard input, one per line.
async fn reveal_stdin(env: &TestEnv, key_file: &Path, tokens: &[String]) -> Output {
    let mut child = env
        .command(&["reveal", "--key-file", key_file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("masq runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all((tokens.join("\n") + "\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

/// The revealed lines, or a panic with masq's error.
fn revealed_lines(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "masq reveal failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// (user_id, masked_ip, masked_device_id) of every row, by user_id.
async fn masked_by_user(env: &TestEnv) -> Vec<(String, String, String)> {
    env.rows()
        .await
        .into_iter()
        .map(|r| {
            (
                r.user_id.unwrap(),
                r.masked_ip.unwrap(),
                r.masked_device_id.unwrap(),
            )
        })
        .collect()
}

/// (ip, device_id) of every login in the fixture, by user_id.
fn fixture_logins() -> HashMap<String, (String, String)> {
    let text = std::fs::read_to_string(fixture("fetch-login-queue/messages.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("user_id").is_some())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (s("user_id"), (s("ip"), s("device_id")))
        })
        .collect()
}

#[tokio::test]
async fn the_login_data_set_sealed_reveals_every_value() {
    let env = TestEnv::new("sealdata").await;
    let file = fixture("fetch-login-queue/messages.jsonl");
    let out = env.masq(&["seed", "--file", file.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = env.drain_with("seal-masker", &[]).await;
    assert!(
        summary.contains("received 100, written 99, dead-lettered 1"),
        "{summary}"
    );
    assert_eq!(
        env.ledger_policies().await,
        [("seal-masker".to_string(), "0.1.0".to_string(), 100)]
    );

    // Every token is exactly the documented AES-SIV of the raw value under the test's key.
    let logins = fixture_logins();
    let rows = masked_by_user(&env).await;
    assert_eq!(rows.len(), 99);
    for (user, ip_token, device_token) in &rows {
        let (ip, device_id) = &logins[user];
        assert_eq!(ip_token, &sealed(&env.key_id, &env.key, ip), "ip of {user}");
        assert_eq!(
            device_token,
            &sealed(&env.key_id, &env.key, device_id),
            "device_id of {user}"
        );
    }
    // The data set has no repeated ip or device id, so neither have the tokens.
    assert_eq!(rows.iter().map(|r| &r.1).collect::<HashSet<_>>().len(), 99);
    assert_eq!(rows.iter().map(|r| &r.2).collect::<HashSet<_>>().len(), 99);

    // No raw ip or device id anywhere in the table.
    let all_text: Vec<String> = env
        .db
        .query(&format!("SELECT t::text FROM {} t", env.table), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (ip, device_id) in logins.values() {
        for raw in [ip, device_id] {
            assert!(
                !all_text.iter().any(|row| row.contains(raw.as_str())),
                "raw value {raw} is in the table"
            );
        }
    }

    // `masq reveal` turns all 198 tokens back, in order, from standard input.
    let tokens: Vec<String> = rows
        .iter()
        .flat_map(|(_, ip, device)| [ip.clone(), device.clone()])
        .collect();
    let lines = revealed_lines(&reveal_stdin(&env, &env.key_file, &tokens).await);
    assert_eq!(lines.len(), tokens.len());
    let mut revealed = 0;
    for ((user, _, _), pair) in rows.iter().zip(lines.chunks(2)) {
        let (ip, device_id) = &logins[user];
        assert_eq!(
            (&pair[0], &pair[1]),
            (ip, device_id),
            "revealed values of {user}"
        );
        revealed += 1;
    }
    assert_eq!(revealed, 99, "100% of the rows reveal");

    // Tokens as arguments give the same answer.
    let key = env.key_file.display().to_string();
    let out = env
        .masq(&["reveal", "--key-file", &key, &rows[0].1, &rows[1].2])
        .await;
    assert_eq!(
        revealed_lines(&out),
        [logins[&rows[0].0].0.clone(), logins[&rows[1].0].1.clone()]
    );

    // A repeated value gives the same token, also in a later run: three more logins share
    // one ip of the data set and two share a device id.
    let (first_user, first_ip_token, _) = &rows[0];
    let ip = logins[first_user].0.clone();
    env.send(&[
        login("dup-1", &ip, "900-00-0001", "1.0.0", None),
        login("dup-2", &ip, "900-00-0002", "1.0.0", None),
        login("dup-3", &ip, "900-00-0002", "1.0.0", None),
    ])
    .await;
    env.drain_with("seal-masker", &[]).await;
    let dups: Vec<_> = masked_by_user(&env)
        .await
        .into_iter()
        .filter(|r| r.0.starts_with("dup-"))
        .collect();
    assert_eq!(dups.len(), 3);
    for (user, ip_token, _) in &dups {
        assert_eq!(
            ip_token, first_ip_token,
            "{user}: equal ips give equal tokens"
        );
    }
    assert_eq!(dups[1].2, dups[2].2, "equal device ids give equal tokens");
    assert_ne!(dups[0].2, dups[1].2);
}

#[tokio::test]
async fn a_wrong_key_file_fails_clearly_and_prints_no_value() {
    let env = TestEnv::new("sealwrong").await;
    env.send(&[login("u1", "10.1.2.3", "111-22-3333", "2.0", None)])
        .await;
    env.drain_with("seal-masker", &[]).await;
    let rows = masked_by_user(&env).await;
    let tokens = vec![rows[0].1.clone(), rows[0].2.clone()];

    let dir = tempdir("sealwrong");
    // The same key id with another secret: the token does not authenticate.
    let impostor = dir.join("impostor.key");
    std::fs::write(
        &impostor,
        format!(
            r#"{{"active": "{id}", "keys": {{"{id}": "{}"}}}}"#,
            base64_of(&[7u8; 32]),
            id = env.key_id
        ),
    )
    .unwrap();
    // Another key id altogether: the key is not in the file.
    let other = dir.join("other.key");
    let out = env.masq(&["keygen"]).await;
    assert!(out.status.success());
    std::fs::write(&other, &out.stdout).unwrap();

    for (key_file, expected) in [
        (&impostor, "does not authenticate"),
        (&other, "is not in the key file"),
    ] {
        for out in [
            reveal_stdin(&env, key_file, &tokens).await,
            env.masq(&[
                "reveal",
                "--key-file",
                key_file.to_str().unwrap(),
                &tokens[0],
                &tokens[1],
            ])
            .await,
        ] {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "reveal with {} succeeded",
                key_file.display()
            );
            assert!(
                out.stdout.is_empty(),
                "printed {:?}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(err.contains(&format!("key id '{}'", env.key_id)), "{err}");
            assert!(
                err.contains(&key_file.display().to_string()) && err.contains(expected),
                "{err}"
            );
            assert!(
                !err.contains("10.1.2.3") && !err.contains("111-22-3333"),
                "{err}"
            );
        }
    }

    // One bad token among good ones: still nothing printed.
    let mut mixed = tokens.clone();
    mixed.push(sealed("kother", &[9u8; 32], "10.1.2.3"));
    let out = reveal_stdin(&env, &env.key_file, &mixed).await;
    assert!(!out.status.success() && out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token 3 of 3 (key id 'kother')") && err.contains("Nothing was printed"),
        "{err}"
    );
}

#[tokio::test]
async fn rotation_seals_under_the_new_key_and_old_tokens_still_reveal() {
    let env = TestEnv::new("sealrotate").await;
    env.send(&[
        login("before-1", "10.9.8.7", "555-00-0001", "2.0", None),
        login("before-2", "10.9.8.6", "555-00-0002", "2.0", None),
    ])
    .await;
    env.drain_with("seal-masker", &[]).await;

    let key = env.key_file.display().to_string();
    let out = env.masq(&["keygen", "--add-to", &key]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!new_id.is_empty() && new_id != env.key_id, "{new_id}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&env.key_id),
        "names the kept key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&env.key_file)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.key_file).unwrap()).unwrap();
    assert_eq!(file["active"], new_id.as_str());
    assert_eq!(file["keys"].as_object().unwrap().len(), 2);

    env.send(&[
        login("after-1", "10.9.8.7", "555-00-0001", "2.0", None),
        login("after-2", "10.9.8.7", "555-00-0003", "2.0", None),
    ])
    .await;
    env.drain_with("seal-masker", &[]).await;

    let rows: HashMap<String, (String, String)> = masked_by_user(&env)
        .await
        .into_iter()
        .map(|(u, ip, d)| (u, (ip, d)))
        .collect();
    assert_eq!(rows.len(), 4);
    for (user, (ip, device)) in &rows {
        let id = if user.starts_with("before") {
            &env.key_id
        } else {
            &new_id
        };
        for token in [ip, device] {
            assert!(
                token.starts_with(&format!("{id}.")),
                "{user}: {token} is not under key {id}"
            );
        }
    }
    // The same value under the same key compares equal; under two keys it does not.
    assert_eq!(rows["after-1"].0, rows["after-2"].0);
    assert_ne!(rows["before-1"].0, rows["after-1"].0);

    // The rotated file reveals both generations.
    let users = ["before-1", "before-2", "after-1", "after-2"];
    let tokens: Vec<String> = users
        .iter()
        .flat_map(|u| [rows[*u].0.clone(), rows[*u].1.clone()])
        .collect();
    let lines = revealed_lines(&reveal_stdin(&env, &env.key_file, &tokens).await);
    assert_eq!(
        lines,
        [
            "10.9.8.7",
            "555-00-0001",
            "10.9.8.6",
            "555-00-0002",
            "10.9.8.7",
            "555-00-0001",
            "10.9.8.7",
            "555-00-0003"
        ]
    );
}

#[tokio::test]
async fn a_sealing_policy_is_refused_unkeyed() {
    let env = TestEnv::new("sealunkeyed").await;
    env.send(&[login("u1", "10.1.2.3", "111-22-3333", "2.0", None)])
        .await;
    let plugin = plugin("seal-masker");
    let out = env
        .masq(&[
            "run",
            "--drain",
            "--unkeyed",
            "--plugin",
            plugin.to_str().unwrap(),
        ])
        .await;
    assert!(!out.status.success(), "seal-masker ran unkeyed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("imports masq:policy/seal") && err.contains("--key-file"),
        "{err}"
    );
    assert_eq!(env.count("$table").await, 0);
    assert_eq!(env.ledger_count().await, 0);
    assert_eq!(env.depth().await, (1, 0), "the message stays in the queue");

    // `masq plugin check` needs no key file, for sealing policies too.
    let out = env
        .masq(&["plugin", "check", plugin.to_str().unwrap()])
        .await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.starts_with("ok: seal-masker 0.1.0"), "{report}");
    assert!(
        report.contains("imports:     masq:policy/types@0.2.0, masq:policy/seal@0.2.0"),
        "{report}"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
