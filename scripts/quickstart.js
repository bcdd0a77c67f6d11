#!/usr/bin/env node
// `npm start`: the main job on its embedded default. Trains the seed's model on MNIST for a few epochs,
// samples a 64-image grid and says where it is. With the native kernels (or native TensorFlow) it trains
// width 1024 on all 60,000 images (about a minute and a half on 2 cores); on the portable wasm backend,
// width 256 (a few minutes), so the first run finishes either way. Learning rate 1e-3, not the seed's
// 1e-4, so that digits show after 3 epochs.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const bin = path.join(root, 'bin', 'diffuse.js');
const out = path.join('checkpoints', 'quickstart');
const { loadNativeAddon } = require(path.join(root, 'dist', 'src', 'native', 'addon.js'));
const native = loadNativeAddon() !== null || hasPackage('@tensorflow/tfjs-node') || hasPackage('@tensorflow/tfjs-node-gpu');
const width = native ? '1024' : '256';

function hasPackage(name) {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

function run(args) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

run(['train', '--epochs', '3', '--width', width, '--lr', '1e-3', '--out', out, '--overwrite']);
run(['sample', '--checkpoint', out, '--n', '64', '--out', path.join(out, 'grid.png')]);
