// The masking of one record, as the Rust sha256-masker's transform.rs does it. The host's
// pseudonym import comes in as a function, so this runs under Node too.
//
// Values are WIT variants as componentize-js passes them: { tag: 'text', val: '...' }.
// s64 and u64 are BigInt both ways, so integers written back must be BigInt.

import { encode, VersionError } from '../../js-masker/src/version.js';
import { floatDisplay } from '../../js-masker/src/rust-text.js';

/** Masks one record, or rejects it with every problem found, each naming its field. */
export function transformRecord(settings, record, pseudonymize) {
  const fields = record.fields;
  const present = new Set(fields.map((field) => field.name));
  const missing = settings.required.filter((name) => !present.has(name));
  if (missing.length > 0) {
    return { tag: 'reject', val: `missing field(s): ${missing.join(', ')}` };
  }

  // The first pair for a source wins, as in the Rust policy.
  const maskTarget = new Map();
  for (const [source, target] of settings.mask) {
    if (!maskTarget.has(source)) maskTarget.set(source, target);
  }
  const problems = [];
  const out = [];
  for (const { name, value } of fields) {
    if (value.tag === 'null' && settings.required.includes(name) && !settings.nullable.includes(name)) {
      problems.push(`field '${name}' is null and may not be`);
      continue;
    }
    if (name === settings.dateField) {
      continue; // set below from the message's send time, never from the body
    }
    if (maskTarget.has(name)) {
      const target = maskTarget.get(name);
      if (value.tag === 'text') {
        out.push({ name: target, value: { tag: 'text', val: pseudonymize(value.val) } });
      } else if (value.tag === 'null') {
        out.push({ name: target, value: { tag: 'null' } });
      } else {
        problems.push(`field '${name}' must be a string to be masked, got ${kind(value)}`);
      }
      continue;
    }
    if (name === settings.versionField) {
      if (value.tag === 'text') {
        try {
          out.push({ name, value: { tag: 'integer', val: encode(value.val) } });
        } catch (why) {
          if (!(why instanceof VersionError)) throw why;
          problems.push(`field '${name}': ${why.message}`);
        }
      } else if (value.tag === 'null') {
        out.push({ name, value: { tag: 'null' } });
      } else {
        problems.push(`field '${name}' must be a version string such as "2.3.0", got ${kind(value)}`);
      }
      continue;
    }
    out.push({ name, value });
  }
  if (problems.length > 0) {
    return { tag: 'reject', val: problems.join('; ') };
  }
  if (settings.dateField !== null) {
    out.push({
      name: settings.dateField,
      value: { tag: 'text', val: utcDate(record.metadata.sentTimestampMs) },
    });
  }
  return { tag: 'keep', val: out };
}

/** How a wrong value is named in a reason, worded as the Rust policy words it. */
export function kind(value) {
  switch (value.tag) {
    case 'null':
      return 'null';
    case 'boolean':
      return `boolean ${value.val}`;
    case 'integer':
      return `integer ${value.val}`;
    case 'float':
      return `number ${floatDisplay(value.val)}`;
    case 'text':
      return 'string';
    default:
      return value.val.startsWith('[') ? 'an array' : 'an object';
  }
}

/** `YYYY-MM-DD` of a Unix time in milliseconds (BigInt), UTC, proleptic Gregorian calendar. */
export function utcDate(ms) {
  // Howard Hinnant's days-to-civil in BigInt, as in the Rust policy: a Date stops at year
  // 275760, and Numbers lose whole milliseconds above 2^53. All operands are non-negative,
  // so BigInt's truncating division is Rust's floor division here.
  const days = ms / 86_400_000n;
  const z = days + 719_468n;
  const era = z / 146_097n;
  const doe = z - era * 146_097n;
  const yoe = (doe - doe / 1460n + doe / 36_524n - doe / 146_096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const day = doy - (153n * mp + 2n) / 5n + 1n;
  const month = mp < 10n ? mp + 3n : mp - 9n;
  const year = yoe + era * 400n + (month <= 2n ? 1n : 0n);
  const pad = (n, width) => String(n).padStart(width, '0');
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`;
}
