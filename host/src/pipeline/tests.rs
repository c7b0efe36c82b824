//! The pipeline's decisions without any service: an in-memory source, a scripted sink and a
//! policy that decides by the message body. What a user cares about: every message written
//! once or dead-lettered once, acknowledged only after its commit, and everything that was not
//! written back in the source.

use super::batch::{Item, Provenance, Stage, Verdict, verdict_json};
use super::decide::{Decide, Decided, PolicyHealth};
use super::{PipelineConfig, run};
use crate::ops::metrics::Counters;
use crate::sink::{Sink, WriteError, WriteReport};
use crate::source::{Message, Source};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the sink committed, shared with the source so it can check acknowledgements.
#[derive(Default)]
struct Committed {
    written: Vec<String>,
    dead: Vec<String>,
    attempts: u32,
}

#[derive(Default)]
struct Queue {
    visible: VecDeque<Message>,
    in_flight: HashMap<String, Message>,
    acknowledged: Vec<String>,
    deliveries: u64,
    /// A FIFO queue with one message group: one message at a time, the next only once the
    /// one in flight is deleted (which takes a moment).
    one_group: bool,
    /// A file rather than a queue: an empty receive means the input has ended.
    finite: bool,
}

#[derive(Clone)]
struct FakeSource {
    queue: Arc<Mutex<Queue>>,
    committed: Arc<Mutex<Committed>>,
}

impl FakeSource {
    fn with(bodies: &[&str], committed: &Arc<Mutex<Committed>>) -> FakeSource {
        let visible = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| Message::new(format!("m{i}"), String::new(), b.to_string(), 0, 0))
            .collect();
        FakeSource {
            queue: Arc::new(Mutex::new(Queue {
                visible,
                ..Queue::default()
            })),
            committed: committed.clone(),
        }
    }

    fn visible(&self) -> usize {
        self.queue.lock().unwrap().visible.len()
    }

    fn in_flight(&self) -> usize {
        self.queue.lock().unwrap().in_flight.len()
    }

    fn acknowledged(&self) -> Vec<String> {
        let mut ids = self.queue.lock().unwrap().acknowledged.clone();
        ids.sort();
        ids
    }
}

impl Source for FakeSource {
    fn name(&self) -> &str {
        "fake"
    }

    fn max_receivers(&self) -> usize {
        usize::MAX
    }

    fn finite(&self) -> bool {
        self.queue.lock().unwrap().finite
    }

    async fn receive(&self, _wait: Duration) -> anyhow::Result<Vec<Message>> {
        let got: Vec<Message> = {
            let mut q = self.queue.lock().unwrap();
            let n = match (q.one_group, q.in_flight.is_empty()) {
                (true, false) => 0,
                (true, true) => q.visible.len().min(1),
                (false, _) => q.visible.len().min(10),
            };
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let mut m = q.visible.pop_front().unwrap();
                q.deliveries += 1;
                m.receipt = format!("{}#{}", m.id, q.deliveries);
                m.receive_count += 1;
                q.in_flight.insert(m.receipt.clone(), m.clone());
                out.push(m);
            }
            out
        };
        if got.is_empty() {
            // A long poll that finds nothing.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(got)
    }

    fn acknowledge_unlocks(&self) -> bool {
        self.queue.lock().unwrap().one_group
    }

    async fn acknowledge(&self, receipts: &[&str]) {
        if self.acknowledge_unlocks() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let committed = self.committed.lock().unwrap();
        let mut q = self.queue.lock().unwrap();
        for r in receipts {
            let m = q
                .in_flight
                .remove(*r)
                .expect("acknowledged a message not in flight");
            assert!(
                committed.written.contains(&m.id) || committed.dead.contains(&m.id),
                "{} acknowledged before it was committed",
                m.id
            );
            q.acknowledged.push(m.id);
        }
    }

    async fn release(&self, receipts: &[&str], _delay: Duration) {
        let mut q = self.queue.lock().unwrap();
        for r in receipts {
            let m = q
                .in_flight
                .remove(*r)
                .expect("released a message not in flight");
            q.visible.push_back(m);
        }
    }

    fn hold_period(&self) -> Option<Duration> {
        None
    }

    async fn extend(&self, _receipts: &[&str]) {}
}

/// A sink that commits into `Committed`, after failing as its script says.
struct FakeSink {
    committed: Arc<Mutex<Committed>>,
    script: Arc<Mutex<VecDeque<WriteError>>>,
}

impl Sink for FakeSink {
    async fn write(
        &mut self,
        items: &[Item],
        _provenance: &Provenance,
    ) -> Result<WriteReport, WriteError> {
        let mut c = self.committed.lock().unwrap();
        c.attempts += 1;
        if let Some(e) = self.script.lock().unwrap().pop_front() {
            return Err(e);
        }
        let mut report = WriteReport::default();
        for item in items {
            match &item.verdict {
                Verdict::Row(_) => {
                    c.written.push(item.message.id.clone());
                    report.written += 1;
                }
                Verdict::Dead { .. } => {
                    c.dead.push(item.message.id.clone());
                    report.dead_lettered += 1;
                }
                Verdict::Drop => report.dropped += 1,
            }
        }
        Ok(report)
    }

    async fn preview(&mut self, items: &[Item]) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(items
            .iter()
            .map(|i| verdict_json(&i.message.id, &i.verdict))
            .collect())
    }
}

/// A policy deciding by body: `row` is written, `dead` rejected, `fail` fails (a trap).
struct ByBody;

impl Decide for ByBody {
    async fn decide(&self, _source: &str, batch: Vec<Message>) -> Decided {
        let mut health = PolicyHealth::default();
        let items = batch
            .into_iter()
            .map(|message| {
                health.evaluated += 1;
                let verdict = match message.body.as_str() {
                    "row" => Verdict::Row(Vec::new()),
                    "dead" => Verdict::Dead {
                        stage: Stage::Policy,
                        reason: "rejected".into(),
                    },
                    _ => {
                        health.failed += 1;
                        health.last_error = "trapped".into();
                        Verdict::Dead {
                            stage: Stage::Policy,
                            reason: "policy trapped".into(),
                        }
                    }
                };
                Item { message, verdict }
            })
            .collect();
        Decided {
            items,
            health,
            provenance: Provenance {
                name: "by-body".into(),
                version: "1".into(),
                digest: "d1".into(),
            },
        }
    }
}

fn config(dry_run: bool) -> PipelineConfig {
    PipelineConfig {
        batch_size: 25,
        batch_wait: Duration::from_millis(5),
        receivers: super::adapt::Receivers::Fixed(3),
        workers: 2,
        wait: Duration::from_secs(1),
        drain: true,
        dry_run,
        stall_after: Duration::ZERO,
    }
}

struct Run {
    source: FakeSource,
    committed: Arc<Mutex<Committed>>,
    counters: Arc<Counters>,
    result: anyhow::Result<()>,
}

async fn drain(bodies: &[&str], script: Vec<WriteError>, dry_run: bool) -> Run {
    let committed = Arc::new(Mutex::new(Committed::default()));
    drain_from(
        FakeSource::with(bodies, &committed),
        committed,
        script,
        dry_run,
    )
    .await
}

async fn drain_from(
    source: FakeSource,
    committed: Arc<Mutex<Committed>>,
    script: Vec<WriteError>,
    dry_run: bool,
) -> Run {
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let sinks = (0..2)
        .map(|_| FakeSink {
            committed: committed.clone(),
            script: script.clone(),
        })
        .collect();
    let counters = Arc::new(Counters::default());
    let result = tokio::time::timeout(
        Duration::from_secs(600),
        run(
            config(dry_run),
            source.clone(),
            sinks,
            Arc::new(ByBody),
            counters.clone(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the drain ends");
    Run {
        source,
        committed,
        counters,
        result,
    }
}

fn ids(bodies: &[&str], which: &str) -> Vec<String> {
    let mut out: Vec<String> = bodies
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == which)
        .map(|(i, _)| format!("m{i}"))
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn a_drain_settles_every_message_once_and_acknowledges_only_committed_ones() {
    let bodies: Vec<&str> = (0..250)
        .map(|i| if i % 17 == 0 { "dead" } else { "row" })
        .collect();
    let r = drain(&bodies, Vec::new(), false).await;
    r.result.unwrap();
    let c = r.committed.lock().unwrap();
    assert_eq!(
        sorted(c.written.clone()),
        ids(&bodies, "row"),
        "every row once"
    );
    assert_eq!(sorted(c.dead.clone()), ids(&bodies, "dead"));
    let all: BTreeSet<String> = (0..250).map(|i| format!("m{i}")).collect();
    assert_eq!(r.source.acknowledged(), all.into_iter().collect::<Vec<_>>());
    assert_eq!((r.source.visible(), r.source.in_flight()), (0, 0));
    assert_eq!(Counters::get(&r.counters.received), 250);
    assert_eq!(Counters::get(&r.counters.written), c.written.len() as u64);
    assert_eq!(Counters::get(&r.counters.held), 0);
}

#[tokio::test]
async fn a_fifo_drain_waits_for_deletes_that_release_a_group_and_keeps_its_order() {
    // Each message of the group appears only after the previous one is deleted: a drain that
    // ended when it held nothing and a receive came back empty would stop after the first.
    let bodies = ["row"; 12];
    let committed = Arc::new(Mutex::new(Committed::default()));
    let source = FakeSource::with(&bodies, &committed);
    source.queue.lock().unwrap().one_group = true;
    let r = drain_from(source, committed, Vec::new(), false).await;
    r.result.unwrap();
    let expected: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    assert_eq!(
        r.committed.lock().unwrap().written,
        expected,
        "in send order"
    );
    assert_eq!((r.source.visible(), r.source.in_flight()), (0, 0));
}

#[tokio::test]
async fn transient_write_errors_are_retried_until_the_batch_is_written() {
    let bodies = ["row"; 40];
    let script = vec![
        WriteError::Transient("connection reset".into()),
        WriteError::Transient("did not answer".into()),
    ];
    let r = drain(&bodies, script, false).await;
    r.result.unwrap();
    assert_eq!(
        sorted(r.committed.lock().unwrap().written.clone()),
        ids(&bodies, "row")
    );
    assert_eq!(Counters::get(&r.counters.postgres_errors), 2);
    assert_eq!(r.source.acknowledged().len(), 40);
}

#[tokio::test]
async fn a_permanent_write_error_stops_and_leaves_every_message_in_the_source() {
    let bodies = ["row"; 60];
    let script = vec![WriteError::Permanent(
        "permission denied for table t".into(),
    )];
    let r = drain(&bodies, script, false).await;
    let err = r.result.expect_err("a permanent error fails the run");
    assert!(
        err.to_string().contains("permission denied for table t"),
        "{err}"
    );
    let c = r.committed.lock().unwrap();
    // The other worker may have committed a batch before the stop; nothing else is settled,
    // and everything not committed is back.
    assert_eq!(r.source.acknowledged(), sorted(c.written.clone()));
    assert_eq!(r.source.in_flight(), 0);
    assert_eq!(r.source.visible() + c.written.len(), 60, "nothing lost");
    assert!(r.source.visible() > 0);
}

#[tokio::test]
async fn a_policy_failing_on_most_records_stops_a_drain_and_writes_nothing() {
    let bodies = ["fail"; 30];
    let r = drain(&bodies, Vec::new(), false).await;
    r.result.unwrap();
    assert!(r.counters.policy_broken.load(Ordering::Relaxed));
    let c = r.committed.lock().unwrap();
    assert!(
        c.written.is_empty() && c.dead.is_empty(),
        "no dead letters for a broken policy"
    );
    assert!(r.source.acknowledged().is_empty());
    assert_eq!((r.source.visible(), r.source.in_flight()), (30, 0));
}

#[tokio::test]
async fn a_few_failing_records_are_dead_letters_not_a_broken_policy() {
    let mut bodies = vec!["row"; 200];
    for i in [3, 77, 150] {
        bodies[i] = "fail";
    }
    let r = drain(&bodies, Vec::new(), false).await;
    r.result.unwrap();
    assert!(!r.counters.policy_broken.load(Ordering::Relaxed));
    let c = r.committed.lock().unwrap();
    assert_eq!(sorted(c.dead.clone()), ids(&bodies, "fail"));
    assert_eq!(c.written.len(), 197);
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_gives_everything_back() {
    let bodies: Vec<&str> = (0..50)
        .map(|i| if i % 5 == 0 { "dead" } else { "row" })
        .collect();
    let r = drain(&bodies, Vec::new(), true).await;
    r.result.unwrap();
    let c = r.committed.lock().unwrap();
    assert_eq!((c.attempts, c.written.len()), (0, 0));
    assert!(r.source.acknowledged().is_empty());
    assert_eq!((r.source.visible(), r.source.in_flight()), (50, 0));
    assert_eq!(Counters::get(&r.counters.written), 40, "predicted rows");
    assert_eq!(Counters::get(&r.counters.dead_lettered), 10);
}

#[tokio::test]
async fn a_stop_before_anything_is_written_hands_everything_back() {
    let committed = Arc::new(Mutex::new(Committed::default()));
    let source = FakeSource::with(&["row"; 30], &committed);
    let stop = CancellationToken::new();
    stop.cancel();
    let sinks = vec![FakeSink {
        committed: committed.clone(),
        script: Arc::default(),
    }];
    let counters = Arc::new(Counters::default());
    let mut cfg = config(false);
    cfg.drain = false;
    run(
        cfg,
        source.clone(),
        sinks,
        Arc::new(ByBody),
        counters.clone(),
        stop,
    )
    .await
    .unwrap();
    assert_eq!(source.in_flight(), 0);
    assert_eq!(
        source.visible() + committed.lock().unwrap().written.len(),
        30
    );
}

#[tokio::test]
async fn the_last_batch_of_a_finite_source_does_not_wait_for_messages_that_cannot_come() {
    // A file of 3 lines and batches of 25 that may wait an hour to fill: once the file has
    // ended, the batch goes with what there is. Before, it waited out --batch-wait-ms.
    let committed = Arc::new(Mutex::new(Committed::default()));
    let source = FakeSource::with(&["row", "row", "row"], &committed);
    source.queue.lock().unwrap().finite = true;
    let sinks = (0..2)
        .map(|_| FakeSink {
            committed: committed.clone(),
            script: Arc::default(),
        })
        .collect();
    let config = PipelineConfig {
        batch_wait: Duration::from_secs(3600),
        ..config(false)
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        run(
            config,
            source.clone(),
            sinks,
            Arc::new(ByBody),
            Arc::new(Counters::default()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the batch went without waiting for the batch wait")
    .unwrap();
    assert_eq!(sorted(committed.lock().unwrap().written.clone()), ["m0", "m1", "m2"]);
    assert_eq!(source.acknowledged(), ["m0", "m1", "m2"]);
}
