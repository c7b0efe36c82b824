//! The lines of a file, or of stdin, as messages: what `masq load` and `masq plugin test` read.
//! Each non-empty line is one message with the id `<source-id>:<line number>`, so loading the
//! same input again writes nothing twice (the ledger knows every id). A line that is not
//! UTF-8 or is longer than masq decodes is still a message: it becomes one dead letter.

use super::{MAX_BODY_BYTES, Message, Source};
use anyhow::Context;
use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines handed out per receive, at most. A chunk ends on a multiple of this many lines, so
/// that each block of lines the ledger claims as one (`sink::ledger::blocks`) goes to the
/// database in one batch.
pub(crate) const CHUNK: usize = 100;

#[derive(Clone)]
pub struct JsonlSource {
    reader: Arc<Mutex<Reader>>,
    name: Arc<str>,
}

struct Reader {
    input: Box<dyn BufRead + Send>,
    /// Line number of the last line read, counting empty ones, as editors count them.
    line: u64,
    source_id: String,
    sent_ms: u64,
    done: bool,
}

impl JsonlSource {
    /// The source id of `path`: `given`, else the path (or `stdin`).
    pub fn source_id(path: &Path, given: Option<String>) -> String {
        given.unwrap_or_else(|| {
            if path.as_os_str() == "-" {
                "stdin".to_string()
            } else {
                path.display().to_string()
            }
        })
    }

    /// Reads `path`, or stdin when it is `-`. Ids are `<source_id>:<line>`. Every message
    /// gets `sent_ms` as its send time.
    pub fn open(path: &Path, source_id: String, sent_ms: u64) -> anyhow::Result<JsonlSource> {
        let stdin = path.as_os_str() == "-";
        let input: Box<dyn BufRead + Send> = if stdin {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            Box::new(std::io::BufReader::with_capacity(
                1 << 16,
                std::fs::File::open(path).with_context(|| {
                    format!(
                        "cannot open {}: check the path given to --input",
                        path.display()
                    )
                })?,
            ))
        };
        Ok(JsonlSource {
            reader: Arc::new(Mutex::new(Reader {
                input,
                line: 0,
                source_id,
                sent_ms,
                done: false,
            })),
            name: Arc::from(format!("file:{}", path.display())),
        })
    }

    /// Up to `max` messages from the next lines; empty at the end of the input. Blocking.
    pub fn read(&self, max: usize) -> anyhow::Result<Vec<Message>> {
        let mut r = self.reader.lock().expect("reader lock");
        let mut out = Vec::with_capacity(max);
        let mut buf = Vec::with_capacity(1024);
        while out.len() < max && !r.done {
            buf.clear();
            let length = read_line_capped(&mut r.input, &mut buf, MAX_BODY_BYTES)
                .with_context(|| format!("cannot read line {} of {}", r.line + 1, self.name))?;
            let Some(length) = length else {
                r.done = true;
                break;
            };
            r.line += 1;
            let block_ends = r.line.is_multiple_of(CHUNK as u64);
            if buf.iter().all(u8::is_ascii_whitespace) {
                if block_ends {
                    break;
                }
                continue;
            }
            // The line is read into one buffer, reused, and copied out at its exact size: a
            // fresh buffer per line would grow by doubling, five or six times a line.
            let (body, mut unreadable) = match std::str::from_utf8(&buf) {
                Ok(text) => (text.to_owned(), None),
                Err(e) => (
                    String::from_utf8_lossy(&buf).into_owned(),
                    Some(format!(
                        "line is not UTF-8 (invalid byte at offset {}); the body kept has U+FFFD in its place",
                        e.valid_up_to()
                    )),
                ),
            };
            if length > MAX_BODY_BYTES {
                unreadable = Some(format!(
                    "line of {length} bytes is over the {MAX_BODY_BYTES} bytes masq decodes; its first \
                     {MAX_BODY_BYTES} bytes are kept"
                ));
            }
            let receipt = r.line.to_string();
            let id = [r.source_id.as_str(), ":", &receipt].concat();
            let mut message = Message::new(id, receipt, body, r.sent_ms, 1);
            message.unreadable = unreadable;
            out.push(message);
            if block_ends {
                break;
            }
        }
        Ok(out)
    }
}

/// Reads one line (without its line break) into `buf`, keeping at most `max` bytes of it.
/// Returns the line's whole length, or `None` at the end of the input. Memory stays bounded
/// whatever the line's length.
fn read_line_capped(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    let mut length = 0;
    let mut any = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some(length));
        }
        any = true;
        let (part, found) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..at], Some(at)),
            None => (available, None),
        };
        let room = (max + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len();
        let used = part.len() + usize::from(found.is_some());
        input.consume(used);
        if found.is_some() {
            if buf.last() == Some(&b'\r') && length <= max + 1 {
                buf.pop();
                length -= 1;
            }
            buf.truncate(max);
            return Ok(Some(length));
        }
    }
}

impl Source for JsonlSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_receivers(&self) -> usize {
        1
    }

    fn max_chunk(&self) -> usize {
        CHUNK
    }

    fn finite(&self) -> bool {
        true
    }

    async fn receive(&self, _wait: Duration) -> anyhow::Result<Vec<Message>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read(CHUNK))
            .await
            .context("the reader thread failed")?
    }

    async fn acknowledge(&self, _receipts: &[&str]) {}

    // A line cannot be read twice: released lines are counted as handed back, and loading
    // the input again picks them up (the ledger skips what was written).
    async fn release(&self, _receipts: &[&str], _delay: Duration) {}

    fn hold_period(&self) -> Option<Duration> {
        None
    }

    async fn extend(&self, _receipts: &[&str]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_of(text: &[u8]) -> JsonlSource {
        let path =
            std::env::temp_dir().join(format!("masq-jsonl-{}-{}", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let s = JsonlSource::open(&path, "t".into(), 7).unwrap();
        std::fs::remove_file(&path).unwrap();
        s
    }

    #[test]
    fn lines_become_messages_numbered_as_editors_number_them() {
        let s = source_of(b"{\"a\":1}\n\n  \n{\"b\":2}\r\n{\"c\":3}");
        let m = s.read(10).unwrap();
        let got: Vec<(&str, &str)> = m.iter().map(|m| (m.id.as_str(), m.body.as_str())).collect();
        assert_eq!(
            got,
            [
                ("t:1", "{\"a\":1}"),
                ("t:4", "{\"b\":2}"),
                ("t:5", "{\"c\":3}")
            ]
        );
        assert!(m.iter().all(|m| m.sent_ms == 7 && m.unreadable.is_none()));
        assert!(s.read(10).unwrap().is_empty(), "the end stays the end");
    }

    #[test]
    fn reads_in_chunks() {
        let s = source_of(b"1\n2\n3\n4\n5\n");
        assert_eq!(s.read(2).unwrap().len(), 2);
        assert_eq!(s.read(2).unwrap().len(), 2);
        assert_eq!(s.read(2).unwrap()[0].id, "t:5");
        assert!(s.read(2).unwrap().is_empty());
    }

    #[test]
    fn chunks_end_where_the_ledger_blocks_end() {
        // Line 3 is empty: the first chunk has 99 lines and ends with line 100, where the
        // ledger's first block of lines ends.
        let mut text = String::new();
        for n in 1..=250 {
            text.push_str(if n == 3 { "\n" } else { "{}\n" });
        }
        let s = source_of(text.as_bytes());
        let chunks: Vec<(String, String, usize)> = std::iter::from_fn(|| {
            let m = s.read(CHUNK).unwrap();
            (!m.is_empty()).then(|| (m[0].id.clone(), m[m.len() - 1].id.clone(), m.len()))
        })
        .collect();
        let expected = [("t:1", "t:100", 99), ("t:101", "t:200", 100), ("t:201", "t:250", 50)];
        let expected: Vec<(String, String, usize)> = expected
            .iter()
            .map(|(a, b, n)| (a.to_string(), b.to_string(), *n))
            .collect();
        assert_eq!(chunks, expected);
        assert_eq!(CHUNK as u64, crate::sink::ledger::blocks::BLOCK_LINES);
    }

    #[test]
    fn unreadable_lines_are_messages_with_a_reason() {
        let mut text = b"{\"a\": \"\xff\"}\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES + 10));
        text.extend(b"\nok\n");
        let m = source_of(&text).read(10).unwrap();
        assert_eq!(m.len(), 3);
        assert!(
            m[0].unreadable.as_deref().unwrap().contains("not UTF-8"),
            "{:?}",
            m[0].unreadable
        );
        assert_eq!(m[1].body.len(), MAX_BODY_BYTES);
        assert!(
            m[1].unreadable
                .as_deref()
                .unwrap()
                .contains(&format!("line of {} bytes", MAX_BODY_BYTES + 10))
        );
        assert_eq!((m[2].id.as_str(), m[2].body.as_str()), ("t:3", "ok"));
    }
}
