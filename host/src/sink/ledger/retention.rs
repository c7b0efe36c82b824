//! How long the ledger remembers a message: `--ledger-retention`, and the floor a queue puts
//! under it. SQS can hand a message out again until its retention period ends, and once more
//! for a visibility timeout after that; a ledger that forgot the message sooner would let
//! that delivery write it twice.

use anyhow::bail;
use std::fmt;
use std::time::Duration;

/// The ledger's retention; shown as people write it (`15d`, `36h`, `90s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Duration);

/// Fifteen days: SQS keeps a message at most 14 days, plus visibility timeouts (at most 12 h).
pub const DEFAULT: &str = "15d";

impl Retention {
    /// `15d`, `36h`, `90m`, `600s`, or plain seconds.
    pub fn parse(s: &str) -> Result<Retention, String> {
        let s = s.trim();
        let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => s.split_at(at),
            None => (s, "s"),
        };
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "'{s}' is not a duration: a number with s, m, h or d, e.g. 15d"
                ));
            }
        };
        let n: u64 = number.parse().map_err(|_| {
            format!("'{s}' is not a duration: a number with s, m, h or d, e.g. 15d")
        })?;
        match n.checked_mul(scale) {
            Some(0) => Err("a retention of 0 would forget every message at once".into()),
            // Up to 100 years: beyond, PostgreSQL's interval arithmetic is the limit.
            Some(seconds) if seconds <= 100 * 365 * 86_400 => {
                Ok(Retention(Duration::from_secs(seconds)))
            }
            _ => Err(format!("'{s}' is longer than 100 years")),
        }
    }

    pub fn seconds(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// Whole days, rounded up.
    pub fn whole_days(self) -> i64 {
        self.0.as_secs().div_ceil(86_400) as i64
    }

    /// Refuses a retention shorter than what the queue can still redeliver: its
    /// `MessageRetentionPeriod` plus one visibility timeout.
    pub fn check_against_queue(
        self,
        queue: &str,
        message_retention: Duration,
        visibility: Duration,
    ) -> anyhow::Result<()> {
        let floor = message_retention + visibility;
        if self.0 < floor {
            bail!(
                "--ledger-retention {self} ({} s) is shorter than queue {queue} can redeliver a \
                 message: its MessageRetentionPeriod {} ({} s) plus a visibility timeout of {} s. \
                 A message redelivered after its ledger entry is dropped would be written twice. \
                 Set --ledger-retention (MASQ_LEDGER_RETENTION) to at least {} ({} s), or shorten \
                 the queue's MessageRetentionPeriod",
                self.0.as_secs(),
                Retention(message_retention),
                message_retention.as_secs(),
                visibility.as_secs(),
                Retention(floor.next_whole(3600)),
                floor.as_secs(),
            );
        }
        Ok(())
    }
}

trait NextWhole {
    fn next_whole(self, unit: u64) -> Duration;
}

impl NextWhole for Duration {
    /// Rounded up to a whole number of `unit` seconds: an advice people can type.
    fn next_whole(self, unit: u64) -> Duration {
        Duration::from_secs(self.as_secs().div_ceil(unit) * unit)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            _ if s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            _ if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let secs = |s: &str| Retention::parse(s).unwrap().0.as_secs();
        assert_eq!(secs("15d"), 15 * 86_400);
        assert_eq!(secs("36h"), 36 * 3600);
        assert_eq!(secs("90m"), 5400);
        assert_eq!(secs("600s"), 600);
        assert_eq!(secs("600"), 600);
        for bad in ["", "d", "15 days", "-1d", "1.5d", "0", "0d", "40000d"] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Retention::parse(DEFAULT).unwrap().to_string(), "15d");
        assert_eq!(Retention::parse("5400").unwrap().to_string(), "90m");
        assert_eq!(Retention::parse("61").unwrap().to_string(), "61s");
        assert_eq!(Retention::parse("25h").unwrap().whole_days(), 2);
    }

    #[test]
    fn a_retention_under_what_the_queue_can_redeliver_is_refused_naming_both() {
        let four_days = Duration::from_secs(4 * 86_400);
        let thirty = Duration::from_secs(30);
        let short = Retention::parse("4d").unwrap();
        let err = short
            .check_against_queue("q", four_days, thirty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--ledger-retention 4d (345600 s)"), "{err}");
        assert!(
            err.contains("MessageRetentionPeriod 4d (345600 s)"),
            "{err}"
        );
        assert!(err.contains("visibility timeout of 30 s"), "{err}");
        assert!(err.contains("at least 97h (345630 s)"), "{err}");
        let enough = Retention::parse("345630").unwrap();
        assert!(enough.check_against_queue("q", four_days, thirty).is_ok());
    }
}
