//! Packed text columns of contract 0.2 (`texts`: every value's UTF-8 bytes back to back, one
//! end offset per record, the nulls by index). masq sends text and JSON columns this way
//! because crossing the sandbox costs per string: one allocation inside the policy and one
//! check per value, where a packed column costs three lists. What comes back from a policy
//! is untrusted: `unpack` checks every offset and the UTF-8 before a value is read.

use super::contract_v02::masq::policy::types::Texts;

/// Packs one value per record (`None`: null or missing). `None` if the values do not fit
/// 32-bit offsets (4 GiB in one column): the caller sends that column unpacked.
pub fn pack<'a>(values: impl ExactSizeIterator<Item = Option<&'a str>>) -> Option<Texts> {
    let mut texts = Texts {
        bytes: Vec::new(),
        ends: Vec::with_capacity(values.len()),
        nulls: Vec::new(),
    };
    for (i, value) in values.enumerate() {
        match value {
            Some(v) => texts.bytes.extend_from_slice(v.as_bytes()),
            None => texts.nulls.push(i as u32),
        }
        texts.ends.push(u32::try_from(texts.bytes.len()).ok()?);
    }
    Some(texts)
}

/// Why a packed column cannot be read; names the fault, never a value.
#[derive(Debug, PartialEq)]
pub struct BadTexts(pub String);

/// A packed column checked: every value is valid UTF-8 and inside the bytes.
pub struct Checked<'a> {
    text: &'a str,
    ends: &'a [u32],
    nulls: &'a [u32],
}

/// Checks a packed column of `n` values from a policy: `n` ends, non-decreasing, the last
/// one the end of the bytes, each on a character boundary; nulls ascending, in range and
/// empty; the bytes UTF-8.
pub fn check(texts: &Texts, n: usize) -> Result<Checked<'_>, BadTexts> {
    if texts.ends.len() != n {
        return Err(BadTexts(format!(
            "{} ends for {n} values",
            texts.ends.len()
        )));
    }
    let text = std::str::from_utf8(&texts.bytes)
        .map_err(|e| BadTexts(format!("bytes are not UTF-8 at offset {}", e.valid_up_to())))?;
    let mut start = 0usize;
    for (i, &end) in texts.ends.iter().enumerate() {
        let end = end as usize;
        if end < start || end > text.len() || !text.is_char_boundary(end) {
            return Err(BadTexts(format!(
                "value {i} ends at {end}, not between {start} and {} on a character boundary",
                text.len()
            )));
        }
        start = end;
    }
    if start != text.len() {
        return Err(BadTexts(format!(
            "{} bytes after the last value",
            text.len() - start
        )));
    }
    let mut previous: Option<u32> = None;
    for &i in &texts.nulls {
        if (i as usize) >= n || previous.is_some_and(|p| p >= i) {
            return Err(BadTexts(format!(
                "null index {i} out of order or not below {n}"
            )));
        }
        let begin = if i == 0 {
            0
        } else {
            texts.ends[i as usize - 1]
        };
        if texts.ends[i as usize] != begin {
            return Err(BadTexts(format!("value {i} is null but not empty")));
        }
        previous = Some(i);
    }
    Ok(Checked {
        text,
        ends: &texts.ends,
        nulls: &texts.nulls,
    })
}

impl<'a> Checked<'a> {
    /// Each record's value in order, `None` for a null.
    pub fn values(&self) -> impl Iterator<Item = Option<&'a str>> + 'a {
        let (text, ends, mut nulls) = (self.text, self.ends, self.nulls.iter().peekable());
        let mut start = 0usize;
        ends.iter().enumerate().map(move |(i, &end)| {
            let end = end as usize;
            let value = &text[start..end];
            start = end;
            if nulls.next_if(|&&n| n as usize == i).is_some() {
                None
            } else {
                Some(value)
            }
        })
    }
}

/// Each value of a packed column masked by `token`, nulls kept: what `pseudonymize-packed`
/// and `seal-packed` answer. The tokens must fit in `limit` bytes (the policy's memory, where
/// they go): a column of millions of empty values would otherwise make the host allocate
/// gigabytes for an answer the policy cannot even receive.
pub fn map<E>(
    texts: &Texts,
    limit: usize,
    mut token: impl FnMut(&str) -> Result<String, E>,
) -> Result<Result<Texts, E>, BadTexts> {
    let checked = check(texts, texts.ends.len())?;
    let mut out = Texts {
        bytes: Vec::with_capacity(texts.ends.len() * 72),
        ends: Vec::with_capacity(texts.ends.len()),
        nulls: texts.nulls.clone(),
    };
    for value in checked.values() {
        if let Some(v) = value {
            match token(v) {
                Ok(t) => out.bytes.extend_from_slice(t.as_bytes()),
                Err(e) => return Ok(Err(e)),
            }
            if out.bytes.len() > limit {
                return Err(BadTexts(format!(
                    "its {} values' tokens take more than the policy's {limit} bytes of memory; mask the \
                     column in smaller parts",
                    texts.ends.len()
                )));
            }
        }
        match u32::try_from(out.bytes.len()) {
            Ok(end) => out.ends.push(end),
            Err(_) => {
                return Err(BadTexts(
                    "the tokens exceed 4 GiB; mask the column in smaller parts".into(),
                ));
            }
        }
    }
    Ok(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(bytes: &str, ends: &[u32], nulls: &[u32]) -> Texts {
        Texts {
            bytes: bytes.as_bytes().to_vec(),
            ends: ends.to_vec(),
            nulls: nulls.to_vec(),
        }
    }

    #[test]
    fn values_pack_and_read_back_with_their_nulls() {
        let values = [Some("a"), None, Some(""), Some("ünï ✓"), None];
        let packed = pack(values.iter().copied()).unwrap();
        assert_eq!(packed.nulls, [1, 4]);
        assert_eq!(packed.ends, [1, 1, 1, 10, 10]);
        let read: Vec<_> = check(&packed, 5).unwrap().values().collect();
        assert_eq!(read, values);
    }

    #[test]
    fn a_bad_column_is_refused_naming_the_fault_not_a_value() {
        let bad = |t: Texts, n: usize| check(&t, n).err().unwrap().0;
        assert_eq!(bad(texts("ab", &[1, 2], &[]), 3), "2 ends for 3 values");
        assert_eq!(
            bad(texts("ab", &[2, 1], &[]), 2),
            "value 1 ends at 1, not between 2 and 2 on a character boundary"
        );
        assert_eq!(
            bad(texts("ab", &[1, 3], &[]), 2),
            "value 1 ends at 3, not between 1 and 2 on a character boundary"
        );
        assert_eq!(
            bad(texts("ü", &[1, 2], &[]), 2),
            "value 0 ends at 1, not between 0 and 2 on a character boundary"
        );
        assert_eq!(
            bad(texts("abc", &[1, 2], &[]), 2),
            "1 bytes after the last value"
        );
        assert_eq!(
            bad(texts("ab", &[1, 2], &[1]), 2),
            "value 1 is null but not empty"
        );
        assert_eq!(
            bad(texts("a", &[1, 1, 1], &[2, 1]), 3),
            "null index 1 out of order or not below 3"
        );
        assert_eq!(
            bad(texts("a", &[1, 1], &[5]), 2),
            "null index 5 out of order or not below 2"
        );
        let not_utf8 = Texts {
            bytes: vec![b'a', 0xff],
            ends: vec![2],
            nulls: vec![],
        };
        assert_eq!(bad(not_utf8, 1), "bytes are not UTF-8 at offset 1");
    }

    #[test]
    fn masking_a_packed_column_keeps_nulls_and_order() {
        let packed = pack([Some("x"), None, Some("yz")].into_iter()).unwrap();
        let masked = map(&packed, 1 << 20, |v| Ok::<_, ()>(format!("<{v}>")))
            .unwrap()
            .unwrap();
        let read: Vec<_> = check(&masked, 3).unwrap().values().collect();
        assert_eq!(read, [Some("<x>"), None, Some("<yz>")]);
        assert_eq!(
            map(&packed, 1 << 20, |_| Err::<String, _>("no key")).unwrap(),
            Err("no key")
        );
        let many = pack(std::iter::repeat_n(Some(""), 1000)).unwrap();
        assert_eq!(
            map(&many, 4096, |v| Ok::<_, ()>(format!(
                "{v}{}",
                "t".repeat(64)
            )))
            .unwrap_err(),
            BadTexts(
                "its 1000 values' tokens take more than the policy's 4096 bytes of memory; \
                 mask the column in smaller parts"
                    .into()
            )
        );
    }
}
