"""Packed text columns (`texts` in the 0.2 contract), as the Rust sha256-masker's packed.rs reads them.

A packed column is every value's UTF-8 bytes back to back, one end offset per record (a value
starts where the previous one ended, the first at 0) and the indexes of the nulls, ascending;
a null's value is empty. masq sends text and JSON columns this way: a column passed on or
masked whole with `pseudonymize-packed` is never unpacked, which is what makes a batch cheap
to move in and out of the sandbox. Only the columns whose values the policy reads one by one
are cut up here: the version field into byte slices (`slices`), a JSON column to be masked or
encoded into strings (`unpack`).
"""

from itertools import accumulate
from typing import Iterable, List, Optional

from wit_world.imports.types import Texts


def slices(texts: Texts) -> List[Optional[bytes]]:
    """Each record's value as its UTF-8 bytes, None for a null: one slice per value, nothing
    decoded."""
    data, ends = texts.bytes, texts.ends
    starts = [0]
    starts += ends[:-1]
    values = [data[start:end] for start, end in zip(starts, ends)]
    for i in texts.nulls:
        values[i] = None
    return values


def unpack(texts: Texts) -> List[Optional[str]]:
    """Each record's value as a string, None for a null. masq checks what it packs; a column
    that is not UTF-8 raises here, which fails the batch."""
    return [None if v is None else v.decode() for v in slices(texts)]


def pack(values: Iterable[Optional[str]]) -> Texts:
    """One value per record, None for a null, packed."""
    parts = []
    nulls = []
    for i, value in enumerate(values):
        if value is None:
            nulls.append(i)
            parts.append(b"")
        else:
            parts.append(value.encode())
    return Texts(b"".join(parts), list(accumulate(map(len, parts))), nulls)


def repeat(value: str, n: int) -> Texts:
    """The same value for each of n records: one bytes product, no per-record work."""
    data = value.encode()
    size = len(data)
    return Texts(data * n, list(range(size, size * n + 1, size)) if size else [0] * n, [])
