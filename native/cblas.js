#!/usr/bin/env node
// Where binding.gyp finds a CBLAS (`node native/cblas.js cflags|libs`): pkg-config's openblas (or
// cblas, or blas-openblas), which knows the distribution's paths; failing that, -lopenblas on the
// compiler's own paths (Homebrew's prefix on macOS is found by pkg-config; Accelerate needs none of this).
// PKG_CONFIG_LIBDIR points a cross build at the target's packages (scripts/arm64-test.sh).
'use strict';
const { spawnSync } = require('node:child_process');

function pkgConfig(args) {
  for (const name of ['openblas', 'cblas', 'blas-openblas']) {
    const r = spawnSync('pkg-config', [...args, name], { encoding: 'utf8' });
    if (r.status === 0) return r.stdout.trim();
  }
  return null;
}

const what = process.argv[2];
if (what === 'cflags') {
  // include directories only, for gyp's include_dirs
  const flags = pkgConfig(['--cflags-only-I']) ?? '';
  console.log(flags.split(/\s+/).filter(Boolean).map((f) => f.replace(/^-I/, '')).join(' '));
} else if (what === 'libs') {
  console.log(pkgConfig(['--libs']) ?? '-lopenblas');
} else {
  console.error('usage: node native/cblas.js cflags|libs');
  process.exit(2);
}
