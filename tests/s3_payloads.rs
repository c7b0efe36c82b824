//! Large payloads in S3 (the SQS Extended Client's pointer format): fetched before the policy
//! sees them, their objects deleted only after their commit when asked, a missing object one
//! dead letter naming bucket and key, a bucket not allowed never read.

use crate::support::aws::{create_bucket, object_keys, s3_client};
use crate::support::*;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// A login whose `padding` field makes the body exactly `size` bytes.
fn padded_login(i: usize, size: usize) -> String {
    let base = login(
        &format!("big-{i}"),
        &format!("10.20.0.{i}"),
        &format!("200-00-{i:04}"),
        "3.1.4",
        Some("DE"),
    );
    let shell = base.trim_end_matches('}').to_string() + r#", "padding": ""}"#;
    let fill = size - shell.len();
    let body = base.trim_end_matches('}').to_string()
        + &format!(r#", "padding": "{}"}}"#, "x".repeat(fill));
    assert_eq!(body.len(), size);
    body
}

async fn add_padding_column(env: &TestEnv) {
    env.db
        .batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN padding text",
            env.table
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn s3_payloads_of_1_mib_land_and_are_deleted_only_after_their_commit() {
    let env = TestEnv::new("s3-big").await;
    add_padding_column(&env).await;
    let bucket = create_bucket("masq-payloads").await;
    // 20 bodies of 1 MiB among 80 small ones, in a mixed order.
    let bodies: Vec<String> = (0..100)
        .map(|i| {
            if i % 5 == 0 {
                padded_login(i, MIB)
            } else {
                login(
                    &format!("small-{i}"),
                    &format!("10.30.0.{i}"),
                    &format!("300-00-{i:04}"),
                    "1.0",
                    None,
                )
            }
        })
        .collect();
    let file = env.jsonl("mixed.jsonl", &bodies);
    let out = env
        .masq(&["seed", "--file", &file, "--s3-offload-bucket", &bucket])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        object_keys(&bucket).await.len(),
        20,
        "the 20 large bodies are in S3"
    );

    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--s3-payload-bucket",
            &bucket,
            "--s3-delete-after-commit",
            "--policy-memory-mb",
            "256",
            "--visibility-timeout",
            "5",
            "--wait-seconds",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // A run that dies right after its first commit, before acknowledging anything: the
    // committed messages' objects are still there, and so is every other one.
    let crash_args = args(&["--batch-size", "10", "--workers", "1"]);
    let crash_args: Vec<&str> = crash_args.iter().map(String::as_str).collect();
    let out = env
        .command(&crash_args)
        .env("MASQ_FAILPOINT", "crash-after-commit")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the run did not abort at the failpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = env.ledger_count().await;
    assert!(committed > 0, "the crashed run committed nothing");
    assert_eq!(
        object_keys(&bucket).await.len(),
        20,
        "an object was deleted before its message was acknowledged after the commit"
    );

    // Its messages come back after their visibility timeout; drain until every one is in.
    for _ in 0..10 {
        let drain_args = args(&["--drain"]);
        let drain_args: Vec<&str> = drain_args.iter().map(String::as_str).collect();
        let out = env.masq(&drain_args).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if env.ledger_count().await == 100 && env.depth().await == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    assert_eq!(env.ledger_count().await, 100);
    assert_eq!(env.depth().await, (0, 0));
    assert_eq!(env.count("$table").await, 100, "100 rows, none twice");
    // Each large row is exactly the body that was offloaded, masked.
    let big: Vec<(String, String, i32)> = env
        .db
        .query(
            &format!("SELECT user_id, masked_ip, length(padding) FROM {} WHERE user_id LIKE 'big-%' ORDER BY user_id", env.table),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(big.len(), 20);
    for (user_id, masked_ip, padding) in &big {
        let i: usize = user_id.trim_start_matches("big-").parse().unwrap();
        assert_eq!(masked_ip, &env.token(&format!("10.20.0.{i}")));
        let body = padded_login(i, MIB);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(*padding as usize, v["padding"].as_str().unwrap().len());
    }
    assert!(env.dead_letters().await.is_empty());
    assert_eq!(
        object_keys(&bucket).await,
        Vec::<String>::new(),
        "committed: every object deleted"
    );
}

#[tokio::test]
async fn s3_a_missing_object_is_one_dead_letter_naming_bucket_and_key() {
    let env = TestEnv::new("s3-missing").await;
    let bucket = create_bucket("masq-missing").await;
    let other = create_bucket("masq-other").await;
    let bodies = vec![
        login("m-1", "10.40.0.1", "400-00-0001", "1.0", None),
        login("m-2", "10.40.0.2", "400-00-0002", "1.0", None),
    ];
    let file = env.jsonl("two.jsonl", &bodies);
    // Both offloaded (any size over 0 bytes), then one object removed.
    let out = env
        .masq(&[
            "seed",
            "--file",
            &file,
            "--s3-offload-bucket",
            &bucket,
            "--s3-offload-over",
            "0",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = object_keys(&bucket).await;
    assert_eq!(keys.len(), 2);
    let gone = keys[0].clone();
    s3_client()
        .await
        .delete_object()
        .bucket(&bucket)
        .key(&gone)
        .send()
        .await
        .unwrap();
    // A pointer to a bucket masq is not allowed to read.
    let foreign = format!(
        r#"["software.amazon.payloadoffloading.PayloadS3Pointer", {{"s3BucketName": "{other}", "s3Key": "secret"}}]"#
    );
    env.send(std::slice::from_ref(&foreign)).await;

    let summary = env.drain(&["--s3-payload-bucket", &bucket]).await;
    assert!(
        summary.contains("received 3, written 1, dead-lettered 2"),
        "{summary}"
    );
    let rows = env.rows().await;
    assert_eq!(rows.len(), 1);
    let mut dead = env.dead_letters().await;
    dead.sort_by(|a, b| a.1.cmp(&b.1));
    let missing_pointer = format!(
        r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{{"s3BucketName":"{bucket}","s3Key":"{gone}"}}]"#
    );
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(
        dead[0],
        (
            foreign,
            format!(
                "body points to payload object s3://{other}/secret in a bucket masq may not read: allow it with --s3-payload-bucket {other}"
            ),
            "decode".to_string()
        )
    );
    assert_eq!(
        dead[1],
        (
            missing_pointer,
            format!(
                "payload object s3://{bucket}/{gone} does not exist (NoSuchKey): the dead letter keeps the pointer: restore the object and send the pointer to the queue again"
            ),
            "decode".to_string()
        )
    );
    // Without --s3-delete-after-commit the fetched object stays.
    assert_eq!(object_keys(&bucket).await, vec![keys[1].clone()]);
    assert_eq!(env.ledger_count().await, 3);
    assert_eq!(env.depth().await, (0, 0));
}

#[tokio::test]
async fn s3_unreachable_payload_is_retried_later_and_its_fifo_group_waits() {
    let mut env = TestEnv::new("s3-unreachable").await;
    env.queue_url = crate::support::aws::create_fifo_queue(&env.sqs, "s3-unreachable").await;
    env.db
        .batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN row_no bigserial",
            env.table
        ))
        .await
        .unwrap();
    add_padding_column(&env).await;
    let bucket = create_bucket("masq-unreachable").await;
    // Two groups (message i goes to group-{i mod 2}): group-0 gets a large body (offloaded)
    // then a small one; group-1 two small ones.
    let bodies = vec![
        padded_login(1, 300_000),
        login("b-1", "10.70.0.1", "700-00-0001", "1.0", None),
        login("a-2", "10.70.0.2", "700-00-0002", "1.0", None),
        login("b-2", "10.70.0.3", "700-00-0003", "1.0", None),
    ];
    let file = env.jsonl("groups.jsonl", &bodies);
    let out = env
        .masq(&[
            "seed",
            "--file",
            &file,
            "--fifo-groups",
            "2",
            "--s3-offload-bucket",
            &bucket,
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(object_keys(&bucket).await.len(), 1);

    let plugin = plugin("sha256-masker");
    let key = env.key_file.display().to_string();
    let args = [
        "run",
        "--drain",
        "--plugin",
        plugin.to_str().unwrap(),
        "--key-file",
        &key,
        "--s3-payload-bucket",
        &bucket,
        "--policy-memory-mb",
        "256",
    ];
    // S3 is unreachable (nothing listens there) while SQS is not.
    let out = env
        .command(&args)
        .env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("payload not fetched; the message goes back to the queue and is tried again"),
        "{stderr}"
    );
    // group-1 went on; group-0's payload is back in the queue, not dead-lettered, and the
    // message after it waits.
    let written: Vec<String> = user_ids_in_order(&env).await;
    assert_eq!(written, ["b-1", "b-2"], "{stderr}");
    assert!(env.dead_letters().await.is_empty());
    let (visible, in_flight) = env.depth().await;
    assert_eq!(
        visible + in_flight,
        2,
        "group-0's two messages are still in the queue"
    );

    // S3 is back: after the retry delay, both land, in their group's order.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let out = env.masq(&args).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if env.ledger_count().await == 4 {
            break;
        }
    }
    assert_eq!(
        user_ids_in_order(&env).await,
        ["b-1", "b-2", "big-1", "a-2"]
    );
    assert_eq!(env.depth().await, (0, 0));
    assert!(env.dead_letters().await.is_empty());
}

async fn user_ids_in_order(env: &TestEnv) -> Vec<String> {
    env.db
        .query(
            &format!("SELECT user_id FROM {} ORDER BY row_no", env.table),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
