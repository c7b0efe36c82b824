// masq policy `js-masker`: the Rust sha256-masker's behaviour, written in JavaScript.
// Masks `ip` and `device_id` through the host's keyed SHA-256, encodes `app_version` as an
// integer and dates each row by the message's own send time. Holds no key, keeps no state
// between batches (masq gives every batch a fresh instance). Contract 0.2: the batch arrives
// as columns, strings packed; each masked column goes to the host whole in one
// `pseudonymizePacked` call, without being unpacked.

import { pseudonymizePacked } from 'masq:policy/pseudonym@0.2.0';
import { DESCRIPTIONS, POLICY_NAME, SettingsError, parse, pii, writes } from './settings.js';
import { transformBatch } from './transform.js';

// The Rust policy reports its crate version; this one keeps step with it so the ledger's
// (name, version) pairs line up across languages.
const VERSION = '0.1.0';

let settings = parse([]);

export const policy = {
  describe() {
    return {
      name: POLICY_NAME,
      version: VERSION,
      description:
        'Replaces each masked field (default ip -> masked_ip, device_id -> ' +
        "masked_device_id) with the host's keyed SHA-256 token, encodes app_version as " +
        'major*1000000 + minor*1000 + patch, sets create_date to the UTC date the ' +
        'message was sent; other fields pass through.',
      writes: writes(parse([])),
      settings: DESCRIPTIONS.map(([name, description, defaultValue]) => ({
        name,
        description,
        defaultValue,
      })),
    };
  },

  // A thrown string becomes the `err` of the WIT result; any other exception is a trap.
  configure(config) {
    try {
      settings = parse(config);
    } catch (why) {
      if (why instanceof SettingsError) throw why.message;
      throw why;
    }
    return { writes: writes(settings), pii: pii(settings) };
  },

  transform(batch) {
    return transformBatch(settings, batch, pseudonymizePacked);
  },
};
