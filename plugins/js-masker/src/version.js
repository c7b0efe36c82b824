// The integer encoding of `app_version`, as the Rust sha256-masker's version.rs defines it.
// `MAJOR.MINOR[.PATCH]` becomes MAJOR*1000000 + MINOR*1000 + PATCH; MINOR and PATCH below
// 1000 and MAJOR below 2147 keep the result inside PostgreSQL's `integer`.

/** Why a version string cannot be encoded; the message goes into the reject reason. */
export class VersionError extends Error {}

// Only ASCII digits: a Unicode-aware test would accept '２', which Rust refuses.
const DECIMAL = /^[0-9]{1,9}$/;

/** Encodes a version string as a BigInt (WIT s64), or throws VersionError saying why not. */
export function encode(version) {
  const parts = version.split('.');
  if (parts.length > 3) {
    throw new VersionError(`'${version}' is not MAJOR.MINOR or MAJOR.MINOR.PATCH`);
  }
  const numbers = [0, 0, 0];
  parts.forEach((part, i) => {
    if (!DECIMAL.test(part)) {
      throw new VersionError(
        `'${version}' is not MAJOR.MINOR or MAJOR.MINOR.PATCH with decimal numbers`,
      );
    }
    numbers[i] = Number(part);
  });
  const [major, minor, patch] = numbers;
  if (major > 2146 || minor > 999 || patch > 999) {
    throw new VersionError(
      `'${version}' is out of range for the integer encoding (major < 2147, minor and patch < 1000)`,
    );
  }
  return BigInt(major * 1_000_000 + minor * 1_000 + patch);
}

/**
 * `encode` of a version read from UTF-8 bytes (`bytes[start..end]`), as a Number, or -1 if
 * `encode` would refuse it: the caller then decodes the string and asks `encode` why. Saves
 * making a string of every value of a packed column.
 */
export function encodeUtf8(bytes, start, end) {
  let major = 0;
  let minor = 0;
  let part = 0; // which part is being read: 0 MAJOR, 1 MINOR, 2 PATCH
  let number = 0;
  let digits = 0;
  for (let j = start; j < end; j++) {
    const b = bytes[j];
    if (b === 0x2e) {
      // '.': ends a part, which must have a digit; a fourth part is one too many.
      if (digits === 0 || part === 2) return -1;
      if (part === 0) major = number;
      else minor = number;
      part++;
      number = 0;
      digits = 0;
    } else {
      // Only ASCII digits, at most nine (any byte of a multi-byte character is above '9').
      if (b < 0x30 || b > 0x39 || digits === 9) return -1;
      number = number * 10 + (b - 0x30);
      digits++;
    }
  }
  if (digits === 0) return -1;
  let patch = 0;
  if (part === 0) major = number;
  else if (part === 1) minor = number;
  else patch = number;
  if (major > 2146 || minor > 999 || patch > 999) return -1;
  return major * 1_000_000 + minor * 1_000 + patch;
}
