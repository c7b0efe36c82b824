//! Errors a user can make at start: each says what failed and what to do, and leaks no secret.

use crate::support::*;

async fn stderr_of(env: &TestEnv, args: &[&str]) -> String {
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), env.masq(args))
        .await
        .unwrap_or_else(|_| panic!("masq {args:?} should fail at start, but kept running"));
    assert!(!out.status.success(), "masq {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn start_up_errors_say_what_to_do() {
    let env = TestEnv::new("clierrors").await;
    let plugin = plugin("sha256-masker");
    let plugin = plugin.to_str().unwrap();
    let key = env.key_file.display().to_string();

    let err = stderr_of(&env, &["run", "--plugin", plugin]).await;
    assert!(
        err.contains("--key-file") && err.contains("masq keygen"),
        "{err}"
    );

    let err = stderr_of(
        &env,
        &[
            "run",
            "--plugin",
            plugin,
            "--key-file",
            &key,
            "--database-url",
            "postgres://admin:s3cr3t-pw@127.0.0.1:1/app",
        ],
    )
    .await;
    assert!(
        err.contains("cannot reach PostgreSQL at admin@127.0.0.1:1/app")
            && err.contains("just services"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-pw"), "password leaked: {err}");

    let err = stderr_of(
        &env,
        &[
            "run",
            "--plugin",
            plugin,
            "--key-file",
            &key,
            "--table",
            "no_such_table",
        ],
    )
    .await;
    assert!(
        err.contains("table no_such_table does not exist") && err.contains("masq db init"),
        "{err}"
    );

    let err = stderr_of(
        &env,
        &["run", "--plugin", "/nonexistent/p.wasm", "--key-file", &key],
    )
    .await;
    assert!(
        err.contains("cannot read policy /nonexistent/p.wasm"),
        "{err}"
    );

    let err = stderr_of(&env, &["run", "--plugin", &key, "--key-file", &key]).await;
    assert!(err.contains("is not a WebAssembly component"), "{err}");
    assert!(!err.contains(&base64_of(&env.key)), "key leaked: {err}");

    let err = stderr_of(
        &env,
        &[
            "run",
            "--plugin",
            plugin,
            "--key-file",
            &key,
            "--policy-config",
            "colour=red",
        ],
    )
    .await;
    assert!(err.contains("unknown setting 'colour'"), "{err}");

    let err = stderr_of(
        &env,
        &[
            "run",
            "--plugin",
            plugin,
            "--key-file",
            &key,
            "--policy-config",
            "mask=ip:masked_ip,device_id:masked_device_id,user_id:hashed_user",
        ],
    )
    .await;
    assert!(
        err.contains("writes field 'hashed_user'") && err.contains("no such column"),
        "{err}"
    );

    let err = stderr_of(
        &env,
        &[
            "seed",
            "--count",
            "1",
            "--queue-url",
            "http://127.0.0.1:4566/000000000000/no-such-queue",
        ],
    )
    .await;
    assert!(
        err.contains("queue http://127.0.0.1:4566/000000000000/no-such-queue does not exist at")
            && err.contains("--queue-url"),
        "{err}"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
