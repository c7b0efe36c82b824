// The masking of a batch, column by column, as the Rust sha256-masker's transform.rs does
// it. The host's pseudonym import comes in as a function, so this runs under Node too.
//
// A 0.2 batch arrives as columns: { name, values: { tag, val }, missing }. Strings come packed
// ({ tag: 'packed-text', val: { bytes, ends, nulls } }, see packed.js): such a column is
// passed on as it came or masked whole in one `pseudonymizePacked` call, never unpacked; only
// the version field and columns of other shapes are read value by value. A value of another
// typed column is a plain number, boolean or BigInt, `undefined` (or null) for none; a `mixed`
// column holds { tag, val } values. s64 and u64 are BigInt both ways, so integers written back
// must be BigInt.

import { encode, VersionError } from './version.js';
import { floatDisplay } from './rust-text.js';
import { pack, unpack } from './packed.js';

const TYPED = new Set(['boolean', 'integer', 'float', 'text', 'json']);
const KEEP = { tag: 'keep' };

/** [kind, value] per record; kind null for JSON null or a missing field. */
function cells(values, n) {
  if (values.tag === 'null') return new Array(n).fill([null, null]);
  if (values.tag === 'packed-text' || values.tag === 'packed-json') {
    const kind = values.tag === 'packed-text' ? 'text' : 'json';
    return unpack(values.val).map((v) => (v === undefined ? [null, null] : [kind, v]));
  }
  if (values.tag === 'mixed') {
    return values.val.map((v) => (v.tag === 'null' ? [null, null] : [v.tag, v.val]));
  }
  return values.val.map((v) => (v == null ? [null, null] : [values.tag, v]));
}

/**
 * One outcome per record and the kept rows as columns; a rejected record lists every problem
 * found, each naming its field, in the batch's column order.
 */
export function transformBatch(settings, batch, pseudonymizePacked) {
  const n = batch.size;
  const reasons = new Array(n).fill(null);
  missingRequired(settings, batch.columns, reasons);
  const skip = reasons.map((r) => r !== null);
  const problem = (i, text) => {
    reasons[i] = reasons[i] === null ? text : `${reasons[i]}; ${text}`;
  };
  // The first pair for a source wins, as in the Rust policy.
  const maskTarget = new Map();
  for (const [source, target] of settings.mask) {
    if (!maskTarget.has(source)) maskTarget.set(source, target);
  }

  const out = [];
  for (const { name, values, missing } of batch.columns) {
    const absent = new Set(missing);
    const isPresent = (i) => !skip[i] && !absent.has(i);
    const notNull = settings.required.includes(name) && !settings.nullable.includes(name);
    // A packed text column, as masq sends one, is passed on or masked whole: no value is
    // unpacked. Only the version field reads its values one by one (below).
    if (values.tag === 'packed-text' && name !== settings.versionField) {
      const texts = values.val;
      if (notNull) {
        for (const i of texts.nulls) if (isPresent(i)) problem(i, `field '${name}' is null and may not be`);
      }
      if (name === settings.dateField) continue; // set below from the message's send time
      if (maskTarget.has(name)) {
        // A column of nulls only costs no call.
        const masked = texts.nulls.length < texts.ends.length ? pseudonymizePacked(texts) : texts;
        out.push({ name: maskTarget.get(name), values: { tag: 'packed-text', val: masked }, missing });
      } else {
        out.push({ name, values, missing }); // passed on as it came
      }
      continue;
    }
    const present = [];
    for (let i = 0; i < n; i++) if (isPresent(i)) present.push(i);
    const typed = TYPED.has(values.tag);
    if (notNull) {
      if (typed) {
        for (const i of present) if (values.val[i] == null) problem(i, `field '${name}' is null and may not be`);
      } else {
        const c = cells(values, n);
        for (const i of present) if (c[i][0] === null) problem(i, `field '${name}' is null and may not be`);
      }
    }
    if (name === settings.dateField) {
      continue; // set below from the message's send time, never from the body
    }
    if (maskTarget.has(name)) {
      const at = [];
      const raw = [];
      if (values.tag === 'text') {
        for (const i of present) {
          const v = values.val[i];
          if (v != null) {
            at.push(i);
            raw.push(v);
          }
        }
      } else {
        const c = cells(values, n);
        for (const i of present) {
          const [kind, v] = c[i];
          if (kind === 'text') {
            at.push(i);
            raw.push(v);
          } else if (kind !== null) {
            problem(i, `field '${name}' must be a string to be masked, got ${describe(kind, v)}`);
          }
        }
      }
      const masked = new Array(n).fill(undefined);
      if (raw.length > 0) {
        const tokens = unpack(pseudonymizePacked(pack(raw)));
        for (let k = 0; k < at.length; k++) masked[at[k]] = tokens[k];
      }
      out.push({ name: maskTarget.get(name), values: { tag: 'text', val: masked }, missing });
      continue;
    }
    if (name === settings.versionField) {
      const encoded = new Array(n).fill(undefined);
      const c = cells(values, n);
      // A batch holds few distinct versions: each is encoded once.
      const seen = new Map();
      for (const i of present) {
        const [kind, v] = c[i];
        if (kind === 'text') {
          let result = seen.get(v);
          if (result === undefined) {
            try {
              result = [encode(v), null];
            } catch (why) {
              if (!(why instanceof VersionError)) throw why;
              result = [undefined, `field '${name}': ${why.message}`];
            }
            seen.set(v, result);
          }
          encoded[i] = result[0];
          if (result[1] !== null) problem(i, result[1]);
        } else if (kind !== null) {
          problem(i, `field '${name}' must be a version string such as "2.3.0", got ${describe(kind, v)}`);
        }
      }
      out.push({ name, values: { tag: 'integer', val: encoded }, missing });
      continue;
    }
    out.push({ name, values, missing }); // passed through as it came
  }
  if (settings.dateField !== null) {
    // Records of a batch mostly share a day: each day is formatted once.
    const days = new Map();
    const dates = batch.metadata.map((m, i) => {
      if (reasons[i] !== null) return undefined;
      const day = m.sentTimestampMs / 86_400_000n;
      let text = days.get(day);
      if (text === undefined) {
        text = utcDate(m.sentTimestampMs);
        days.set(day, text);
      }
      return text;
    });
    out.push({ name: settings.dateField, values: { tag: 'text', val: dates }, missing: [] });
  }
  return {
    outcomes: reasons.map((r) => (r === null ? KEEP : { tag: 'reject', val: r })),
    columns: out,
  };
}

/** Rejects every record that lacks a required field, naming them all in settings order. */
function missingRequired(settings, columns, reasons) {
  const byName = new Map();
  for (const c of columns) if (!byName.has(c.name)) byName.set(c.name, c);
  const found = settings.required.map((name) => byName.get(name));
  if (found.every((c) => c !== undefined && c.missing.length === 0)) return;
  const sets = found.map((c) => (c === undefined ? null : new Set(c.missing)));
  for (let i = 0; i < reasons.length; i++) {
    const lacking = settings.required.filter((_, k) => sets[k] === null || sets[k].has(i));
    if (lacking.length > 0) reasons[i] = `missing field(s): ${lacking.join(', ')}`;
  }
}

/** How a wrong value is named in a reason, worded as the Rust policy words it. */
function describe(kind, value) {
  return kind === null ? 'null' : kindOf({ tag: kind, val: value });
}

/** How a wrong value is named in a reason, worded as the Rust policy words it. */
export function kindOf(value) {
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
