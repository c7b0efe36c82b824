//! Test data for queues: synthetic login events of which about 1% are malformed in the ways
//! real queues are (see `MALFORMED`), or the lines of a JSONL file; `masq seed` sends them
//! (through a `Sender`, in whatever shape it was asked for).

use crate::source::sender::Sender;
use anyhow::{Context, bail};
use std::path::Path;

/// The bad bodies `--count` mixes in, each a kind of input the pipeline must dead-letter.
pub const MALFORMED: &[&str] = &[
    r#"{"user_id": "broken"#,
    r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#,
    r#"{"user_id": "u-missing", "app_version": "2.3.0", "device_type": "ios", "locale": "US", "device_id": "123-45-6789"}"#,
    r#"{"user_id": "u-type", "app_version": 7, "device_type": "ios", "ip": "10.0.0.1", "locale": "US", "device_id": "123-45-6789"}"#,
    r#"{"user_id": "u-null", "app_version": "2.3.0", "device_type": "ios", "ip": null, "locale": "US", "device_id": "123-45-6789"}"#,
    r#"["not", "an", "object"]"#,
];

/// Sends each non-empty line of a JSONL file as one message, in file order per batch of ten
/// (in file order altogether to a FIFO destination).
pub async fn from_file(sender: &mut Sender, path: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bodies: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    if bodies.is_empty() {
        bail!(
            "{} has no messages (one JSON body per line)",
            path.display()
        );
    }
    sender.send(bodies).await
}

/// Sends `count` synthetic login events; returns (sent, malformed).
pub async fn send(sender: &mut Sender, count: u64, seed: u64) -> anyhow::Result<(u64, u64)> {
    let mut rng = SplitMix(seed);
    let mut malformed = 0;
    let mut sent = 0;
    // Generate and send in slices so a million messages do not sit in memory at once.
    while sent < count {
        let n = (count - sent).min(10_000);
        let bodies: Vec<String> = (0..n)
            .map(|i| {
                if rng.next() % 100 == 0 {
                    malformed += 1;
                    MALFORMED[((sent + i) as usize) % MALFORMED.len()].to_string()
                } else {
                    login(&mut rng)
                }
            })
            .collect();
        sender.send(bodies).await?;
        sent += n;
    }
    Ok((sent, malformed))
}

/// One login event shaped like the take-home's messages.
pub fn login(rng: &mut SplitMix) -> String {
    let user_id = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        rng.next() as u32,
        rng.next() as u16,
        rng.next() as u16,
        rng.next() as u16,
        rng.next() & 0xffff_ffff_ffff
    );
    let app_version = if rng.next() % 2 == 0 {
        format!(
            "{}.{}.{}",
            rng.next() % 10,
            rng.next() % 20,
            rng.next() % 10
        )
    } else {
        format!("{}.{}", rng.next() % 10, rng.next() % 100)
    };
    let device_type = ["android", "ios"][(rng.next() % 2) as usize];
    let ip = format!(
        "{}.{}.{}.{}",
        rng.next() % 256,
        rng.next() % 256,
        rng.next() % 256,
        rng.next() % 256
    );
    let locales = ["US", "RU", "PH", "BR", "DE", "IN", "JP", "FR"];
    let locale = if rng.next() % 10 < 3 {
        "null".to_string()
    } else {
        format!(
            "\"{}\"",
            locales[(rng.next() % locales.len() as u64) as usize]
        )
    };
    let device_id = format!(
        "{:03}-{:02}-{:04}",
        rng.next() % 1000,
        rng.next() % 100,
        rng.next() % 10_000
    );
    format!(
        r#"{{"user_id": "{user_id}", "app_version": "{app_version}", "device_type": "{device_type}", "ip": "{ip}", "locale": {locale}, "device_id": "{device_id}"}}"#
    )
}

/// A small, seedable generator, so `--seed` repeats a data set exactly.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::decode::decode_body;

    #[test]
    fn synthetic_logins_decode_and_have_every_field() {
        let mut rng = SplitMix(7);
        for _ in 0..1000 {
            let fields = decode_body(&login(&mut rng)).unwrap();
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "user_id",
                    "app_version",
                    "device_type",
                    "ip",
                    "locale",
                    "device_id"
                ]
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        assert_eq!(login(&mut SplitMix(3)), login(&mut SplitMix(3)));
        assert_ne!(login(&mut SplitMix(3)), login(&mut SplitMix(4)));
    }
}
