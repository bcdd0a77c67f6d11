#!/usr/bin/env node
// Bundles the web page's script (src/web/page.ts with the model, scheduler and sampler code it imports,
// and tfjs) into dist/web/, beside the page's static files; `diffuse export --web` copies them from there.
'use strict';
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'dist', 'web');
fs.mkdirSync(out, { recursive: true });
esbuild.buildSync({
  entryPoints: [path.join(root, 'src', 'web', 'page.ts')],
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  outfile: path.join(out, 'diffuse-web.js'),
  logLevel: 'warning',
});
for (const file of ['index.html', 'sw.js']) fs.copyFileSync(path.join(root, 'src', 'web', file), path.join(out, file));
