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
import { USER_ERROR_EXIT, assertCleanFailure, runCli, tempDir } from '../../helpers';

// Training the classifier takes about a minute with the native kernels and far longer without.
const skip = registerBlasBackend() ? false : 'native kernels not built: the classifier would train too slowly';
let classifier: DigitClassifier;

before(async () => {
  if (skip) return;
  await tf.setBackend(BLAS_BACKEND);
  classifier = getClassifier(defaultClassifierDir()); // the suite's own folder (scripts/test.js)
});

test('the classifier reaches at least 98.5% on MNIST test, counted here from its probabilities, and reloads from its cache', { skip }, () => {
  const images = loadMnist('test');
  const labels = loadMnistLabels('test');
  // Counted here, not by accuracy(): the top class of each image's probabilities against its label.
  const { probabilities } = classifier.classify(images.data, images.count);
  let correct = 0;
  for (let i = 0; i < images.count; i++) {
    const p = probabilities.subarray(i * 10, i * 10 + 10);
    if (p.indexOf(Math.max(...p)) === labels[i]) correct++;
  }
  const counted = correct / images.count;
  assert.equal(images.count, 10000);
  assert.ok(counted >= 0.985, `test accuracy ${counted}`);
  assert.equal(accuracy(classifier, images, labels), counted);
  assert.equal(classifier.testAccuracy, counted, 'the accuracy recorded with the classifier is the one counted here');
  // accuracy() compares with the labels given: against wrong labels it is near 0.
  assert.ok(accuracy(classifier, images, labels.map((l) => (l + 1) % 10)) < 0.02);
  const again = loadClassifier(defaultClassifierDir())!;
  const x = loadMnist('test', 5).data;
  assert.deepEqual(again.classify(x, 5).probabilities, classifier.classify(x, 5).probabilities);
  again.dispose();
});

test('the scores tell real digits from known-bad sets (one digit only, shuffled pixels, noise), each figure in its own direction', { skip }, () => {
  const n = 1000;
  const reference = testReference(classifier, n);
  const test = loadMnist('test', n);
  const self = score(classifier, test.data, n, reference);
  assert.ok(self.fd < 1e-6 * (1 + reference.cov.reduce((a, b) => a + b, 0)), `self FD ${self.fd}`);
  // Good: n real training digits (not the reference's own images).
  const floor = floorScores(classifier, n, reference);
  assert.equal(floor.n, n);
  assert.ok(floor.confidence > 0.95 && floor.coverage > 0.97 && floor.precision > 0.7 && floor.recall > 0.7, JSON.stringify(floor));
  assert.equal(floor.histogram.reduce((a, b) => a + b, 0), n);
  assert.ok(Math.min(...floor.histogram) > 50, `every digit occurs: ${floor.histogram}`);
  // Bad 1, mode collapse: n real training 1s. Faithful digits (precision, confidence) of one kind (coverage, recall).
  const train = loadMnist('train', 5000);
  const ones = [...loadMnistLabels('train', 5000)].flatMap((label, i) => (label === 1 ? [i] : []));
  const oneDigit = new Float32Array(n * 784);
  for (let i = 0; i < n; i++) oneDigit.set(train.data.subarray(ones[i % ones.length] * 784, (ones[i % ones.length] + 1) * 784), i * 784);
  const collapsed = score(classifier, oneDigit, n, reference);
  assert.ok(collapsed.histogram[1] > 0.95 * n, `labels of the 1s: ${collapsed.histogram}`);
  assert.ok(collapsed.coverage < 0.1 && collapsed.recall < floor.recall / 2, JSON.stringify(collapsed));
  assert.ok(collapsed.precision > 0.5 && collapsed.confidence > 0.95, `real 1s are faithful digits: ${JSON.stringify(collapsed)}`);
  // Bad 2: real digits with their pixels shuffled (one permutation for all): the ink of digits, not digits.
  const rng = new Rng(1);
  const order = Array.from({ length: 784 }, (_, i) => i);
  for (let i = 783; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const shuffledPixels = Float32Array.from({ length: n * 784 }, (_, k) => train.data[Math.floor(k / 784) * 784 + order[k % 784]]);
  const shuffled = score(classifier, shuffledPixels, n, reference);
  assert.ok(shuffled.precision < floor.precision / 2 && shuffled.confidence < floor.confidence - 0.2 && shuffled.recall < floor.recall / 2, JSON.stringify(shuffled));
  // Bad 3: uniform noise.
  const uniform = Float32Array.from({ length: n * 784 }, () => 2 * rng.uniform() - 1);
  const noise = score(classifier, uniform, n, reference);
  assert.ok(noise.confidence < floor.confidence - 0.2 && noise.recall < floor.recall / 2, JSON.stringify(noise));
  // FD and KID: lower is better, and every bad set is far above the real digits.
  for (const [what, bad] of [['one digit', collapsed], ['shuffled pixels', shuffled], ['noise', noise]] as const) {
    assert.ok(bad.fd > 5 * floor.fd, `${what}: FD ${bad.fd} vs real digits ${floor.fd}`);
    assert.ok(bad.kid > 5 * Math.max(floor.kid, 0), `${what}: KID ${bad.kid} vs real digits ${floor.kid}`);
  }
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

/** A NumPy .npy file (format 1.0) holding `data` as `descr` of `shape` (a Python tuple). */
function npy(descr: string, shape: string, data: Uint8Array): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), data]);
}

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
  const real = loadMnist('train', 50); // scored against the first 50 test digits
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
  // The lines say what the JSON says.
  assert.match(r.stdout, new RegExp(`^histogram ${result.samples.histogram.join(',')}$`, 'm'));
  assert.match(r.stdout, new RegExp(`^fd ${result.samples.fd.toFixed(3)}$`, 'm'));
  assert.match(r.stdout, new RegExp(`^floor_fd ${result.floor.fd.toFixed(3)}$`, 'm'));
  // The same 50 digits as a uint8 [50, 28, 28] .npy file score exactly as the grid does (the same bytes)...
  const bytes = Uint8Array.from(real.data, toByte);
  const realNpy = path.join(dir, 'real.npy');
  fs.writeFileSync(realNpy, npy('|u1', '(50, 28, 28)', bytes));
  const fromNpy = runCli(['evaluate', '--samples', realNpy, '--json']);
  assert.equal(fromNpy.status, 0, fromNpy.stderr);
  assert.deepEqual(JSON.parse(fromNpy.stdout).samples, result.samples);
  // ...and its contents are what is scored: 50 copies of the first digit (a 5) are one label, far from MNIST.
  const fives = new Uint8Array(50 * 784);
  for (let i = 0; i < 50; i++) fives.set(bytes.subarray(0, 784), i * 784);
  assert.equal(loadMnistLabels('train', 1)[0], 5);
  const fivesNpy = path.join(dir, 'fives.npy');
  fs.writeFileSync(fivesNpy, npy('|u1', '(50, 28, 28)', fives));
  const one = runCli(['evaluate', '--samples', fivesNpy, '--json']);
  assert.equal(one.status, 0, one.stderr);
  const collapsed = JSON.parse(one.stdout).samples;
  assert.equal(collapsed.n, 50);
  assert.deepEqual(collapsed.histogram, [0, 0, 0, 0, 0, 50, 0, 0, 0, 0]);
  assert.equal(collapsed.coverage, 0);
  assert.ok(collapsed.fd > 3 * result.samples.fd, `one digit repeated: FD ${collapsed.fd}; 50 real digits: ${result.samples.fd}`);
  fs.writeFileSync(path.join(dir, 'f.npy'), npy('<f4', '(50, 28, 28)', bytes));
  // (exit 2 and the error line; where that line falls among stderr's lines is assertCleanFailure's, below)
  const floats = runCli(['evaluate', '--samples', path.join(dir, 'f.npy')]);
  assert.equal(floats.status, USER_ERROR_EXIT, floats.stderr);
  assert.match(floats.stderr, /^diffuse: error: .*f\.npy must hold uint8 \[n, 28, 28\]/m);
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
