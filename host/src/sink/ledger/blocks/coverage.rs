//! Which lines of one block are settled, and how, and the text a block's ledger entry keeps
//! them in: `<source-id>:<written>[/d<dropped>][/l<dead-lettered>]`, each list like `1-49,51`.

use super::BLOCK_LINES;
use crate::sink::ledger::key::Outcome;

/// Which lines of one block are settled, and how: a bit per line, in one mask per outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    written: u128,
    dropped: u128,
    dead: u128,
}

impl Coverage {
    /// Every line of the block, written: what a block whose text cannot be read is taken for.
    pub fn whole() -> Coverage {
        Coverage {
            written: (1 << BLOCK_LINES) - 1,
            ..Coverage::default()
        }
    }

    pub(super) fn all(&self) -> u128 {
        self.written | self.dropped | self.dead
    }

    pub fn contains(&self, offset: u32) -> bool {
        self.all() >> offset & 1 == 1
    }

    /// The outcome of the line at `offset`, if it is settled.
    pub fn outcome(&self, offset: u32) -> Option<Outcome> {
        let bit = 1u128 << offset;
        if self.written & bit != 0 {
            Some(Outcome::Written)
        } else if self.dropped & bit != 0 {
            Some(Outcome::Dropped)
        } else if self.dead & bit != 0 {
            Some(Outcome::DeadLetter)
        } else {
            None
        }
    }

    /// Leaves the line at `offset` unsettled.
    pub fn clear(&mut self, offset: u32) {
        let bit = 1u128 << offset;
        self.written &= !bit;
        self.dropped &= !bit;
        self.dead &= !bit;
    }

    /// Settles the line at `offset` with `outcome` (replacing any earlier one).
    pub fn set(&mut self, offset: u32, outcome: Outcome) {
        self.clear(offset);
        let bit = 1u128 << offset;
        match outcome {
            Outcome::Written => self.written |= bit,
            Outcome::Dropped => self.dropped |= bit,
            Outcome::DeadLetter => self.dead |= bit,
        }
    }

    /// This block's entry text for `source`, block `block`.
    pub fn text(&self, source: &str, block: u64) -> String {
        let first = block * BLOCK_LINES + 1;
        let mut out = format!("{source}:{}", spans(self.written, first));
        for (tag, mask) in [('d', self.dropped), ('l', self.dead)] {
            if mask != 0 {
                out.push('/');
                out.push(tag);
                out.push_str(&spans(mask, first));
            }
        }
        out
    }

    /// Reads what `text` says of block `block`; `None` if it is not an entry text of that
    /// block (someone edited the ledger by hand).
    pub fn parse(text: &str, block: u64) -> Option<Coverage> {
        let (_, lists) = text.rsplit_once(':')?;
        let first = block * BLOCK_LINES + 1;
        let mut coverage = Coverage::default();
        for (i, list) in lists.split('/').enumerate() {
            let (mask, list) = match (i, list.as_bytes().first()) {
                (0, _) => (&mut coverage.written, list),
                (_, Some(b'd')) => (&mut coverage.dropped, &list[1..]),
                (_, Some(b'l')) => (&mut coverage.dead, &list[1..]),
                _ => return None,
            };
            *mask |= parse_spans(list, first)?;
        }
        Some(coverage)
    }
}

/// `1-49,51,53-100` (absolute line numbers) for the lines of `mask`.
fn spans(mask: u128, first: u64) -> String {
    let mut out = String::new();
    let mut offset = 0;
    while offset < BLOCK_LINES as u32 {
        if mask >> offset & 1 == 0 {
            offset += 1;
            continue;
        }
        let start = offset;
        while offset + 1 < BLOCK_LINES as u32 && mask >> (offset + 1) & 1 == 1 {
            offset += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        let (a, b) = (first + start as u64, first + offset as u64);
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}-{b}"));
        }
        offset += 1;
    }
    out
}

fn parse_spans(list: &str, first: u64) -> Option<u128> {
    let mut mask = 0u128;
    if list.is_empty() {
        return Some(mask);
    }
    for span in list.split(',') {
        let (a, b) = match span.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let a = span.parse::<u64>().ok()?;
                (a, a)
            }
        };
        if a < first || b < a || b >= first + BLOCK_LINES {
            return None;
        }
        for line in a..=b {
            mask |= 1 << (line - first);
        }
    }
    Some(mask)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ledger::key::Outcome;

    fn coverage(lines: &[(u64, Outcome)], block: u64) -> Coverage {
        let mut c = Coverage::default();
        for &(line, outcome) in lines {
            c.set((line - 1 - block * BLOCK_LINES) as u32, outcome);
        }
        c
    }

    #[test]
    fn entry_texts_list_lines_by_outcome_and_read_back() {
        use Outcome::*;
        let mut lines: Vec<(u64, Outcome)> = (101..=200).map(|l| (l, Written)).collect();
        lines.retain(|(l, _)| *l != 150 && *l != 160);
        lines[0].1 = DeadLetter;
        lines[97].1 = Dropped;
        lines[96].1 = Dropped;
        let c = coverage(&lines, 1);
        let text = c.text("orders:2026.jsonl", 1);
        assert_eq!(text, "orders:2026.jsonl:102-149,151-159,161-198/d199-200/l101");
        assert_eq!(Coverage::parse(&text, 1), Some(c));
        assert_eq!(c.outcome(0), Some(DeadLetter));
        assert_eq!(c.outcome(49), None);
        assert!(c.contains(99) && !c.contains(59));

        let full = coverage(&(1..=100).map(|l| (l, Written)).collect::<Vec<_>>(), 0);
        assert_eq!(full.text("s", 0), "s:1-100");
        let only_dropped = coverage(&[(7, Dropped)], 0);
        assert_eq!(only_dropped.text("s", 0), "s:/d7");
        assert_eq!(Coverage::parse("s:/d7", 0), Some(only_dropped));
    }

    #[test]
    fn texts_that_are_not_of_the_block_are_refused() {
        for text in ["s:1-100", "s:0", "s:5-3", "s:1/x2", "s:a", "nocolon", "s:1,"] {
            assert_eq!(Coverage::parse(text, 1), None, "{text}");
        }
        assert!(Coverage::parse("s:101-200", 1).is_some());
    }
}
