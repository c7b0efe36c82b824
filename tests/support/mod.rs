//! Shared set-up for the integration tests: every test gets its own SQS queue and its own
//! table (random suffix) on the real local services, and drives the real `masq` binary.
//! The chaos binary (tests/chaos/) includes this module too, for the pieces both need: paths,
//! endpoints, the SQS client, key files, temporary directories.

#![allow(dead_code)]

pub mod aws;
pub mod faultproxy;
pub mod net;

use aws_sdk_sqs::Client as SqsClient;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::Output;
use tokio::process::Command;
use tokio_postgres::Client as PgClient;

pub const MASQ: &str = env!("CARGO_BIN_EXE_masq");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A policy built by `just plugins`.
pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `just plugins` (or `just test`, which does)",
        path.display()
    );
    path
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

pub fn database_url() -> String {
    std::env::var("MASQ_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/masq_test".into())
}

/// The test database through PgBouncer in transaction pooling mode (`scripts/services.sh`
/// starts it on port 6433), or `MASQ_TEST_PGBOUNCER_URL`.
pub fn pgbouncer_url() -> String {
    std::env::var("MASQ_TEST_PGBOUNCER_URL")
        .unwrap_or_else(|_| database_url().replacen(":5432/", ":6433/", 1))
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("random bytes");
    hex::encode(b)
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random bytes");
    u64::from_le_bytes(b)
}

/// A client for the local SQS server (test credentials).
pub async fn sqs_client() -> SqsClient {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    SqsClient::new(&config)
}

/// Creates the queue `name` on the local SQS server; returns its URL.
pub async fn create_queue(sqs: &SqsClient, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create a queue at {}: {e:?}; run `just services`",
                endpoint()
            )
        })
        .queue_url
        .expect("queue url")
}

/// Sends `bodies` in batches of ten, `concurrency` batches in flight at once (1 keeps the
/// order of `bodies`); panics if SQS refuses any message.
pub async fn send_bodies(sqs: &SqsClient, queue_url: &str, bodies: &[String], concurrency: usize) {
    use futures_util::stream::{self, StreamExt};
    stream::iter(bodies.chunks(10))
        .for_each_concurrent(concurrency.max(1), |chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send");
            assert!(
                out.failed().is_empty(),
                "SQS refused messages: {:?}",
                out.failed()
            );
        })
        .await;
}

/// (visible, in flight) messages in the queue, as the SQS server reports them.
pub async fn queue_depth(sqs: &SqsClient, queue_url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let get = |a: A| out.attributes().unwrap().get(&a).unwrap().parse().unwrap();
    (
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Writes a key file holding one 32-byte key, `key_id`, active; owner-only, as masq demands.
/// A dead letter's body as masq stored it: in clear, sealed (opened here with `key_file`, as
/// `masq dead-letters show` does), or only its shape (its JSON text).
pub fn open_body(
    key_file: &Path,
    message_id: &str,
    clear: Option<String>,
    sealed: Option<(Vec<u8>, String)>,
    shape: Option<String>,
) -> String {
    if let Some((bytes, key_id)) = sealed {
        let ring = masq::keys::KeyRing::load(key_file).expect("the test's key file loads");
        let letter = masq::keys::SealedLetter { key_id, bytes };
        let plain = ring
            .open_letter(&letter, message_id)
            .expect("a sealed dead letter opens with the key that sealed it");
        return String::from_utf8(plain).expect("a sealed body is text");
    }
    clear.or(shape).expect("a dead letter has a body, sealed or in clear, or its shape")
}

pub fn write_key_file(path: &Path, key_id: &str, key: &[u8]) {
    std::fs::write(
        path,
        format!(
            r#"{{"active": "{key_id}", "keys": {{"{key_id}": "{}"}}}}"#,
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A temporary directory (tempfile) that is removed when it goes out of scope, unless the
/// thread is panicking: a failed test leaves its files (logs, keys, policies) to look at, and
/// says where.
pub struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("masq-test-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        TestDir(Some(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take()
            && std::thread::panicking()
        {
            let kept = dir.keep();
            eprintln!("test failed: its files are kept in {}", kept.display());
        }
        // Otherwise `dir` is dropped here, which removes the directory.
    }
}

/// A test's private queue, table and key.
pub struct TestEnv {
    pub sqs: SqsClient,
    pub db: PgClient,
    pub queue_url: String,
    pub table: String,
    pub key_file: PathBuf,
    pub key: Vec<u8>,
    pub key_id: String,
    /// The database this test's masq commands write to (the shared test database, unless
    /// the test made its own).
    pub database_url: String,
    dir: TestDir,
}

impl TestEnv {
    pub async fn new(name: &str) -> TestEnv {
        TestEnv::new_in(name, &database_url()).await
    }

    /// As `new`, writing to the database at `url` (a test's own, to dump it whole).
    pub async fn new_in(name: &str, url: &str) -> TestEnv {
        let suffix = random_hex(4);
        let sqs = sqs_client().await;
        let queue_url = create_queue(&sqs, &format!("{name}-{suffix}")).await;

        let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach {url}: {e}; run `just services`"));
        tokio::spawn(conn);

        let dir = TestDir::new(name);
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).unwrap();
        let key_id = format!("kt{suffix}");
        let key_file = dir.join("test.key");
        write_key_file(&key_file, &key_id, &key);

        let env = TestEnv {
            sqs,
            db,
            queue_url,
            table: format!("logins_{name}_{suffix}").replace('-', "_"),
            key_file,
            key,
            key_id,
            database_url: url.to_string(),
            dir,
        };
        let out = env.masq(&["db", "init"]).await;
        assert!(
            out.status.success(),
            "masq db init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    /// A `masq` command with this test's queue, table and database in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(MASQ);
        cmd.args(args)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("DATABASE_URL", &self.database_url)
            .env("MASQ_QUEUE_URL", &self.queue_url)
            .env("MASQ_TABLE", &self.table)
            .env("MASQ_LOG_FORMAT", "text")
            .env_remove("MASQ_KEY_FILE")
            .env_remove("MASQ_FAILPOINT")
            .kill_on_drop(true);
        cmd
    }

    pub async fn masq(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("masq runs")
    }

    /// `masq load` of `file` with this test's key; returns (success, stdout, stderr).
    pub async fn load(&self, file: &str, extra: &[&str]) -> (bool, String, String) {
        let plugin = plugin("sha256-masker");
        let key = self.key_file.display().to_string();
        let mut args = vec![
            "load",
            "--plugin",
            plugin.to_str().unwrap(),
            "--key-file",
            &key,
            "--input",
            file,
        ];
        args.extend(extra);
        let out = self.masq(&args).await;
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The command `drain` runs, for a test that sets more of its environment first.
    pub fn drain_command(&self, extra: &[&str]) -> Command {
        let plugin = plugin("sha256-masker");
        let key = self.key_file.display().to_string();
        let mut args = vec!["run", "--drain", "--plugin", plugin.to_str().unwrap()];
        if !extra.contains(&"--unkeyed") {
            args.extend(["--key-file", key.as_str()]);
        }
        args.extend(extra);
        self.command(&args)
    }

    /// `masq run --drain` with the default policy and this test's key, plus `extra` flags.
    /// Panics with masq's output if it fails; returns its stdout (the summary).
    pub async fn drain(&self, extra: &[&str]) -> String {
        let out = self.drain_command(extra).output().await.expect("masq runs");
        assert!(
            out.status.success(),
            "masq run failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A JSONL file of `bodies` in this test's directory; returns its path.
    pub fn jsonl(&self, name: &str, bodies: &[String]) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, bodies.join("\n") + "\n").unwrap();
        path.display().to_string()
    }

    /// Sends `bodies` in order, ten per call.
    pub async fn send(&self, bodies: &[String]) {
        send_bodies(&self.sqs, &self.queue_url, bodies, 1).await;
    }

    /// (visible, in flight) messages in the queue.
    pub async fn depth(&self) -> (u64, u64) {
        queue_depth(&self.sqs, &self.queue_url).await
    }

    /// Every row of the table as text columns, sorted.
    pub async fn rows(&self) -> Vec<LoginRow> {
        let mut rows: Vec<LoginRow> = self
            .db
            .query(
                &format!(
                    "SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, \
                     create_date::text FROM {}",
                    self.table
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| LoginRow {
                user_id: r.get(0),
                device_type: r.get(1),
                masked_ip: r.get(2),
                masked_device_id: r.get(3),
                locale: r.get(4),
                app_version: r.get(5),
                create_date: r.get(6),
            })
            .collect();
        rows.sort();
        rows
    }

    pub async fn count(&self, sql_from_where: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM {}",
            sql_from_where.replace("$table", &self.table)
        );
        self.db.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// This table's dead letters: (body, reason, stage). A sealed body is opened with this
    /// test's key file; one stored without a key file gives its shape's JSON text.
    pub async fn dead_letters(&self) -> Vec<(String, String, String)> {
        let rows = self
            .db
            .query(
                "SELECT message_id, body, body_sealed, key_id, body_shape::text, reason, stage \
                 FROM masq.dead_letters WHERE target_table = $1 ORDER BY id",
                &[&self.table],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let body = open_body(
                    &self.key_file,
                    r.get(0),
                    r.get(1),
                    r.get::<_, Option<Vec<u8>>>(2).zip(r.get(3)),
                    r.get(4),
                );
                (body, r.get(5), r.get(6))
            })
            .collect()
    }

    pub async fn ledger_count(&self) -> i64 {
        self.ledger_count_of(&self.table).await
    }

    pub async fn ledger_count_of(&self, table: &str) -> i64 {
        self.db
            .query_one("SELECT count(*) FROM masq.ledger_entries($1)", &[&table])
            .await
            .unwrap()
            .get(0)
    }

    /// The token masq must store for `value` under this test's key, computed independently.
    pub fn token(&self, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).unwrap();
        mac.update(value.as_bytes());
        format!(
            "{}:{}",
            self.key_id,
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LoginRow {
    pub user_id: Option<String>,
    pub device_type: Option<String>,
    pub masked_ip: Option<String>,
    pub masked_device_id: Option<String>,
    pub locale: Option<String>,
    pub app_version: Option<i32>,
    pub create_date: Option<String>,
}

/// A well-formed login body.
pub fn login(
    user_id: &str,
    ip: &str,
    device_id: &str,
    app_version: &str,
    locale: Option<&str>,
) -> String {
    serde_json::json!({
        "user_id": user_id, "app_version": app_version, "device_type": "android",
        "ip": ip, "locale": locale, "device_id": device_id
    })
    .to_string()
}

/// The documented app_version encoding, written again here as the tests' own oracle.
pub fn expected_version(v: &str) -> i32 {
    let parts: Vec<i32> = v.split('.').map(|p| p.parse().unwrap()).collect();
    let get = |i: usize| parts.get(i).copied().unwrap_or(0);
    get(0) * 1_000_000 + get(1) * 1_000 + get(2)
}

/// Today's UTC date, as PostgreSQL prints it.
pub fn utc_today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

impl TestEnv {
    /// A fresh queue and table that use `other`'s key (same id and secret), so two policies
    /// run into separate tables can be compared token for token.
    pub async fn new_sharing_key(name: &str, other: &TestEnv) -> TestEnv {
        let mut env = TestEnv::new(name).await;
        std::fs::copy(&other.key_file, &env.key_file).expect("copy the key file");
        env.key = other.key.clone();
        env.key_id = other.key_id.clone();
        env
    }

    /// As `drain`, with the policy `target/plugins/<plugin_name>.wasm`.
    pub async fn drain_with(&self, plugin_name: &str, extra: &[&str]) -> String {
        let plugin = plugin(plugin_name);
        let key = self.key_file.display().to_string();
        let mut args = vec!["run", "--drain", "--plugin", plugin.to_str().unwrap()];
        if !extra.contains(&"--unkeyed") {
            args.extend(["--key-file", key.as_str()]);
        }
        args.extend(extra);
        let out = self.masq(&args).await;
        assert!(
            out.status.success(),
            "masq run with {plugin_name} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// (policy name, policy version, messages) of this table's ledger, one entry per pair.
    pub async fn ledger_policies(&self) -> Vec<(String, String, i64)> {
        self.db
            .query(
                "SELECT policy_name, policy_version, count(*) FROM masq.ledger_entries($1) \
                 GROUP BY 1, 2 ORDER BY 1, 2",
                &[&self.table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

/// A fresh temporary directory, removed when dropped unless the test failed (see `TestDir`).
pub fn tempdir(name: &str) -> TestDir {
    TestDir::new(name)
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// As `http_get`, or None while nothing answers on the port (masq still starting).
pub async fn try_http_get(port: u16, path: &str) -> Option<String> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    Some(http_get(port, path).await)
}

/// The body of a plain HTTP GET to 127.0.0.1:port.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics endpoint");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
