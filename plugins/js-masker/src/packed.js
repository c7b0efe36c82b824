// Packed text columns (`texts` in the 0.2 contract), as the Rust sha256-masker's packed.rs
// reads them: every value's UTF-8 bytes back to back (`bytes`, a Uint8Array), one end offset
// per record (`ends`: a value starts where the previous one ended, the first at 0) and the
// indexes of the nulls, ascending (`nulls`); a null's value is empty. masq sends text and JSON
// columns this way: a column passed on, or masked whole with `pseudonymizePacked`, is never
// unpacked, which is what makes a batch cheap to move in and out of the sandbox.

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Each record's value as a string, `undefined` for a null. A column that is not UTF-8 throws. */
export function unpack(texts) {
  const { bytes, ends, nulls } = texts;
  const out = new Array(ends.length);
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    out[i] = decoder.decode(bytes.subarray(start, ends[i]));
    start = ends[i];
  }
  for (const i of nulls) out[i] = undefined;
  return out;
}

/** One value per record (`undefined` or null for a null), packed. */
export function pack(values) {
  const parts = values.map((v) => (v == null ? new Uint8Array(0) : encoder.encode(v)));
  const ends = new Uint32Array(values.length);
  const nulls = [];
  let size = 0;
  parts.forEach((p, i) => {
    size += p.length;
    ends[i] = size;
    if (values[i] == null) nulls.push(i);
  });
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, ends, nulls: new Uint32Array(nulls) };
}
