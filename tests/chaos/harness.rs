//! What every chaos scenario shares: a queue on the local SQS server, a table in the private
//! PostgreSQL, `masq` processes to start, stop and kill, and the exactly-once check.

use aws_sdk_sqs::Client as SqsClient;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const MASQ: &str = env!("CARGO_BIN_EXE_masq");
/// Short enough that a killed consumer's messages come back quickly, long enough for the
/// heartbeat (every third of it) to keep live ones hidden on a busy machine.
pub const VISIBILITY: u64 = 5;

/// One scenario at a time: they share the private PostgreSQL (which some of them stop) and
/// the machine's two cores.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `MASQ_CHAOS=full` selects the long form of every scenario.
pub fn full() -> bool {
    std::env::var("MASQ_CHAOS").is_ok_and(|v| v == "full")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `just plugins`",
        path.display()
    );
    path
}

pub fn sqs_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random bytes");
    u64::from_le_bytes(b)
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// --- the private PostgreSQL -------------------------------------------------------------------

fn chaos_pg(command: &str) -> String {
    let out = std::process::Command::new(repo_root().join("scripts/chaos-pg.sh"))
        .arg(command)
        .output()
        .expect("scripts/chaos-pg.sh runs");
    assert!(
        out.status.success(),
        "scripts/chaos-pg.sh {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts the private server if it is not running; returns its URL.
pub fn pg_start() -> String {
    chaos_pg("start")
}

/// `pg_ctl stop -m immediate`: every backend dies mid-statement, no checkpoint.
pub fn pg_crash() {
    chaos_pg("crash");
}

/// One query on a fresh connection: the server may have been restarted since the last one.
pub async fn query_i64(url: &str, sql: &str) -> Result<i64, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    let value = client.query_one(sql, &[]).await?.get(0);
    drop(client);
    let _ = task.await;
    Ok(value)
}

// --- a scenario's queue, table and key --------------------------------------------------------

pub struct ChaosEnv {
    pub name: String,
    pub sqs: SqsClient,
    pub db_url: String,
    pub queue_url: String,
    pub table: String,
    pub key_file: PathBuf,
    /// Messages sent, and how many of them are malformed on purpose.
    pub sent: u64,
    pub malformed: u64,
    dir: PathBuf,
}

impl ChaosEnv {
    /// A fresh queue holding `count` synthetic login events (about 1% malformed) and a fresh
    /// table in the private PostgreSQL.
    pub async fn new(name: &str, count: u64) -> ChaosEnv {
        let suffix = format!("{:08x}", random_u64() as u32);
        let db_url = pg_start();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(sqs_endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "chaos",
            ))
            .load()
            .await;
        let sqs = SqsClient::new(&config);
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("chaos-{name}-{suffix}"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create a queue at {}: {e:?}; run `just services`",
                    sqs_endpoint()
                )
            })
            .queue_url
            .expect("queue url");
        let dir = std::env::temp_dir().join(format!("masq-chaos-{name}-{suffix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).unwrap();
        let key_file = dir.join("chaos.key");
        std::fs::write(
            &key_file,
            format!(
                r#"{{"active": "kc{suffix}", "keys": {{"kc{suffix}": "{}"}}}}"#,
                base64::engine::general_purpose::STANDARD.encode(key)
            ),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut env = ChaosEnv {
            name: name.to_string(),
            sqs,
            db_url,
            queue_url,
            table: format!("chaos_{name}_{suffix}").replace('-', "_"),
            key_file,
            sent: 0,
            malformed: 0,
            dir,
        };
        let out = env
            .command(&sqs_endpoint(), &["db", "init"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "masq db init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if count > 0 {
            env.seed(count).await;
        }
        env
    }

    /// Sends `count` synthetic messages straight to the SQS server.
    pub async fn seed(&mut self, count: u64) {
        let seed = random_u64() % 1_000_000;
        let out = self
            .command(
                &sqs_endpoint(),
                &[
                    "seed",
                    "--count",
                    &count.to_string(),
                    "--seed",
                    &seed.to_string(),
                ],
            )
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "masq seed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // "sent N messages (M malformed on purpose) to ..."
        let text = String::from_utf8_lossy(&out.stdout);
        let number_after = |word: &str| -> u64 {
            let at = text
                .find(word)
                .unwrap_or_else(|| panic!("unexpected seed output: {text}"))
                + word.len();
            text[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        self.sent += number_after("sent ");
        self.malformed += number_after("messages (");
        eprintln!(
            "[{}] seeded {} messages ({} malformed), seed {seed}",
            self.name, self.sent, self.malformed
        );
    }

    /// A `masq` command talking to SQS at `endpoint` (the server or the fault proxy) with this
    /// scenario's queue, table, database and key in its environment.
    pub fn command(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(MASQ);
        cmd.args(args)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("DATABASE_URL", &self.db_url)
            .env("MASQ_QUEUE_URL", &self.queue_url)
            .env("MASQ_TABLE", &self.table)
            .env("MASQ_KEY_FILE", &self.key_file)
            .env("MASQ_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env_remove("MASQ_FAILPOINT")
            .env_remove("MASQ_METRICS_ADDR")
            .kill_on_drop(true);
        cmd
    }

    /// `masq run` with the default policy and `extra` flags, its output captured to files in
    /// this scenario's directory (a killed process's log stays there to read).
    pub fn spawn_run(&self, endpoint: &str, label: &str, extra: &[&str]) -> Child {
        let plugin = plugin("sha256-masker");
        let visibility = VISIBILITY.to_string();
        let mut args = vec![
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--visibility-timeout",
            &visibility,
        ];
        args.extend(extra);
        let stdout = std::fs::File::create(self.dir.join(format!("{label}.out"))).unwrap();
        let stderr = std::fs::File::create(self.dir.join(format!("{label}.err"))).unwrap();
        self.command(endpoint, &args)
            .stdout(stdout)
            .stderr(stderr)
            .stdin(Stdio::null())
            .spawn()
            .expect("masq starts")
    }

    pub fn log(&self, label: &str) -> String {
        let read = |ext: &str| {
            std::fs::read_to_string(self.dir.join(format!("{label}.{ext}"))).unwrap_or_default()
        };
        format!("{}{}", read("out"), read("err"))
    }

    pub fn summary(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{label}.out")))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Messages in the ledger for this table; None while the database is down.
    pub async fn ledger(&self) -> Option<i64> {
        let sql = format!(
            "SELECT count(*) FROM masq.ledger WHERE target_table = '{}'",
            self.table
        );
        query_i64(&self.db_url, &sql).await.ok()
    }

    /// Waits until the ledger holds at least `n` messages; panics after `limit`.
    pub async fn wait_for_ledger(&self, n: i64, limit: Duration) {
        let start = Instant::now();
        loop {
            if self.ledger().await.is_some_and(|have| have >= n) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "[{}] the ledger did not reach {n} within {limit:?} (has {:?})",
                self.name,
                self.ledger().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (visible, in flight), as the SQS server reports them.
    pub async fn depth(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
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

    /// Sends SIGTERM and waits for a clean exit (masq promises one within 25 s).
    pub async fn stop(&self, child: &mut Child, label: &str) {
        let pid = child.id().expect("still running").to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "[{}] masq ({label}) did not stop within 30 s of SIGTERM",
                    self.name
                )
            })
            .unwrap();
        assert!(
            status.success(),
            "[{}] masq ({label}) exited with {status}:\n{}",
            self.name,
            self.log(label)
        );
    }

    /// Finishes the job after the chaos: plain `masq run --drain` against the SQS server,
    /// again after each visibility timeout, until the ledger holds every message and the
    /// queue is empty. (Messages a killed process held come back only when their timeout
    /// passes, and the server notices that only on a receive.)
    pub async fn settle(&self) -> Vec<String> {
        let mut summaries = Vec::new();
        for round in 0..10 {
            let label = format!("settle-{round}");
            let mut child = self.spawn_run(&sqs_endpoint(), &label, &["--drain"]);
            let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "[{}] settling drain did not finish in 120 s:\n{}",
                        self.name,
                        self.log(&label)
                    )
                })
                .unwrap();
            assert!(
                status.success(),
                "[{}] settling drain failed:\n{}",
                self.name,
                self.log(&label)
            );
            summaries.push(self.summary(&label));
            if self.ledger().await == Some(self.sent as i64) && self.depth().await == (0, 0) {
                return summaries;
            }
            tokio::time::sleep(Duration::from_secs(VISIBILITY + 1)).await;
        }
        panic!(
            "[{}] after 10 drains the ledger has {:?} of {} messages and the queue {:?}; drains: {summaries:#?}",
            self.name,
            self.ledger().await,
            self.sent,
            self.depth().await
        );
    }

    /// The promise, checked from the database and the queue. When it holds, the table, its
    /// ledger and dead-letter rows and the queue are removed.
    pub async fn assert_exactly_once(&self) {
        let (client, conn) = tokio_postgres::connect(&self.db_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let one = |sql: String| {
            let client = &client;
            async move {
                client
                    .query_one(&sql, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .get::<_, i64>(0)
            }
        };
        let t = &self.table;
        let good = (self.sent - self.malformed) as i64;
        let rows = one(format!("SELECT count(*) FROM {t}")).await;
        let distinct = one(format!("SELECT count(DISTINCT user_id) FROM {t}")).await;
        let ledger = one(format!(
            "SELECT count(*) FROM masq.ledger WHERE target_table = '{t}'"
        ))
        .await;
        let outcome = |o: &str| {
            format!(
                "SELECT count(*) FROM masq.ledger WHERE target_table = '{t}' AND outcome = '{o}'"
            )
        };
        let written = one(outcome("written")).await;
        let dead = one(outcome("dead_letter")).await;
        let dropped = one(outcome("dropped")).await;
        let letters = one(format!(
            "SELECT count(*) FROM masq.dead_letters WHERE target_table = '{t}'"
        ))
        .await;
        let letter_ids = one(format!(
            "SELECT count(DISTINCT message_id) FROM masq.dead_letters WHERE target_table = '{t}'"
        ))
        .await;
        let bodies: Vec<String> = client
            .query(
                "SELECT body FROM masq.dead_letters WHERE target_table = $1",
                &[t],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let depth = self.depth().await;
        eprintln!(
            "[{}] sent {}, good {good}: rows {rows} ({distinct} distinct), ledger {ledger} (written {written}, \
             dead {dead}, dropped {dropped}), dead letters {letters}, queue {depth:?}",
            self.name, self.sent
        );
        // user_id is random per message (>100 bits), so equal ids are the same message twice;
        // masked_ip is not unique enough at 100,000 messages (2^32 addresses).
        assert_eq!(
            rows, good,
            "rows != good messages: a message was lost or written twice"
        );
        assert_eq!(distinct, rows, "a message was written twice");
        assert_eq!(
            ledger, self.sent as i64,
            "the ledger is missing messages: lost"
        );
        assert_eq!(
            written + dead + dropped,
            ledger,
            "a ledger row with an unknown outcome"
        );
        assert_eq!(
            (written, dead, dropped),
            (good, self.malformed as i64, 0),
            "ledger outcomes"
        );
        assert_eq!(
            letters, self.malformed as i64,
            "dead letters != malformed messages"
        );
        assert_eq!(letter_ids, letters, "a message was dead-lettered twice");
        for body in &bodies {
            assert!(
                masq::source::synthetic::MALFORMED.contains(&body.as_str()),
                "a good message was dead-lettered: {body}"
            );
        }
        assert_eq!(depth, (0, 0), "the queue is not empty");

        // Passed: nothing here is worth keeping, and a full run leaves 100,000 ledger rows.
        client
            .batch_execute(&format!(
                "DROP TABLE {t}; DELETE FROM masq.ledger WHERE target_table = '{t}'; \
                 DELETE FROM masq.dead_letters WHERE target_table = '{t}'; \
                 DELETE FROM masq.policy_events WHERE target_table = '{t}'"
            ))
            .await
            .unwrap();
        let _ = self
            .sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await;
    }
}

impl Drop for ChaosEnv {
    fn drop(&mut self) {
        // Kept when the test fails, with every masq log in it, for reading.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `k` distinct, sorted ledger counts spread over (5%, 90%) of `n`, at which to strike.
pub fn strike_points(n: u64, k: usize, rng: &mut masq::source::synthetic::SplitMix) -> Vec<i64> {
    let (lo, hi) = (n / 20, n * 9 / 10);
    let mut points: Vec<i64> = (0..k)
        .map(|_| (lo + rng.next() % (hi - lo).max(1)) as i64)
        .collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// The numbers of a `masq run` summary line, by name ("received", "duplicates skipped", ...).
pub fn summary_count(summary: &str, name: &str) -> u64 {
    summary
        .find(&format!("{name} "))
        .map(|at| {
            summary[at + name.len() + 1..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .unwrap_or_else(|| panic!("no '{name}' in summary: {summary}"))
}
