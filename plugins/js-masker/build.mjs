// Builds the js-masker component: node build.mjs <output.wasm> [<source.js> <wit dir>]
// (js-masker-0.1 passes its own source and the 0.1 contract, and shares this toolchain).
// Uses componentize-js's JS API because the `jco componentize` command fails on this kind of
// machine ("failed to get path metadata (os error 44)").

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const output = process.argv[2];
if (!output) {
  console.error('usage: node build.mjs <output.wasm> [<source.js> <wit dir>]');
  process.exit(2);
}

const { component } = await componentize({
  sourcePath: process.argv[3] ?? here('src/policy.js'),
  witPath: process.argv[4] ?? here('../../wit/v0.2'),
  // componentize-js imports every interface of its world, used or not, and a policy importing
  // `seal` is refused under `masq run --unkeyed`: this world is policy-plugin without `seal`.
  worldName: 'pseudonym-policy-plugin',
  // With every WASI feature off the component imports only masq's own interfaces, so it
  // cannot reach a clock, randomness or stdio even if a host links them.
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(output, component);
