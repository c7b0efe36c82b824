// The masker's settings, parsed from the operator's `--policy-config key=value` pairs.
// Names, descriptions, defaults and error texts are those of the Rust sha256-masker's
// settings.rs, so operators see one policy whichever language it was built from.

import { trim } from './rust-text.js';

export const POLICY_NAME = 'js-masker';

/** [name, description, default] of every setting, as `describe` reports them. */
export const DESCRIPTIONS = [
  [
    'mask',
    'Comma-separated source:target pairs. Each source field is replaced by a token from ' +
      "the host's pseudonym import, written to target; the source field is not written.",
    'ip:masked_ip,device_id:masked_device_id',
  ],
  [
    'required',
    'Comma-separated fields every record must have; a record without one is rejected.',
    'user_id,app_version,device_type,ip,locale,device_id',
  ],
  [
    'nullable',
    'Comma-separated required fields that may be null; null is written as SQL NULL.',
    'locale',
  ],
  [
    'version-field',
    'Field holding a MAJOR.MINOR[.PATCH] string, rewritten as the integer ' +
      'MAJOR*1000000 + MINOR*1000 + PATCH. Empty to turn off.',
    'app_version',
  ],
  [
    'date-field',
    'Field set to the UTC date (YYYY-MM-DD) the message was sent. Empty to turn off.',
    'create_date',
  ],
];

/** A bad setting; the message names the key and is returned from `configure` as the error. */
export class SettingsError extends Error {}

const list = (value) => value.split(',').map(trim).filter((item) => item !== '');

const optional = (value) => trim(value) || null;

/**
 * Parses the operator's [key, value] pairs over the defaults; throws SettingsError naming
 * the key. Returns { mask: [[source, target]], required, nullable, versionField, dateField }.
 */
export function parse(config) {
  const known = DESCRIPTIONS.map(([name]) => name);
  for (const [key] of config) {
    if (!known.includes(key)) {
      throw new SettingsError(`unknown setting '${key}': ${POLICY_NAME} takes ${known.join(', ')}`);
    }
  }
  // The last pair for a key wins, as in the Rust policy.
  const valueOf = (key) => {
    const given = config.findLast(([k]) => k === key);
    return given ? given[1] : DESCRIPTIONS.find(([name]) => name === key)[2];
  };

  const mask = [];
  for (const pair of list(valueOf('mask'))) {
    const colon = pair.indexOf(':');
    if (colon < 0) {
      throw new SettingsError(`setting 'mask': '${pair}' is not source:target, e.g. ip:masked_ip`);
    }
    const source = trim(pair.slice(0, colon));
    const target = trim(pair.slice(colon + 1));
    if (source === '' || target === '') {
      throw new SettingsError(`setting 'mask': '${pair}' has an empty field name`);
    }
    if (source === target) {
      throw new SettingsError(
        `setting 'mask': '${pair}' writes the token under the raw field's own name; ` +
          `pick a target such as masked_${source}`,
      );
    }
    mask.push([source, target]);
  }
  const required = list(valueOf('required'));
  const nullable = list(valueOf('nullable'));
  const stray = nullable.find((name) => !required.includes(name));
  if (stray !== undefined) {
    throw new SettingsError(
      `setting 'nullable': '${stray}' is not in 'required'; only required fields need a null rule`,
    );
  }
  return {
    mask,
    required,
    nullable,
    versionField: optional(valueOf('version-field')),
    dateField: optional(valueOf('date-field')),
  };
}

/** The fields a configuration can write, in the Rust policy's order. */
export function writes(settings) {
  const masked = settings.mask.map(([source]) => source);
  const out = settings.required.filter((name) => !masked.includes(name));
  out.push(...settings.mask.map(([, target]) => target));
  if (settings.dateField !== null) out.push(settings.dateField);
  return out;
}
