// Text rules of Rust's standard library that the Rust sha256-masker's messages follow.
// The JS policy must match it character for character, and JavaScript's own rules differ at
// the edges: String.prototype.trim also strips U+FEFF, and String(1e21) is "1e+21" where
// Rust writes "1000000000000000000000".

// Rust's `char::is_whitespace`: the Unicode White_Space property.
const RUST_WHITESPACE = new Set(
  '\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007' +
    '\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000',
);

/** Rust's `str::trim`. */
export function trim(text) {
  let start = 0;
  let end = text.length;
  while (start < end && RUST_WHITESPACE.has(text[start])) start++;
  while (end > start && RUST_WHITESPACE.has(text[end - 1])) end--;
  return text.slice(start, end);
}

/** Rust's `format!("{}", f64)`: the shortest digits that read back exactly, never an exponent. */
export function floatDisplay(number) {
  if (Number.isNaN(number)) return 'NaN';
  if (number === Infinity) return 'inf';
  if (number === -Infinity) return '-inf';
  // String(number) has the same shortest round-trip digits as Rust; only the layout differs.
  // It drops the sign of -0, which Rust keeps.
  const sign = number < 0 || Object.is(number, -0) ? '-' : '';
  const [mantissa, exponent = '0'] = String(Math.abs(number)).split('e');
  const [whole, fraction = ''] = mantissa.split('.');
  const digits = whole + fraction;
  const point = whole.length + Number(exponent);
  let plain;
  if (point <= 0) plain = '0.' + '0'.repeat(-point) + digits;
  else if (point >= digits.length) plain = digits + '0'.repeat(point - digits.length);
  else plain = digits.slice(0, point) + '.' + digits.slice(point);
  if (plain.includes('.')) plain = plain.replace(/0+$/, '').replace(/\.$/, '');
  plain = plain.replace(/^0+/, '');
  if (plain === '' || plain.startsWith('.')) plain = '0' + plain;
  return sign + plain;
}
