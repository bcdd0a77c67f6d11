import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BLAS_BACKEND, registerBlasBackend } from '../../../src/backend/blasBackend';
import { DigitClassifier, accuracy, defaultClassifierDir, getClassifier, loadClassifier, randomShift } from '../../../src/eval/classifier';
import { floorScores, score, testReference } from '../../../src/eval/evaluate';
import { readGrid, readNpy } from '../../../src/eval/sampleFiles';
import { loadMnist, loadMnistLabels } from '../../../src/data/mnist';
import { quantize, toByte } from '../../../src/io/grid';
import { writeImageGrid } from '../../../src/io/images';
import { Rng } from '../../../src/rng';
import { assertCleanFailure, runCli, tempDir } from '../../helpers';

// Training the classifier takes about a minute with the native kernels and far longer without.
const skip = registerBlasBackend() ? false : 'native kernels not built: the classifier would train too slowly';
let classifier: DigitClassifier;

before(async () => {
  if (skip) return;
  await tf.setBackend(BLAS_BACKEND);
  classifier = getClassifier(defaultClassifierDir()); // the suite's own folder (scripts/test.js)
});

test('the classifier reaches at least 98.5% on MNIST test, measured here, and reloads from its cache', { skip }, () => {
  const measured = accuracy(classifier, loadMnist('test'), loadMnistLabels('test'));
  assert.ok(measured >= 0.985, `test accuracy ${measured}`);
  assert.ok(Math.abs(measured - classifier.testAccuracy) < 1e-9, `recorded ${classifier.testAccuracy}, measured ${measured}`);
  const again = loadClassifier(defaultClassifierDir())!;
  const x = loadMnist('test', 5).data;
  assert.deepEqual(again.classify(x, 5).probabilities, classifier.classify(x, 5).probabilities);
  again.dispose();
});

test('FD: a set against itself is ~0; real digits score near the floor; noise far above', { skip }, () => {
  const n = 1000;
  const reference = testReference(classifier, n);
  const test = loadMnist('test', n);
  const self = score(classifier, test.data, n, reference);
  assert.ok(self.fd < 1e-6 * (1 + reference.cov.reduce((a, b) => a + b, 0)), `self FD ${self.fd}`);
  const floor = floorScores(classifier, n, reference);
  assert.ok(floor.confidence > 0.95 && floor.coverage > 0.97, JSON.stringify(floor));
  const rng = new Rng(1);
  const uniform = Float32Array.from({ length: n * 784 }, () => 2 * rng.uniform() - 1);
  const noise = score(classifier, uniform, n, reference);
  assert.ok(noise.fd > 10 * floor.fd, `noise FD ${noise.fd} vs floor ${floor.fd}`);
  // Brightness: real digits are mostly black (the brightest of 1000 well under half); uniform noise averages 1/2; one white image is 1.
  assert.ok(floor.maxBrightness > 0.1 && floor.maxBrightness < 0.5, `brightest real digit ${floor.maxBrightness}`);
  assert.ok(Math.abs(noise.maxBrightness - 0.5) < 0.05);
  const withWhite = Float32Array.from(test.data);
  withWhite.fill(1, 7 * 784, 8 * 784);
  assert.equal(score(classifier, withWhite, n, reference).maxBrightness, 1);
  // Noise added to real digits raises FD step by step.
  const noisy = (sigma: number) => {
    const r = new Rng(2);
    const x = Float32Array.from(test.data, (v) => Math.max(-1, Math.min(1, v + sigma * r.normal())));
    return score(classifier, x, n, reference).fd;
  };
  const fds = [0.1, 0.3, 0.6].map(noisy);
  assert.ok(fds[0] < fds[1] && fds[1] < fds[2], `FD by noise level: ${fds}`);
  assert.ok(fds[0] > self.fd);
});

test('quantize clamps to [-1, 1] and rounds to 8 bits', () => {
  assert.deepEqual([...quantize(Float32Array.from([-3, -1, 0.5, 2]))].map((v) => +v.toFixed(6)), [-1, -1, +(toByte(0.5) / 127.5 - 1).toFixed(6), 1]);
});

test('random shifts move digits by at most 2 pixels and keep the background', () => {
  const img = new Float32Array(784).fill(-1);
  img[14 * 28 + 14] = 1;
  const shifted = randomShift(img, new Rng(3));
  const at = shifted.indexOf(1);
  assert.ok(at >= 0);
  assert.ok(Math.abs(Math.floor(at / 28) - 14) <= 2 && Math.abs((at % 28) - 14) <= 2);
  assert.equal(shifted.filter((v) => v === 1).length, 1);
});

test('a PNG grid written by sample reads back as its images, without the empty slots', async () => {
  const dir = tempDir();
  const rng = new Rng(4);
  const n = 7; // a 3x3 grid with two empty slots
  const images = Float32Array.from({ length: n * 784 }, () => 2 * rng.uniform() - 1);
  const file = path.join(dir, 'g.png');
  await writeImageGrid(file, images, n, 28, 28);
  const back = await readGrid(file);
  assert.equal(back.n, n);
  for (let i = 0; i < images.length; i++) assert.equal(toByte(back.images[i]), toByte(images[i]));
  fs.writeFileSync(path.join(dir, 'bad.png'), fs.readFileSync(file).subarray(0, 10));
  await assert.rejects(readGrid(path.join(dir, 'bad.png')), /cannot read image/);
});

test('a .npy uint8 [n, 28, 28] file reads back; other dtypes are refused', () => {
  const dir = tempDir();
  const npy = (descr: string, shape: string, data: Uint8Array) => {
    let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
    header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
    const head = Buffer.alloc(10);
    head.write('\x93NUMPY', 0, 'latin1');
    head[6] = 1;
    head[7] = 0;
    head.writeUInt16LE(header.length, 8);
    return Buffer.concat([head, Buffer.from(header, 'latin1'), data]);
  };
  const data = Uint8Array.from({ length: 2 * 784 }, (_, i) => i % 256);
  fs.writeFileSync(path.join(dir, 'a.npy'), npy('|u1', '(2, 28, 28)', data));
  const set = readNpy(path.join(dir, 'a.npy'));
  assert.equal(set.n, 2);
  assert.equal(set.images[0], -1);
  assert.equal(set.images[255], 1);
  fs.writeFileSync(path.join(dir, 'f.npy'), npy('<f4', '(2, 28, 28)', data));
  assert.throws(() => readNpy(path.join(dir, 'f.npy')), /must hold uint8/);
  fs.writeFileSync(path.join(dir, 't.npy'), npy('|u1', '(3, 28, 28)', data));
  assert.throws(() => readNpy(path.join(dir, 't.npy')), /truncated/);
});

test('diffuse evaluate scores a grid (lines) and a .npy file (JSON)', { skip }, async () => {
  const dir = tempDir();
  const real = loadMnist('test', 50);
  const grid = path.join(dir, 'real.png');
  await writeImageGrid(grid, real.data, 50, 28, 28);
  const r = runCli(['evaluate', '--samples', grid]);
  assert.equal(r.status, 0, r.stderr);
  for (const key of ['n 50', 'fd ', 'confidence ', 'coverage ', 'histogram ', 'max_brightness ', 'floor_fd ', 'classifier_test_accuracy ']) assert.match(r.stdout, new RegExp(`^${key}`, 'm'));
  const j = runCli(['evaluate', '--samples', grid, '--json']);
  const result = JSON.parse(j.stdout);
  assert.equal(result.samples.n, 50);
  assert.equal(result.samples.histogram.reduce((a: number, b: number) => a + b, 0), 50);
  assert.ok(result.samples.confidence > 0.9);
  const ckpt = path.join(dir, 'ckpt');
  assert.equal(runCli(['train', '--epochs', '1', '--limit', '128', '--width', '64', '--out', ckpt]).status, 0);
  const fromCheckpoint = runCli(['evaluate', '--checkpoint', ckpt, '--n', '8', '--seed', '3', '--json']);
  assert.equal(fromCheckpoint.status, 0, fromCheckpoint.stderr);
  const scored = JSON.parse(fromCheckpoint.stdout).samples;
  assert.equal(scored.n, 8);
  // Scoring a checkpoint scores the images as its grid holds them (clamped, 8-bit).
  const png = path.join(dir, 'eight.png');
  assert.equal(runCli(['sample', '--checkpoint', ckpt, '--n', '8', '--seed', '3', '--out', png]).status, 0);
  const fromGrid = JSON.parse(runCli(['evaluate', '--samples', png, '--json']).stdout).samples;
  assert.ok(Math.abs(fromGrid.fd - scored.fd) < 1e-6 * scored.fd, `${fromGrid.fd} vs ${scored.fd}`);
  assert.deepEqual(fromGrid.histogram, scored.histogram);
  assertCleanFailure(runCli(['evaluate', '--samples', path.join(dir, 'none.png')]), /cannot read image/);
});
