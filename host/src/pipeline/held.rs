//! What the pipeline holds: every message from receipt until it is acknowledged or handed
//! back, and the park/drain state that decides when a drain is over.

use crate::ops::metrics::Counters;
use crate::source::Message;
use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Every message masq holds, from receipt until it is deleted or handed back. The heartbeat
/// extends these. In drain mode it also decides when the queue is empty: a receiver whose
/// receive comes back empty parks (stops polling); the queue is drained when every receiver
/// is parked and masq holds nothing. A receiver mid-receive is never parked, so messages it
/// is about to bring in cannot be missed; a receiver retrying after errors simply parks
/// later. Parked receivers wake when messages are handed back to the queue.
pub(super) struct Held {
    inner: Mutex<HeldState>,
    /// Wakes parked receivers: messages went back to the queue, or the queue is drained.
    pub(super) wake: Notify,
    /// The held gauge and the progress clock behind /healthz.
    counters: Arc<Counters>,
}

#[derive(Default)]
struct HeldState {
    receipts: HashMap<String, Instant>,
    /// Dry run: messages already shown, kept invisible until the end so none is shown twice,
    /// but no longer counted as work in progress.
    shown: HashMap<String, Instant>,
    /// One entry per receiver slot (running or not).
    receivers: Vec<Slot>,
    drained: bool,
}

/// What a receiver slot is doing, for the drain decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// No receiver runs in this slot (retired, or never started).
    Absent,
    /// Receiving, or about to.
    Polling,
    /// Found the source empty and waits to be woken.
    Parked,
}

impl HeldState {
    fn check_drained(&mut self) -> bool {
        if !self.drained
            && self.receipts.is_empty()
            && self.receivers.iter().all(|r| *r != Slot::Polling)
        {
            self.drained = true;
        }
        self.drained
    }
}

impl Held {
    /// `slots` receivers at most, the first `polling` of them running from the start.
    pub(super) fn new(slots: usize, polling: usize, counters: Arc<Counters>) -> Held {
        let receivers = (0..slots)
            .map(|i| {
                if i < polling {
                    Slot::Polling
                } else {
                    Slot::Absent
                }
            })
            .collect();
        Held {
            inner: Mutex::new(HeldState {
                receivers,
                ..HeldState::default()
            }),
            wake: Notify::new(),
            counters,
        }
    }

    pub(super) fn add(&self, messages: &[Message]) {
        let now = Instant::now();
        let mut s = self.inner.lock().expect("held lock");
        if s.receipts.is_empty() {
            // Holding nothing until now was not a stall: the clock starts with the holding.
            self.counters.progress();
        }
        for m in messages {
            s.receipts.insert(m.receipt.clone(), now);
        }
        self.counters
            .held
            .store(s.receipts.len() as u64, Ordering::Relaxed);
    }

    /// Forgets messages: deleted (`back_in_queue` false) or handed back to the queue (true,
    /// which wakes parked receivers to fetch them again).
    pub(super) fn remove<'a>(&self, receipts: impl Iterator<Item = &'a str>, back_in_queue: bool) {
        let mut s = self.inner.lock().expect("held lock");
        for r in receipts {
            s.receipts.remove(r);
            s.shown.remove(r);
        }
        self.counters
            .held
            .store(s.receipts.len() as u64, Ordering::Relaxed);
        self.counters.progress();
        if back_in_queue {
            for r in s.receivers.iter_mut().filter(|r| **r == Slot::Parked) {
                *r = Slot::Polling;
            }
        }
        let drained = s.check_drained();
        drop(s);
        if back_in_queue || drained {
            self.wake.notify_waiters();
        }
    }

    pub(super) fn older_than(&self, age: Duration) -> Vec<String> {
        let s = self.inner.lock().expect("held lock");
        s.receipts
            .iter()
            .chain(&s.shown)
            .filter(|(_, t)| t.elapsed() >= age)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Dry run: keeps messages invisible (heartbeat) without counting them as work in progress.
    pub(super) fn shown<'a>(&self, receipts: impl Iterator<Item = &'a str>) {
        let mut s = self.inner.lock().expect("held lock");
        for r in receipts {
            if let Some(t) = s.receipts.remove(r) {
                s.shown.insert(r.to_string(), t);
            }
        }
        self.counters
            .held
            .store(s.receipts.len() as u64, Ordering::Relaxed);
        self.counters.progress();
        if s.check_drained() {
            drop(s);
            self.wake.notify_waiters();
        }
    }

    /// A receiver found the queue empty: parks it, and says whether the queue is drained.
    pub(super) fn park(&self, receiver: usize) -> bool {
        self.leave(receiver, Slot::Parked)
    }

    /// Puts `receiver` in a slot that no longer polls (parked or gone), wakes everyone if that
    /// drains the source, and says whether it did.
    fn leave(&self, receiver: usize, slot: Slot) -> bool {
        let mut s = self.inner.lock().expect("held lock");
        s.receivers[receiver] = slot;
        let drained = s.check_drained();
        drop(s);
        if drained {
            self.wake.notify_waiters();
        }
        drained
    }

    /// Unparks a receiver that woke up; false if the queue is drained meanwhile.
    pub(super) fn unpark(&self, receiver: usize) -> bool {
        let mut s = self.inner.lock().expect("held lock");
        if s.drained {
            return false;
        }
        s.receivers[receiver] = Slot::Polling;
        true
    }

    /// A receiver starts in slot `receiver`; false if the source is drained meanwhile.
    pub(super) fn start(&self, receiver: usize) -> bool {
        self.unpark(receiver)
    }

    /// The receiver of slot `receiver` stopped: it no longer counts for the drain decision.
    pub(super) fn retire(&self, receiver: usize) {
        self.leave(receiver, Slot::Absent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(receipt: &str) -> Message {
        Message::new(receipt.into(), receipt.into(), "{}".into(), 0, 1)
    }

    fn held(receivers: usize) -> (Held, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        (Held::new(receivers, receivers, counters.clone()), counters)
    }

    #[test]
    fn drained_only_when_every_receiver_parked_and_nothing_is_held() {
        let (h, counters) = held(2);
        h.add(&[message("a"), message("b")]);
        assert_eq!(Counters::get(&counters.held), 2);
        assert!(!h.park(0), "one receiver parked, one still polling");
        assert!(!h.park(1), "both parked, but two messages are held");
        h.remove(["a"].into_iter(), false);
        assert!(!h.park(1));
        h.remove(["b"].into_iter(), false);
        assert_eq!(Counters::get(&counters.held), 0);
        assert!(h.park(0), "everything settled and everyone parked: drained");
        assert!(!h.unpark(1), "a drained pipeline stays drained");
    }

    #[test]
    fn messages_handed_back_wake_the_parked_receivers() {
        let (h, _) = held(2);
        h.add(&[message("a")]);
        assert!(!h.park(0));
        assert!(!h.park(1));
        // Back in the queue: someone must receive them again, so nobody may stay parked.
        h.remove(["a"].into_iter(), true);
        assert!(!h.park(0), "receiver 1 was unparked by the hand-back");
        assert!(h.park(1));
    }

    #[test]
    fn a_receiver_that_woke_up_is_polling_again() {
        let (h, _) = held(2);
        assert!(!h.park(0));
        assert!(h.unpark(0));
        assert!(!h.park(1), "receiver 0 is polling again");
        assert!(h.park(0));
    }

    #[test]
    fn shown_messages_stay_hidden_but_are_not_work_in_progress() {
        let (h, counters) = held(1);
        h.add(&[message("a")]);
        h.shown(["a"].into_iter());
        assert_eq!(Counters::get(&counters.held), 0);
        assert_eq!(
            h.older_than(Duration::ZERO),
            ["a".to_string()],
            "still extended"
        );
        assert!(h.park(0), "a dry run drains once everything is shown");
    }

    #[test]
    fn retired_receivers_do_not_hold_up_a_drain_and_new_ones_do() {
        let counters = Arc::new(Counters::default());
        let h = Held::new(4, 1, counters);
        assert!(h.start(1));
        assert!(!h.park(0), "receiver 1 is polling");
        h.retire(1);
        assert!(h.park(0), "the retired receiver does not count");
        assert!(!h.start(2), "drained: no receiver starts any more");
    }

    #[test]
    fn a_hand_back_wakes_parked_receivers_not_absent_slots() {
        let counters = Arc::new(Counters::default());
        let h = Held::new(3, 2, counters);
        h.add(&[message("a")]);
        assert!(!h.park(0));
        assert!(!h.park(1));
        h.remove(["a"].into_iter(), true);
        assert!(!h.park(0));
        assert!(h.park(1), "slot 2 never ran and does not block the drain");
    }
}
