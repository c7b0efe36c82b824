//! How many receives to keep in flight. A receive returns at most ten messages and takes a
//! round trip, so one receiver moves at most 10 / RTT messages a second: about 500/s at the
//! 20 ms a real SQS endpoint answers in, over 10,000/s on loopback. The right number therefore
//! depends on where masq runs, and on the load; masq finds it by itself, as AWS Lambda's SQS
//! poller does, from what each period's receives show:
//!
//! - receives come back **full** and the workers keep up: more is waiting than the receivers
//!   bring in, so add receivers (twice as many; far from SQS eight times at first, then four);
//! - receives come back **empty** or **thin**: the queue is empty (down to one long poll at
//!   once) or nearly (a quarter fewer), and long polls on it cost requests for nothing;
//! - receivers spend most of their time **waiting for the workers** to take what they brought:
//!   the workers are the bottleneck, more receives would only hold more messages, so remove a
//!   few (an eighth), but not eagerly: a receiver that waits costs no request.
//!
//! And growth must pay: when more receivers bring no more messages a second (SQS itself, the
//! network or the machine is the limit), `Controller` goes back to the number before and does
//! not grow again for a while, so masq does not hold dozens of receives (and their messages)
//! for nothing.
//!
//! Pure logic here; `receivers.rs` runs it.

use std::time::Duration;

/// How receivers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receivers {
    /// Exactly this many receives in flight.
    Fixed(usize),
    /// Adapt between one and `max`.
    Auto { max: usize },
}

/// What the receivers did in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Period {
    /// Receives that completed.
    pub receives: u64,
    /// Messages they brought.
    pub messages: u64,
    /// Time receivers spent waiting for room in the workers' queue.
    pub blocked: Duration,
    /// How long the period was, and how many receivers were running in it.
    pub length: Duration,
    pub running: usize,
}

/// Most messages one receive returns.
const PER_RECEIVE: f64 = 10.0;
/// Receives this full (on average) mean more is waiting.
const FULL: f64 = 0.8;
/// Receives this thin mean the queue is nearly empty.
const THIN: f64 = 0.3;
/// Receivers waiting this share of their time mean the workers are the bottleneck.
const BLOCKED: f64 = 0.5;
/// Receivers waiting less than this share of their time mean the workers keep up.
const FREE: f64 = 0.1;

/// Growth pays when throughput rises by at least this share of the rise in receivers (from 4
/// to 8 receivers, at least 30% more messages a second). Lenient, because periods are short
/// and a busy machine makes their rates noisy.
const PAYS: f64 = 0.3;
/// ... and for a doubling far from SQS, half that. There a receive in flight costs no request
/// more and holds at most ten messages, and the machine's CPU, not the round trip, dampens the
/// last doubling: 32 -> 64 receivers 20 ms away brought 1.3-1.45x on two cores, so at 30% it
/// failed now and then and masq ran 5 s at 32 (9,400 instead of 13,500 messages a second).
/// Bigger steps keep `PAYS`: eight times the receivers for 2.5 times the messages is a limit.
const PAYS_FAR: f64 = 0.15;
/// Growth that paid at least this share of the rise (4 -> 8 receivers: 70% more messages a
/// second) shows the receivers are bound by the round trip, not by anything masq could
/// saturate: the next growth quadruples instead of doubling (after the first, far from SQS:
/// `FAR_FIRST_GROWTH`), which a short burst of messages notices.
const PAID_FULLY: f64 = 0.7;
/// ... but only while each receiver brings at most this many messages a second: a receive of
/// ten taking 10 ms or more, a remote SQS. Near the server (loopback, the same host) receivers
/// are fast, a few more saturate the workers, and quadrupling would only overshoot.
const FAR_PER_RECEIVER: f64 = 1_000.0;
/// The first growth far from SQS multiplies by this, not two: there one receiver moves at most
/// `FAR_PER_RECEIVER` messages a second (about 300 at 20 ms), so the four a pool starts with
/// move about a tenth of what the workers can take (masq on two cores: about 14,000 a second).
/// Doubling from there took three trials (4 -> 8 -> 32 -> 64, 1.2 s) to reach the 64 that a
/// 20 ms endpoint needs; eight times takes two (4 -> 32 -> 64). The trial still checks that
/// it paid, and undoes what did not.
const FAR_FIRST_GROWTH: usize = 8;
/// Periods a rate is averaged over, before and after a change.
const JUDGE_OVER: usize = 3;
/// How long growth stays off after it did not pay.
const HOLD: Duration = Duration::from_secs(5);

/// `next`, plus the check that growth pays. One per pool.
#[derive(Debug, Default)]
pub struct Controller {
    /// Messages a second in the last periods at the current number of receivers.
    rates: Vec<f64>,
    /// Growing from `from` receivers, which moved `rate` messages a second.
    trial: Option<Trial>,
    /// No growth until this much more time has passed.
    hold: Duration,
    /// The last growth paid fully (`PAID_FULLY`): grow four times, not twice.
    bold: bool,
    /// A growth was tried already (`FAR_FIRST_GROWTH` is for the first).
    grown: bool,
    /// A period with receives was seen. The first is part start-up (connections, the policy's
    /// first instance, cold caches): slower than what follows, it would make any growth look
    /// as if it paid, so near the server it does not count.
    started: bool,
}

#[derive(Debug)]
struct Trial {
    from: usize,
    to: usize,
    rate: f64,
    /// The period right after a change is partly the old number: it is not counted.
    settling: bool,
}

impl Controller {
    /// The number of receivers for the next period.
    pub fn next(&mut self, current: usize, max: usize, period: &Period) -> usize {
        self.hold = self.hold.saturating_sub(period.length);
        if period.receives == 0 {
            // Nothing finished (long polls waiting, or a stall): nothing to judge by.
            return current.clamp(1, max);
        }
        let rate = period.messages as f64 / period.length.as_secs_f64().max(1e-3);
        if let Some(trial) = &mut self.trial {
            if std::mem::take(&mut trial.settling) {
                return current;
            }
            self.rates.push(rate);
            if self.rates.len() < JUDGE_OVER {
                return current;
            }
            let trial = self.trial.take().expect("checked above");
            let rise = (trial.to - trial.from) as f64 / trial.from as f64;
            let now = mean(&self.rates);
            self.bold = now >= trial.rate * (1.0 + PAID_FULLY * rise)
                && now / trial.to as f64 <= FAR_PER_RECEIVER;
            let far = trial.rate / trial.from as f64 <= FAR_PER_RECEIVER;
            let pays = if far && rise <= 1.0 { PAYS_FAR } else { PAYS };
            if now < trial.rate * (1.0 + pays * rise) {
                self.hold = HOLD;
                self.rates.clear();
                return enough(&trial, now);
            }
        } else if std::mem::replace(&mut self.started, true) {
            self.rates.push(rate);
        }
        let far = rate / current.max(1) as f64 <= FAR_PER_RECEIVER;
        let mut proposed = next(current, max, period);
        if proposed > current {
            // Near the server a few receivers saturate the workers, and a transient (start-up,
            // a checkpoint) makes a growth look as if it paid: judge it against three periods.
            // Far away each period counts: the ramp is what a burst waits for.
            if !self.hold.is_zero() || (!far && self.rates.len() < JUDGE_OVER) {
                return current;
            }
            if !std::mem::replace(&mut self.grown, true) && far {
                proposed = (current * FAR_FIRST_GROWTH).min(max);
            } else if std::mem::take(&mut self.bold) {
                proposed = (current * 4).min(max);
            }
            self.trial = Some(Trial {
                from: current,
                to: proposed,
                rate: if self.rates.is_empty() {
                    rate
                } else {
                    mean(&self.rates[self.rates.len().saturating_sub(JUDGE_OVER)..])
                },
                settling: true,
            });
        }
        if proposed != current {
            self.rates.clear();
        }
        if proposed < current {
            self.bold = false;
            // Down to one long poll: the queue was empty. The next burst starts over, with a
            // first growth as big as at the start.
            self.grown &= proposed > 1;
        }
        proposed
    }
}

/// Where a growth that did not pay goes back to. After a small step (twice, or near the
/// server) that is where it started. After a big step far from SQS it is the number that the
/// rate reached shows to be enough: as many receivers as move that rate at the round trip
/// measured before (each moved `trial.rate / trial.from`), with a quarter more for the
/// round trip's tail. So a machine that tops out at 3,000 messages a second, 20 ms away,
/// settles at 13 receivers, not back at 4 (1,100 a second).
fn enough(trial: &Trial, now: f64) -> usize {
    let per_receiver = trial.rate / trial.from as f64;
    if trial.to <= trial.from * 2 || per_receiver > FAR_PER_RECEIVER || per_receiver <= 0.0 {
        return trial.from;
    }
    let needed = (1.25 * now / per_receiver).ceil() as usize;
    needed.clamp(trial.from, trial.to - 1)
}

fn mean(rates: &[f64]) -> f64 {
    rates.iter().sum::<f64>() / rates.len().max(1) as f64
}

/// The number of receivers for the next period, by what this period's receives showed.
pub fn next(current: usize, max: usize, period: &Period) -> usize {
    let current = current.clamp(1, max);
    if period.receives == 0 {
        // No receive finished (long polls on an empty queue): nothing new to go by.
        return current;
    }
    let fill = period.messages as f64 / (period.receives as f64 * PER_RECEIVE);
    let capacity = period.length.as_secs_f64() * period.running.max(1) as f64;
    let blocked = if capacity > 0.0 {
        period.blocked.as_secs_f64() / capacity
    } else {
        0.0
    };
    if period.messages == 0 {
        // Every receive came back empty: the queue is empty now. One long poll notices the
        // next message as soon as many would, and the pool grows again within a second.
        1
    } else if blocked > BLOCKED {
        current.saturating_sub((current / 8).max(1)).max(1)
    } else if fill < THIN {
        current.saturating_sub((current / 4).max(1)).max(1)
    } else if fill >= FULL && blocked < FREE {
        (current * 2).min(max)
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(receives: u64, messages: u64, blocked_ms: u64, running: usize) -> Period {
        Period {
            receives,
            messages,
            blocked: Duration::from_millis(blocked_ms),
            length: Duration::from_millis(100),
            running,
        }
    }

    #[test]
    fn full_receives_and_free_workers_grow_fast_up_to_the_maximum() {
        let mut c = 1;
        let mut seen = vec![c];
        for _ in 0..12 {
            c = next(c, 64, &period(50, 500, 0, c));
            seen.push(c);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 64, 64, 64, 64, 64, 64, 64]);
    }

    #[test]
    fn empty_receives_shrink_to_one_and_thin_ones_by_a_quarter() {
        assert_eq!(next(64, 64, &period(10, 0, 0, 64)), 1);
        assert_eq!(next(1, 64, &period(3, 0, 0, 1)), 1);
        let mut c = 64;
        let mut seen = vec![c];
        while c > 1 {
            c = next(c, 64, &period(10, 20, 0, c));
            seen.push(c);
        }
        assert_eq!(&seen[..6], [64, 48, 36, 27, 21, 16]);
    }

    #[test]
    fn waiting_for_the_workers_shrinks_slowly() {
        // 20 receivers each waiting 60 ms of 100: the workers are the bottleneck.
        assert_eq!(next(20, 64, &period(40, 400, 1200, 20)), 18);
        // Some waiting, but not most: hold, do not grow.
        assert_eq!(next(20, 64, &period(40, 400, 600, 20)), 20);
    }

    #[test]
    fn middling_fill_holds_and_silence_holds() {
        assert_eq!(next(8, 64, &period(40, 200, 0, 8)), 8);
        assert_eq!(next(8, 64, &period(0, 0, 0, 8)), 8);
    }

    #[test]
    fn never_outside_one_to_max() {
        for c in 0..80 {
            for p in [
                period(10, 100, 0, 5),
                period(10, 0, 0, 5),
                period(10, 100, 900, 5),
            ] {
                let n = next(c, 16, &p);
                assert!((1..=16).contains(&n), "{c} -> {n}");
            }
        }
    }

    #[test]
    fn growth_that_brings_nothing_is_undone_and_held_off() {
        let mut c = Controller::default();
        // Near the server (1,250 messages a second per receiver), 4 receivers bring 500
        // messages a period, full and free: after the start-up period and three to judge
        // growth by, grow to 8.
        for _ in 0..3 {
            assert_eq!(c.next(4, 64, &period(50, 500, 0, 4)), 4);
        }
        assert_eq!(c.next(4, 64, &period(50, 500, 0, 4)), 8);
        // A period to settle, then three to judge by: 8 bring no more, so back to 4.
        for _ in 0..3 {
            assert_eq!(c.next(8, 64, &period(50, 500, 0, 8)), 8);
        }
        assert_eq!(c.next(8, 64, &period(50, 500, 0, 8)), 4);
        // Held off for a while, although receives still come back full.
        for _ in 0..40 {
            assert_eq!(c.next(4, 64, &period(50, 500, 0, 4)), 4);
        }
        // Then it tries again.
        for _ in 0..20 {
            if c.next(4, 64, &period(50, 500, 0, 4)) > 4 {
                return;
            }
        }
        panic!("growth never tried again");
    }

    #[test]
    fn periods_where_nothing_finished_are_not_held_against_growth() {
        // Far from SQS (1,000 messages a second per receiver): the first growth is 8 times.
        let mut c = Controller::default();
        assert_eq!(c.next(4, 256, &period(40, 400, 0, 4)), 32);
        for _ in 0..5 {
            assert_eq!(c.next(32, 256, &period(0, 0, 0, 32)), 32);
        }
        assert_eq!(c.next(32, 256, &period(320, 3200, 0, 32)), 32, "settling");
        assert_eq!(c.next(32, 256, &period(320, 3200, 0, 32)), 32);
        assert_eq!(c.next(32, 256, &period(320, 3200, 0, 32)), 32);
        assert_eq!(
            c.next(32, 256, &period(320, 3200, 0, 32)),
            128,
            "it paid fully: growth goes on, four times"
        );
    }

    #[test]
    fn growth_that_pays_fully_quadruples_and_partly_doubles() {
        // Each receiver brings 100 messages a period (1,000 a second: far from SQS), round-trip
        // bound, so growth pays fully: eight times first, then four.
        let mut c = Controller::default();
        let mut seen = vec![4];
        let mut n = 4;
        for _ in 0..12 {
            n = c.next(n, 256, &period(10 * n as u64, 100 * n as u64, 0, n));
            if seen.last() != Some(&n) {
                seen.push(n);
            }
        }
        assert_eq!(seen, [4, 32, 128, 256]);
        // Near the server, from 4 to 8 brings 40% more (pays, not fully): the next step only
        // doubles.
        let mut c = Controller::default();
        for _ in 0..3 {
            assert_eq!(c.next(4, 64, &period(60, 600, 0, 4)), 4);
        }
        assert_eq!(c.next(4, 64, &period(60, 600, 0, 4)), 8);
        assert_eq!(c.next(8, 64, &period(84, 840, 0, 8)), 8, "settling");
        for _ in 0..2 {
            assert_eq!(c.next(8, 64, &period(84, 840, 0, 8)), 8);
        }
        assert_eq!(c.next(8, 64, &period(84, 840, 0, 8)), 16);
        // Near the server each receiver brings 3,000 a second: growth pays fully, but only
        // doubles.
        let mut c = Controller::default();
        let mut seen = vec![4];
        let mut n = 4;
        for _ in 0..12 {
            n = c.next(n, 64, &period(30 * n as u64, 300 * n as u64, 0, n));
            if seen.last() != Some(&n) {
                seen.push(n);
            }
        }
        assert_eq!(seen, [4, 8, 16, 32]);
    }

    #[test]
    fn a_big_step_far_away_that_does_not_pay_settles_where_the_rate_says() {
        // 20 ms away each receiver brings about 300 a second; the workers top out at 3,000.
        let mut c = Controller::default();
        assert_eq!(c.next(4, 64, &period(12, 120, 0, 4)), 32);
        for _ in 0..3 {
            assert_eq!(c.next(32, 64, &period(30, 300, 0, 32)), 32);
        }
        // 32 receivers moved 3,000 a second, not 30% of eight times more: 3,000 / 300 = 10
        // receivers are enough, 13 with a quarter more for the tail.
        assert_eq!(c.next(32, 64, &period(30, 300, 0, 32)), 13);
        // Held there, although receives still come back full.
        for _ in 0..40 {
            assert_eq!(c.next(13, 64, &period(30, 300, 0, 13)), 13);
        }
    }

    #[test]
    fn after_an_empty_queue_the_next_burst_far_away_grows_eight_times_again() {
        let mut c = Controller::default();
        let mut n = c.next(4, 64, &period(40, 400, 0, 4));
        assert_eq!(n, 32);
        // The burst is over: receives come back empty until one long poll is left.
        for _ in 0..20 {
            n = c.next(n, 64, &period(10, 0, 0, n));
        }
        assert_eq!(n, 1);
        // The next burst: far, full and free. Once growth is allowed again, it is 8 times.
        for _ in 0..100 {
            n = c.next(n, 64, &period(10, 100, 0, n));
            if n > 1 {
                break;
            }
        }
        assert_eq!(n, 8);
    }

    /// `n` of 64 receivers bringing `messages` a period, 10 a receive: `periods` periods
    /// that keep `n`, then the decision after one more.
    fn kept_then(c: &mut Controller, n: usize, messages: u64, periods: usize) -> usize {
        let p = period(messages / 10, messages, 0, n);
        for _ in 0..periods {
            assert_eq!(c.next(n, 64, &p), n);
        }
        c.next(n, 64, &p)
    }

    #[test]
    fn near_the_server_a_slow_start_up_does_not_pass_for_growth_that_paid() {
        let mut c = Controller::default();
        // Start-up: a slow first period (still near: 1,500 a second per receiver), then 4
        // receivers bring 1,600 a period.
        assert_eq!(c.next(4, 64, &period(60, 600, 0, 4)), 4);
        assert_eq!(kept_then(&mut c, 4, 1600, 2), 8);
        // 8 bring 1,700: judged against 1,600, not against the start-up's 600, it did not
        // pay: back to 4.
        assert_eq!(kept_then(&mut c, 8, 1700, 3), 4);
    }

    #[test]
    fn far_away_a_last_doubling_that_brings_a_fifth_more_stays() {
        // 32 receivers far away bring 1,000 a period; 64 bring 1,200 (the CPU dampens it).
        let mut c = Controller::default();
        assert_eq!(c.next(4, 64, &period(12, 120, 0, 4)), 32);
        assert_eq!(kept_then(&mut c, 32, 1000, 3), 64);
        // Judged: 20% more for twice the receivers pays far from SQS (15% of the rise).
        assert_eq!(kept_then(&mut c, 64, 1200, 3), 64);
        assert_eq!(kept_then(&mut c, 64, 1200, 20), 64);
        // Near the server the same 20% does not pay (30%): back to 32.
        let mut c = Controller::default();
        assert_eq!(kept_then(&mut c, 32, 6000, 3), 64);
        assert_eq!(kept_then(&mut c, 64, 7200, 3), 32);
    }

    #[test]
    fn growth_that_pays_goes_on() {
        let mut c = Controller::default();
        let mut n = 4;
        for _ in 0..30 {
            // Each receiver brings 100 messages a period: throughput follows the count.
            n = c.next(n, 64, &period(10 * n as u64, 100 * n as u64, 0, n));
        }
        assert_eq!(n, 64);
    }
}
