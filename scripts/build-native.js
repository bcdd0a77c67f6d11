#!/usr/bin/env node
// Builds the optional native kernels (build/Release/diffuse_native.node) with node-gyp, which npm puts
// on PATH for its scripts. Where that fails (no C compiler, no OpenBLAS headers), diffuse still works
// on the portable backends, so this says why in one line and exits 0.
'use strict';
const { spawnSync } = require('node:child_process');

const result = spawnSync('node-gyp', ['rebuild'], { encoding: 'utf8', shell: process.platform === 'win32' });
if (result.status === 0) {
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
