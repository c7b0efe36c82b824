// Builds the js-masker component: node build.mjs <output.wasm>
// Uses componentize-js's JS API because the `jco componentize` command fails on this kind of
// machine ("failed to get path metadata (os error 44)").

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const output = process.argv[2];
if (!output) {
  console.error('usage: node build.mjs <output.wasm>');
  process.exit(2);
}

const { component } = await componentize({
  sourcePath: here('src/policy.js'),
  witPath: here('../../wit'),
  // componentize-js imports every interface of its world, used or not, and a policy importing
  // `seal` is refused under `masq run --unkeyed`: this world is policy-plugin without `seal`.
  worldName: 'pseudonym-policy-plugin',
  // With every WASI feature off the component imports only masq's own interfaces, so it
  // cannot reach a clock, randomness or stdio even if a host links them.
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(output, component);
