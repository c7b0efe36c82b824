// Packed text columns (`texts` in the 0.2 contract), as the Rust sha256-masker's packed.rs
// reads them: every value's UTF-8 bytes back to back (`bytes`, a Uint8Array), one end offset
// per record (`ends`, a Uint32Array: a value starts where the previous one ended, the first at
// 0) and the indexes of the nulls, ascending (`nulls`, a Uint32Array); a null's value is empty.
// masq sends text and JSON columns this way: a column passed on, or masked whole with
// `pseudonymizePacked`, is never unpacked, which is what makes a batch cheap to move in and
// out of the sandbox. Columns built here are typed arrays too, which the generated glue
// copies into the sandbox's memory in one go (a plain Array is checked value by value).

// ignoreBOM: a value may start with U+FEFF, which Rust keeps and a default TextDecoder drops.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();
const NONE = new Uint32Array(0);

/** The string a packed column holds at `bytes[start..end]`. Bytes that are not UTF-8 throw. */
export function decode(bytes, start, end) {
  return decoder.decode(bytes.subarray(start, end));
}

/** One value per record (`undefined` or null for a null), packed. */
export function pack(values) {
  const parts = new Array(values.length);
  const ends = new Uint32Array(values.length);
  const nulls = [];
  let size = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v == null) {
      nulls.push(i);
    } else {
      parts[i] = encoder.encode(v);
      size += parts[i].length;
    }
    ends[i] = size;
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    if (p !== undefined) {
      bytes.set(p, at);
      at += p.length;
    }
  }
  return { bytes, ends, nulls: nulls.length === 0 ? NONE : Uint32Array.from(nulls) };
}

/**
 * A column of `n` records holding the k-th value of `texts` at record `at[k]` (`at`
 * ascending), every other record null. The values' bytes are taken as they are.
 */
export function scatter(texts, at, n) {
  const ends = new Uint32Array(n);
  const nulls = [];
  let k = 0;
  let end = 0;
  for (let i = 0; i < n; i++) {
    if (k < at.length && at[k] === i) end = texts.ends[k++];
    else nulls.push(i);
    ends[i] = end;
  }
  return { bytes: texts.bytes, ends, nulls: nulls.length === 0 ? NONE : Uint32Array.from(nulls) };
}

/**
 * Calls `f(i, start, end)` for each record `i` whose value is not null and for which
 * `counts(i)` holds (`counts` null: every record), its value being `bytes[start..end]`.
 */
export function forEachValue(texts, counts, f) {
  const { ends, nulls } = texts;
  let start = 0;
  let k = 0; // the next null
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i];
    if (k < nulls.length && nulls[k] === i) k++;
    else if (counts === null || counts(i)) f(i, start, end);
    start = end;
  }
}
