//! `masq keygen` (a new key file, or a rotation) and `masq reveal`: sealed tokens back into the
//! values a policy sealed, for people allowed to see them. Revealing is all or nothing: every
//! token is revealed before anything is printed, so a wrong key or a bad token never leaves
//! part of an answer on the screen or in a pipe.

use crate::keys::{KeyRing, RevealError};
use anyhow::bail;
use std::io::{BufRead, Write};
use std::path::Path;

/// What `masq reveal` prints: one line per input token, in input order.
pub fn reveal_all(
    ring: &KeyRing,
    key_file: &Path,
    tokens: &[String],
    json: bool,
) -> anyhow::Result<String> {
    let mut failures: Vec<(usize, &str, RevealError)> = Vec::new();
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        let token = token.trim();
        // An empty line (a NULL column in `psql -At` output) stays an empty line, so the
        // output lines up with the input.
        if token.is_empty() {
            out.push('\n');
            continue;
        }
        match ring.reveal(token) {
            Ok(value) if json => {
                out.push_str(&serde_json::to_string(&value).expect("a string always serialises"));
                out.push('\n');
            }
            Ok(value) if value.contains(['\n', '\r']) => bail!(
                "token {} of {} (key id '{}') holds a line break, which would break the one value \
                 per line output: run again with --json",
                i + 1,
                tokens.len(),
                token.split_once('.').map_or("", |(id, _)| id)
            ),
            Ok(value) => {
                out.push_str(&value);
                out.push('\n');
            }
            Err(e) => failures.push((i + 1, token, e)),
        }
    }
    let Some((position, token, first)) = failures.first() else {
        return Ok(out);
    };
    let ids = ring.ids().join(", ");
    let which = match first.key_id() {
        Some(id) => format!("token {position} of {} (key id '{id}')", tokens.len()),
        None => format!(
            "token {position} of {} ('{}')",
            tokens.len(),
            shorten(token)
        ),
    };
    let next = match first {
        RevealError::UnknownKey(_) => format!(
            "; key file {} holds {ids}: reveal with the key file that sealed it (a rotated file \
             keeps its older keys)",
            key_file.display()
        ),
        RevealError::NotAuthentic(_) => format!(
            "; checked with key file {}: use the key file of the masq run that wrote the token",
            key_file.display()
        ),
        // The key file plays no part: the token is not one masq sealed.
        RevealError::Malformed(_) => String::new(),
    };
    let others = match failures.len() {
        1 => String::new(),
        n => format!(" {} of {} tokens failed in all.", n, tokens.len()),
    };
    bail!("cannot reveal {which}: {first}{next}. Nothing was printed.{others}")
}

/// The tokens to reveal: the arguments, or else one per line of `input`.
pub fn tokens_from(args: Vec<String>, input: impl BufRead) -> anyhow::Result<Vec<String>> {
    if !args.is_empty() {
        return Ok(args);
    }
    let mut tokens = Vec::new();
    for line in input.lines() {
        tokens.push(
            line.map_err(|e| anyhow::anyhow!("cannot read tokens from standard input: {e}"))?,
        );
    }
    Ok(tokens)
}

/// `masq keygen [--add-to FILE]`: a new key file on stdout, or a new active key added to an
/// existing file (its id on stdout, what was kept on stderr).
pub fn keygen(add_to: Option<&Path>) -> anyhow::Result<()> {
    match add_to {
        None => print!("{}", crate::keys::KeyFile::generate()?.to_json()),
        Some(path) => {
            let (id, kept) = crate::keys::add_key(path)?;
            eprintln!(
                "added key {id} to {} as the active key; kept {} for revealing older tokens. \
                 A running masq picks it up by itself",
                path.display(),
                kept.join(", ")
            );
            println!("{id}");
        }
    }
    Ok(())
}

/// `masq reveal --key-file FILE [TOKEN...]`.
pub fn reveal(key_file: &Path, args: Vec<String>, json: bool) -> anyhow::Result<()> {
    let ring = KeyRing::load(key_file)?;
    let tokens = tokens_from(args, std::io::stdin().lock())?;
    let out = reveal_all(&ring, key_file, &tokens, json)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| anyhow::anyhow!("cannot write the revealed values to standard output: {e}"))
}

/// A token as quoted in an error: tokens are not secret, but a line of garbage can be long.
fn shorten(token: &str) -> String {
    match token.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &token[..end]),
        None => token.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyFile;
    use base64::Engine as _;
    use std::collections::BTreeMap;

    struct Ring {
        ring: KeyRing,
        path: std::path::PathBuf,
    }

    impl Drop for Ring {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn ring(keys: &[(&str, u8)], active: &str) -> Ring {
        let keys: BTreeMap<String, String> = keys
            .iter()
            .map(|(id, b)| {
                (
                    id.to_string(),
                    base64::engine::general_purpose::STANDARD.encode([*b; 32]),
                )
            })
            .collect();
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).unwrap();
        let path = std::env::temp_dir().join(format!("masq-reveal-{}.key", hex::encode(suffix)));
        std::fs::write(
            &path,
            KeyFile {
                active: active.into(),
                keys,
            }
            .to_json(),
        )
        .unwrap();
        Ring {
            ring: KeyRing::load(&path).unwrap(),
            path,
        }
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reveals_in_input_order_with_blank_lines_kept() {
        let r = ring(&[("k1", 1)], "k1");
        let tokens = vec![
            r.ring.seal("10.0.0.1"),
            String::new(),
            r.ring.seal("593-47-5928"),
            r.ring.seal("10.0.0.1"),
        ];
        let out = reveal_all(&r.ring, &r.path, &tokens, false).unwrap();
        assert_eq!(out, "10.0.0.1\n\n593-47-5928\n10.0.0.1\n");
    }

    #[test]
    fn line_breaks_need_json() {
        let r = ring(&[("k1", 1)], "k1");
        let tokens = vec![r.ring.seal("a\nb"), r.ring.seal("plain")];
        let err = reveal_all(&r.ring, &r.path, &tokens, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--json") && err.contains("token 1 of 2"),
            "{err}"
        );
        assert_eq!(
            reveal_all(&r.ring, &r.path, &tokens, true).unwrap(),
            "\"a\\nb\"\n\"plain\"\n"
        );
    }

    #[test]
    fn a_wrong_key_names_the_key_id_and_file_and_prints_nothing() {
        let right = ring(&[("k1", 1)], "k1");
        let wrong = ring(&[("k1", 2)], "k1");
        let tokens = vec![right.ring.seal("10.0.0.1"), right.ring.seal("10.0.0.2")];
        let err = reveal_all(&wrong.ring, &wrong.path, &tokens, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("token 1 of 2 (key id 'k1')"), "{err}");
        assert!(err.contains(&wrong.path.display().to_string()), "{err}");
        assert!(
            err.contains("does not authenticate") && err.contains("2 of 2 tokens failed"),
            "{err}"
        );
        assert!(!err.contains("10.0.0"), "{err}");
    }

    #[test]
    fn an_unknown_key_id_lists_the_ids_the_file_holds() {
        let old = ring(&[("old", 1)], "old");
        let other = ring(&[("k1", 2), ("k2", 3)], "k2");
        let tokens = vec![other.ring.seal("fine"), old.ring.seal("10.0.0.1")];
        let err = reveal_all(&other.ring, &other.path, &tokens, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token 2 of 2 (key id 'old')") && err.contains("not in the key file"),
            "{err}"
        );
        assert!(err.contains("holds k1, k2"), "{err}");
        assert!(!err.contains("fine"), "{err}");
    }

    #[test]
    fn foreign_tokens_are_quoted_shortened() {
        let r = ring(&[("k1", 1)], "k1");
        let long = "x".repeat(100);
        let err = reveal_all(&r.ring, &r.path, &strings(&[&long]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("'{}...'", "x".repeat(40))) && !err.contains(&long),
            "{err}"
        );
        let err = reveal_all(&r.ring, &r.path, &[r.ring.pseudonym("x")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("one-way"), "{err}");
    }

    #[test]
    fn tokens_come_from_arguments_or_else_stdin_lines() {
        assert_eq!(
            tokens_from(strings(&["a", "b"]), &b"ignored\n"[..]).unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            tokens_from(Vec::new(), &b"a\r\n\nb\n"[..]).unwrap(),
            ["a", "", "b"]
        );
    }
}
