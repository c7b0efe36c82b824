//! Packed text columns (`texts` in the 0.2 contract): every value's UTF-8 bytes back to back,
//! one end offset per record, the nulls by index. masq sends text and JSON columns this way;
//! a column passed on or masked whole is never unpacked, which is what makes a batch cheap
//! to move in and out of the sandbox.

use crate::masq::policy::types::Texts;

/// Packs one value per record; `None` is null.
pub fn pack<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Texts {
    let mut texts = Texts {
        bytes: Vec::new(),
        ends: Vec::new(),
        nulls: Vec::new(),
    };
    for (i, value) in values.into_iter().enumerate() {
        push(&mut texts, i, value);
    }
    texts
}

/// Appends record `i`'s value to a packed column being built.
pub fn push(texts: &mut Texts, i: usize, value: Option<&str>) {
    match value {
        Some(v) => texts.bytes.extend_from_slice(v.as_bytes()),
        None => texts.nulls.push(i as u32),
    }
    texts.ends.push(texts.bytes.len() as u32);
}

/// Each record's value in order, `None` for a null. masq checks what it packs; a column that
/// is not UTF-8 or whose offsets run past its bytes traps here, which fails the batch.
pub fn values(texts: &Texts) -> impl Iterator<Item = Option<&str>> {
    let mut nulls = texts.nulls.iter().peekable();
    let mut start = 0usize;
    texts.ends.iter().enumerate().map(move |(i, &end)| {
        let end = end as usize;
        let bytes = &texts.bytes[start..end];
        start = end;
        if nulls.next_if(|&&n| n as usize == i).is_some() {
            None
        } else {
            Some(std::str::from_utf8(bytes).expect("masq packs text columns as UTF-8"))
        }
    })
}

/// A packed column with every value replaced by `f` of it, nulls kept: what the host's
/// `pseudonymize-packed` does, for the native build and the tests.
pub fn map(texts: &Texts, mut f: impl FnMut(&str) -> String) -> Texts {
    pack(
        values(texts)
            .map(|v| v.map(&mut f))
            .collect::<Vec<_>>()
            .iter()
            .map(|v| v.as_deref()),
    )
}
