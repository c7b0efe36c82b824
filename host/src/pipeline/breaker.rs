//! Tells a broken policy from bad data. Records a policy rejects are data problems and go to
//! the dead letters; records on which the policy *fails* (traps, deadline, memory, bad
//! output) are too, unless the policy fails on most records: then the policy is broken, and
//! dead-lettering would empty the queue into the dead-letter table. masq instead leaves the
//! messages in the queue and backs off until the policy is fixed or swapped.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Batches the judgement looks back over.
const WINDOW_BATCHES: usize = 10;
/// Failures needed before a policy can be called broken, so a single poisoned record in a
/// quiet queue is a dead letter, not an outage.
const MIN_FAILURES: u64 = 10;

#[derive(Default)]
struct State {
    digest: String,
    /// (failed, evaluated) per recent batch.
    window: VecDeque<(u64, u64)>,
    /// Consecutive broken verdicts, for the backoff.
    strikes: u32,
}

#[derive(Default)]
pub struct Breaker {
    state: Mutex<State>,
}

/// The breaker's verdict on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the batch; failed records become dead letters.
    Healthy,
    /// Do not write; give the messages back and wait this long.
    Broken {
        failed: u64,
        evaluated: u64,
        back_off: Duration,
    },
}

impl Breaker {
    /// Judges a batch on which the policy (with `digest`) failed on `failed` of `evaluated`
    /// records. A new policy version starts with a clean slate.
    pub fn judge(&self, digest: &str, failed: u64, evaluated: u64) -> Verdict {
        let mut s = self.state.lock().expect("breaker lock");
        if s.digest != digest {
            *s = State {
                digest: digest.to_string(),
                ..State::default()
            };
        }
        if evaluated == 0 {
            return Verdict::Healthy;
        }
        s.window.push_back((failed, evaluated));
        if s.window.len() > WINDOW_BATCHES {
            s.window.pop_front();
        }
        let (f, e) = s
            .window
            .iter()
            .fold((0, 0), |(f, e), (bf, be)| (f + bf, e + be));
        if f >= MIN_FAILURES && f * 2 > e && failed > 0 {
            s.strikes += 1;
            let back_off = Duration::from_secs(5u64.saturating_mul(1 << s.strikes.min(6)).min(300));
            // Judged broken: these failures must not count again when the policy is retried.
            s.window.pop_back();
            Verdict::Broken {
                failed: f,
                evaluated: e,
                back_off,
            }
        } else {
            if failed == 0 {
                s.strikes = 0;
            }
            Verdict::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_poisoned_records_are_data_not_a_broken_policy() {
        let b = Breaker::default();
        for _ in 0..50 {
            assert_eq!(b.judge("d1", 1, 100), Verdict::Healthy);
        }
        // A quiet queue with single poisoned messages: still data.
        let b = Breaker::default();
        for _ in 0..9 {
            assert_eq!(b.judge("d1", 1, 1), Verdict::Healthy);
        }
    }

    #[test]
    fn failing_on_most_records_is_a_broken_policy_with_growing_back_off() {
        let b = Breaker::default();
        let Verdict::Broken {
            failed,
            evaluated,
            back_off,
        } = b.judge("d1", 40, 50)
        else {
            panic!()
        };
        assert_eq!((failed, evaluated), (40, 50));
        assert_eq!(back_off, Duration::from_secs(10));
        let Verdict::Broken { back_off, .. } = b.judge("d1", 50, 50) else {
            panic!()
        };
        assert_eq!(back_off, Duration::from_secs(20));
        // A fixed version starts clean.
        assert_eq!(b.judge("d2", 0, 50), Verdict::Healthy);
    }
}
