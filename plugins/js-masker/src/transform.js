// The masking of a batch, column by column, as the Rust sha256-masker's transform.rs does
// it. The host's pseudonym import comes in as a function, so this runs under Node too.
//
// A 0.2 batch arrives as columns: { name, values: { tag, val }, missing }, `missing` a
// Uint32Array. masq sends strings packed: { tag: 'packed-text', val: { bytes, ends, nulls } }
// for text and { tag: 'packed-json', val: ... } for JSON (see packed.js). A packed column is
// passed on as it came or masked whole in one `pseudonymizePacked` call, never unpacked: only
// the version field's text is read value by value, and a JSON value's first byte where it
// must be named in a reason. Other typed columns ({ tag: 'integer', val: [...] }, 'boolean',
// 'float', and 'text' / 'json' lists, which masq no longer sends) hold a plain number,
// boolean, BigInt or string per record, `undefined` (or null) for none;
// a `mixed` column holds { tag, val } values. s64 and u64 are BigInt both ways, so integers
// written back must be BigInt. Crossing the sandbox costs per string and per value, so the
// answer's strings go back packed too: masked columns and the date column.

import { encode, encodeUtf8, VersionError } from './version.js';
import { floatDisplay } from './rust-text.js';
import { decode, forEachValue, pack, scatter } from './packed.js';

const KEEP = { tag: 'keep' };
const NONE = new Uint32Array(0);
const ALL_NULL = { tag: 'null' };
const OPEN_BRACKET = 0x5b; // '[': how a JSON array starts
const encoder = new TextEncoder();

/**
 * One outcome per record and the kept rows as columns; a rejected record lists every problem
 * found, each naming its field, in the batch's column order.
 */
export function transformBatch(settings, batch, pseudonymizePacked) {
  const n = batch.size;
  const reasons = new Array(n).fill(null);
  // A record without a required field is rejected for that alone, as 0.1 did: `skip` marks
  // those records, or is null when every record has every required field (the usual batch).
  const skip = missingRequired(settings, batch.columns, reasons);
  let rejected = skip !== null;
  const problem = (i, text) => {
    reasons[i] = reasons[i] === null ? text : `${reasons[i]}; ${text}`;
    rejected = true;
  };
  // The first pair for a source wins, as in the Rust policy.
  const maskTarget = new Map();
  for (const [source, target] of settings.mask) {
    if (!maskTarget.has(source)) maskTarget.set(source, target);
  }

  const out = [];
  for (const { name, values, missing } of batch.columns) {
    const absent = missing.length === 0 ? null : new Set(missing);
    // Whether record i's value counts: null when every record's does.
    const isPresent =
      skip === null && absent === null
        ? null
        : (i) => (skip === null || !skip[i]) && (absent === null || !absent.has(i));
    const target = maskTarget.get(name);
    if (settings.required.includes(name) && !settings.nullable.includes(name)) {
      for (const i of nullsOf(values, n)) {
        if (isPresent === null || isPresent(i)) problem(i, `field '${name}' is null and may not be`);
      }
    }
    if (name === settings.dateField) {
      continue; // set below from the message's send time, never from the body
    }
    // A packed text column, as masq sends one, is passed on or masked whole: no value is
    // unpacked. Only the version field reads its values one by one (below); masked, it is
    // masked here too, as masking takes any text.
    if (values.tag === 'packed-text' && (name !== settings.versionField || target !== undefined)) {
      const texts = values.val;
      if (target === undefined) {
        out.push({ name, values, missing }); // passed on as it came
      } else if (texts.nulls.length < texts.ends.length) {
        out.push({ name: target, values: { tag: 'packed-text', val: pseudonymizePacked(texts) }, missing });
      } else {
        out.push({ name: target, values, missing }); // a column of nulls only costs no call
      }
      continue;
    }
    // A packed JSON column is passed on as it came, unless its field must hold a string:
    // then every value present is wrong, and only its first byte is read, to name it.
    if (values.tag === 'packed-json') {
      if (target === undefined && name !== settings.versionField) {
        out.push({ name, values, missing });
        continue;
      }
      const why =
        target !== undefined
          ? `field '${name}' must be a string to be masked, got `
          : `field '${name}' must be a version string such as "2.3.0", got `;
      const { bytes } = values.val;
      forEachValue(values.val, isPresent, (i, start, end) => {
        problem(i, why + (end > start && bytes[start] === OPEN_BRACKET ? 'an array' : 'an object'));
      });
      out.push({ name: target ?? name, values: ALL_NULL, missing });
      continue;
    }
    if (target !== undefined) {
      // Not packed (mixed kinds, or no string at all): every text value present goes to the
      // host in one call, any other kind is wrong.
      const c = cells(values, n);
      const at = [];
      const raw = [];
      for (let i = 0; i < n; i++) {
        if (isPresent !== null && !isPresent(i)) continue;
        const [kind, v] = c[i];
        if (kind === 'text') {
          at.push(i);
          raw.push(v);
        } else if (kind !== null) {
          problem(i, `field '${name}' must be a string to be masked, got ${describe(kind, v)}`);
        }
      }
      const masked =
        raw.length === 0
          ? ALL_NULL
          : { tag: 'packed-text', val: scatter(pseudonymizePacked(pack(raw)), at, n) };
      out.push({ name: target, values: masked, missing });
      continue;
    }
    if (name === settings.versionField) {
      const encoded = versions(name, values, n, isPresent, problem);
      out.push({ name, values: { tag: 'integer', val: encoded }, missing });
      continue;
    }
    out.push({ name, values, missing }); // passed through as it came
  }
  if (settings.dateField !== null) {
    const texts = dates(batch.metadata, rejected ? reasons : null);
    out.push({ name: settings.dateField, values: { tag: 'packed-text', val: texts }, missing: NONE });
  }
  return {
    outcomes: rejected
      ? reasons.map((r) => (r === null ? KEEP : { tag: 'reject', val: r }))
      : new Array(n).fill(KEEP),
    columns: out,
  };
}

/** The records whose value is null (or that lack the field), ascending. */
function nullsOf(values, n) {
  switch (values.tag) {
    case 'packed-text':
    case 'packed-json':
      return values.val.nulls;
    case 'null':
      return Array.from({ length: n }, (_, i) => i);
    case 'mixed':
      return values.val.flatMap((v, i) => (v.tag === 'null' ? [i] : []));
    default:
      return values.val.flatMap((v, i) => (v == null ? [i] : []));
  }
}

/**
 * [kind, value] per record of a column that is not packed; kind null for JSON null or a
 * missing field.
 */
function cells(values, n) {
  switch (values.tag) {
    case 'null':
      return new Array(n).fill([null, null]);
    case 'mixed':
      return values.val.map((v) => (v.tag === 'null' ? [null, null] : [v.tag, v.val]));
    default:
      return values.val.map((v) => (v == null ? [null, null] : [values.tag, v]));
  }
}

/**
 * The version field's values encoded, one BigInt per record (`undefined` where there is
 * none or it is wrong); each wrong value is reported through `problem`. `isPresent` is
 * null when every record's value counts.
 */
function versions(name, values, n, isPresent, problem) {
  const encoded = new Array(n).fill(undefined);
  // A value read as a string (one of a packed column that encodeUtf8 refuses, or of a column
  // of another shape) is encoded once per batch, to a BigInt or the reason it is wrong.
  const seen = new Map();
  const encodeOnce = (v) => {
    let result = seen.get(v);
    if (result === undefined) {
      try {
        result = encode(v);
      } catch (why) {
        if (!(why instanceof VersionError)) throw why;
        result = `field '${name}': ${why.message}`;
      }
      seen.set(v, result);
    }
    return result;
  };
  if (values.tag === 'packed-text') {
    // Read straight from the bytes (as masq sends the column): a well-formed version is
    // encoded without becoming a string; only one that is not is decoded, to be named.
    const { bytes } = values.val;
    forEachValue(values.val, isPresent, (i, start, end) => {
      const number = encodeUtf8(bytes, start, end);
      const result = number >= 0 ? BigInt(number) : encodeOnce(decode(bytes, start, end));
      if (typeof result === 'bigint') encoded[i] = result;
      else problem(i, result);
    });
    return encoded;
  }
  const c = cells(values, n);
  for (let i = 0; i < n; i++) {
    if (isPresent !== null && !isPresent(i)) continue;
    const [kind, v] = c[i];
    if (kind === 'text') {
      const result = encodeOnce(v);
      if (typeof result === 'bigint') encoded[i] = result;
      else problem(i, result);
    } else if (kind !== null) {
      problem(i, `field '${name}' must be a version string such as "2.3.0", got ${describe(kind, v)}`);
    }
  }
  return encoded;
}

/**
 * The date column, packed: each kept record's UTC send date as `YYYY-MM-DD`, null for the
 * records `reasons` rejects (`reasons` null: none is). Records of a batch mostly share a day:
 * each day is formatted once, and the column's text is encoded in one go.
 */
function dates(metadata, reasons) {
  const n = metadata.length;
  const ends = new Uint32Array(n);
  const nulls = [];
  let text = '';
  let from = -1n; // the day formatted last, as its milliseconds [from, to)
  let to = -1n;
  let day = '';
  for (let i = 0; i < n; i++) {
    if (reasons !== null && reasons[i] !== null) {
      nulls.push(i);
    } else {
      const ms = metadata[i].sentTimestampMs;
      if (ms < from || ms >= to) {
        from = (ms / 86_400_000n) * 86_400_000n;
        to = from + 86_400_000n;
        day = utcDate(ms);
      }
      text += day; // ASCII: one byte per character
    }
    ends[i] = text.length;
  }
  return { bytes: encoder.encode(text), ends, nulls: nulls.length === 0 ? NONE : Uint32Array.from(nulls) };
}

/**
 * Rejects every record that lacks a required field, naming them all in settings order.
 * Returns which records it rejected, or null if none.
 */
function missingRequired(settings, columns, reasons) {
  const byName = new Map();
  for (const c of columns) if (!byName.has(c.name)) byName.set(c.name, c);
  const found = settings.required.map((name) => byName.get(name));
  if (found.every((c) => c !== undefined && c.missing.length === 0)) return null;
  const sets = found.map((c) => (c === undefined ? null : new Set(c.missing)));
  const skip = new Array(reasons.length).fill(false);
  for (let i = 0; i < reasons.length; i++) {
    const lacking = settings.required.filter((_, k) => sets[k] === null || sets[k].has(i));
    if (lacking.length > 0) {
      reasons[i] = `missing field(s): ${lacking.join(', ')}`;
      skip[i] = true;
    }
  }
  return skip;
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
