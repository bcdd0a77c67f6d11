#!/usr/bin/env node
// `npm start`: the main job on its embedded default, in about two minutes. Trains a small class-conditional
// convolutional U-net (16 channels at 28 px, 32 at 14 and 7, attention at 7; v-prediction, learning rate
// 2e-3 with a cosine decay, batch 32, one label in ten dropped for classifier-free guidance) on the 60,000
// MNIST digits, one pass, and samples a grid of ten of each digit, one row per digit, with DPM-Solver++(2M),
// 20 steps, and classifier-free guidance. Chosen by measurement among fully connected and convolutional
// models for that budget (docs/results.md#quickstart). On the portable wasm backend (no native kernels) it
// trains on 3,200 digits instead (roughly 10 minutes), to rougher digits.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const bin = path.join(root, 'bin', 'diffuse.js');
// (The two variables shrink and redirect the run for the test suite.)
const out = process.env.DIFFUSE_QUICKSTART_OUT ?? path.join('checkpoints', 'quickstart');
const grid = path.join(out, 'grid.png');
const { loadNativeAddon } = require(path.join(root, 'dist', 'src', 'backend', 'addon.js'));
const native = loadNativeAddon() !== null || hasPackage('@tensorflow/tfjs-node') || hasPackage('@tensorflow/tfjs-node-gpu');
const images = process.env.DIFFUSE_QUICKSTART_IMAGES ?? (native ? '60000' : '3200');

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

const started = Date.now();
if (!native) console.error('diffuse: without the native kernels this quickstart trains on 3,200 digits on the slow wasm backend (roughly 10 minutes)');
run(['train', '--model', 'unet', '--data', 'mnist', '--base-channels', '16', '--channel-mults', '1,2,2', '--blocks', '1', '--attention', '7', '--batch-size', '32', '--lr', '0.002', '--warmup', '50', '--conditional', '--limit', images, '--epochs', '1', '--log-every', '20', '--out', out, '--overwrite']);
run(['sample', '--checkpoint', out, '--class', 'all', '--per-class', '10', '--out', grid]);
const seconds = Math.round((Date.now() - started) / 1000);
console.error(`
diffuse: quickstart done in ${seconds} s: ${path.resolve(root, grid)} (ten of each digit, a row per digit), its run in ${path.resolve(root, out)} (report.html, history.csv).
Next:
  npx diffuse sample --checkpoint ${out} --class 7 --n 16 --cfg 4 --out sevens.png       # ask for a digit; --cfg: how strongly
  npx diffuse sample --checkpoint ${out} --n 16 --animate reverse.webp --out grid16.png   # watch noise become digits (any digit)
  npx diffuse denoise --checkpoint ${out} --mnist-test 0 --t 20,200,999 --out denoise.png  # the blog post's starting point
  npx diffuse evaluate --checkpoint ${out} --n 1000                                       # FD, confidence, coverage, class accuracy
  npx diffuse train --model unet --conditional --epochs 10 --out runs/digits              # the larger U-net, by class (README: Results)
`);
