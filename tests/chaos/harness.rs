//! What every chaos scenario shares: a queue on the local SQS server, a table in the private
//! PostgreSQL, `masq` processes to start, stop and kill, and the exactly-once check.

use crate::support::{
    MASQ, TestDir, create_queue, open_body, queue_depth, send_bodies, sqs_client, write_key_file,
};
// The scenarios' everyday helpers, from tests/support; `sqs_endpoint` is the SQS server
// itself, as opposed to a fault proxy in front of it.
pub use crate::support::{endpoint as sqs_endpoint, free_port, plugin, random_u64, repo_root};
use aws_sdk_sqs::Client as SqsClient;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Short enough that a killed consumer's messages come back quickly, long enough for the
/// heartbeat (every third of it) to keep live ones hidden on a busy machine.
pub const VISIBILITY: u64 = 5;

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One scenario at a time: they share the private PostgreSQL (which some of them stop) and
/// the machine's two cores.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    LOCK.lock().await
}

/// `exclusive` for a plain (not async) test.
pub fn exclusive_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    LOCK.blocking_lock()
}

/// `MASQ_CHAOS=full` selects the long form of every scenario.
pub fn full() -> bool {
    std::env::var("MASQ_CHAOS").is_ok_and(|v| v == "full")
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
    /// Messages sent, and how many of them are malformed on purpose: counted as the test
    /// generated them, not as any masq command reported.
    pub sent: u64,
    pub malformed: u64,
    /// Every masq log of the scenario; kept when the test fails, for reading.
    dir: TestDir,
}

impl ChaosEnv {
    /// A fresh queue holding `count` synthetic login events (about 1% malformed) and a fresh
    /// table in the private PostgreSQL.
    pub async fn new(name: &str, count: u64) -> ChaosEnv {
        let suffix = format!("{:08x}", random_u64() as u32);
        let db_url = pg_start();
        let sqs = sqs_client().await;
        let queue_url = create_queue(&sqs, &format!("chaos-{name}-{suffix}")).await;
        let dir = TestDir::new(&format!("chaos-{name}"));
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).unwrap();
        let key_file = dir.join("chaos.key");
        write_key_file(&key_file, &format!("kc{suffix}"), &key);
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

    /// This scenario's directory (masq logs, key file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generates `count` synthetic messages here, with masq's own generator (a random seed,
    /// about 1% malformed bodies from `masq::source::synthetic::MALFORMED`), and sends them straight to
    /// the SQS server, so the numbers sent and malformed are known by construction. Checks
    /// that the queue then holds exactly what was sent (call it before any masq runs).
    pub async fn seed(&mut self, count: u64) {
        self.send_generated(count).await;
        assert_eq!(
            self.depth().await,
            (self.sent, 0),
            "[{}] the queue does not hold exactly the {} messages sent",
            self.name,
            self.sent
        );
    }

    /// As `seed`, into a queue that consumers may already be reading: no depth check.
    pub async fn send_generated(&mut self, count: u64) {
        use masq::source::synthetic::{MALFORMED, SplitMix, login};
        let seed = random_u64();
        let mut rng = SplitMix(seed);
        let mut malformed = 0;
        let bodies: Vec<String> = (0..count as usize)
            .map(|i| {
                if rng.next() % 100 == 0 {
                    malformed += 1;
                    MALFORMED[i % MALFORMED.len()].to_string()
                } else {
                    login(&mut rng)
                }
            })
            .collect();
        assert_eq!(
            bodies
                .iter()
                .filter(|b| MALFORMED.contains(&b.as_str()))
                .count() as u64,
            malformed,
            "a generated login looks like a malformed body"
        );
        send_bodies(&self.sqs, &self.queue_url, &bodies, 16).await;
        self.sent += count;
        self.malformed += malformed;
        eprintln!(
            "[{}] sent {count} messages ({malformed} malformed), seed {seed}",
            self.name
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
        self.spawn_run_env(endpoint, label, extra, &[])
    }

    /// As `spawn_run`, with extra environment variables (e.g. `MASQ_FAILPOINT`).
    pub fn spawn_run_env(
        &self,
        endpoint: &str,
        label: &str,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Child {
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
            .envs(vars.iter().copied())
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
        let sql = format!("SELECT count(*) FROM masq.ledger_entries('{}')", self.table);
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
        queue_depth(&self.sqs, &self.queue_url).await
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
        let ledger = one(format!("SELECT count(*) FROM masq.ledger_entries('{t}')")).await;
        let outcome = |o: &str| {
            format!("SELECT count(*) FROM masq.ledger_entries('{t}') WHERE outcome = '{o}'")
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
                "SELECT message_id, body, body_sealed, key_id, body_shape::text \
                 FROM masq.dead_letters WHERE target_table = $1",
                &[t],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                open_body(
                    &self.key_file,
                    r.get(0),
                    r.get(1),
                    r.get::<_, Option<Vec<u8>>>(2).zip(r.get(3)),
                    r.get(4),
                )
            })
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

        // Passed: nothing here is worth keeping, and a full run leaves 100,000 ledger rows
        // (in partitions of this table's own, dropped with them).
        client
            .batch_execute(&format!(
                "DROP TABLE {t}; \
                 DO $$ DECLARE t integer := (SELECT id FROM masq.targets WHERE name = '{t}'); d date; \
                 BEGIN \
                   FOR d IN SELECT day FROM masq.ledger_partitions WHERE target = t LOOP \
                     EXECUTE format('DROP TABLE IF EXISTS masq.%I', \
                       format('ledger_%s_%s', t, to_char(d, 'YYYYMMDD'))); \
                   END LOOP; \
                   DELETE FROM masq.ledger_partitions WHERE target = t; \
                 END $$; \
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

/// Messages a `masq run` summary says it committed: written, dead-lettered or dropped.
pub fn summary_committed(summary: &str) -> u64 {
    summary_count(summary, "written")
        + summary_count(summary, "dead-lettered")
        + summary_count(summary, "dropped")
}
