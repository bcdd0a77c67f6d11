#!/usr/bin/env node
// `npm start`: the main job on its embedded default. Trains the seed's model (width 1024) with the default
// recipe (learning rate 1e-3 with warm-up and cosine decay, averaged weights) on all
// 60,000 MNIST images and samples a 64-image grid, and says where it is: 3 epochs with the native kernels
// or native TensorFlow (about a minute and a half on 2 cores); 1 epoch on the portable wasm backend
// (about 8 minutes; rougher digits). Narrower models do not learn digits in that time.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const bin = path.join(root, 'bin', 'diffuse.js');
const out = path.join('checkpoints', 'quickstart');
const { loadNativeAddon } = require(path.join(root, 'dist', 'src', 'backend', 'addon.js'));
const native = loadNativeAddon() !== null || hasPackage('@tensorflow/tfjs-node') || hasPackage('@tensorflow/tfjs-node-gpu');
const epochs = native ? '3' : '1';

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

if (!native) console.error('diffuse: without the native kernels this quickstart trains 1 epoch on the slow wasm backend (about 8 minutes)');
run(['train', '--epochs', epochs, '--width', '1024', '--out', out, '--overwrite']);
run(['sample', '--checkpoint', out, '--n', '64', '--out', path.join(out, 'grid.png')]);
