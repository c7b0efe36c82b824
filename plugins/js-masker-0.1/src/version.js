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
