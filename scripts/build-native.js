#!/usr/bin/env node
// Builds the optional native kernels (build/Release/diffuse_native.node) with node-gyp, which npm puts
// on PATH for its scripts. Where that fails (no C compiler, no OpenBLAS headers), diffuse still works
// on the portable backends, so this says why in one line and exits 0, unless DIFFUSE_REQUIRE_NATIVE is
// set (CI), when it fails. `--if-stale` builds only when the addon is missing or was built from other
// sources than the checkout's.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { ADDON, builtHash, sourcesHash, writeStamp } = require('../native/sources');

if (process.argv.includes('--if-stale') && fs.existsSync(ADDON) && builtHash() === sourcesHash()) process.exit(0);

const result = spawnSync('node-gyp', ['rebuild'], {
  cwd: path.resolve(__dirname, '..'),
  encoding: 'utf8',
  shell: process.platform === 'win32',
});
if (result.status === 0) {
  writeStamp();
  console.error('diffuse: built the native BLAS kernels (backend "blas")');
} else {
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  const cause = output.includes('cblas.h') ? 'OpenBLAS headers not found' : (result.error?.message ?? 'node-gyp failed');
  console.error(`diffuse: native BLAS kernels not built (${cause}); for them: apt-get install -y libopenblas-dev && npm run build:native`);
  if (process.env.DIFFUSE_REQUIRE_NATIVE) {
    console.error(output.split('\n').slice(-20).join('\n'));
    process.exit(1);
  }
}
