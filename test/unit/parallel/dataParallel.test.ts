/**
 * Data-parallel training (src/training/dataParallel.ts): the shares cover the batch, and a U-net
 * trained with worker threads follows the one-thread run from the same seed, for even and uneven shares.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { BLAS_BACKEND, registerBlasBackend } from '../../../src/backend/blasBackend';
import { resolveNewRun } from '../../../src/config/resolve';
import { ImageSet } from '../../../src/data/mnist';
import { Rng } from '../../../src/rng';
import { ParallelDenoiser, Slot, shares, withWorkersPaired } from '../../../src/parallel/dataParallel';
import { buildModel } from '../../../src/models/build';
import { Denoiser } from '../../../src/models/denoiser';
import { Trainer } from '../../../src/training/trainer';

const available = registerBlasBackend();
const skip = available ? false : 'native kernels not built (apt-get install -y libopenblas-dev && npm run build:native)';

before(async () => {
  if (available) await tf.setBackend(BLAS_BACKEND);
});

test('shares cut a batch into contiguous parts that differ by at most one image', () => {
  for (const [batch, parts] of [[64, 2], [5, 2], [7, 3], [3, 3], [1, 1], [33, 4]]) {
    const cuts = shares(batch, parts);
    assert.equal(cuts.length, parts);
    assert.equal(cuts[0][0], 0);
    assert.equal(cuts[parts - 1][1], batch);
    const sizes = cuts.map(([a, b]) => b - a);
    for (let i = 1; i < parts; i++) assert.equal(cuts[i][0], cuts[i - 1][1]);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `${batch} in ${parts}: ${sizes}`);
  }
});

function images(count: number, size: number, seed: number): ImageSet {
  const rng = new Rng(seed);
  return { count, height: size, width: size, channels: 1, data: Float32Array.from({ length: count * size * size }, () => 2 * rng.uniform() - 1) };
}

/** A small 16-px U-net's options (these tests' model). */
const SMALL_UNET = { model: 'unet', data: 'test-images', imageSize: 16, channels: 1, baseChannels: 8, channelMults: [1, 2], attentionResolutions: [8], limit: 0, batchSize: 4 };

/** `parallel` predicts what `own` does for x at t (to float noise). */
function assertPredictsAsOwn(own: Denoiser, parallel: Denoiser, x: tf.Tensor2D, t: tf.Tensor1D): void {
  const expected = tf.tidy(() => own.predict(x, t).dataSync() as Float32Array);
  const actual = tf.tidy(() => parallel.predict(x, t).dataSync() as Float32Array);
  let worst = 0;
  expected.forEach((e, i) => (worst = Math.max(worst, Math.abs(actual[i] - e))));
  assert.ok(worst < 1e-5, `predictions differ by up to ${worst}`);
}

/** Losses of `steps` updates and the final weights of a small U-net trained with `workers` threads. */
function train(workers: number, batch: number, steps: number, objective: object = {}): { losses: number[]; weights: Float32Array[] } {
  const record = resolveNewRun('default', { ...SMALL_UNET, batchSize: batch, lr: 1e-3, seed: 4, ema: 0.9, ...objective } as never);
  const trainer = new Trainer(record, undefined, { workers });
  const data = images(batch * steps, 16, 9);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) losses.push(trainer.trainStep(data, Array.from({ length: batch }, (_, j) => s * batch + j)));
  const weights = [...trainer.model.variables.values()].map((v) => (v.dataSync() as Float32Array).slice());
  trainer.dispose();
  return { losses, weights };
}

test('training on worker threads follows the one-thread run from the same seed (even and uneven shares; weighted losses, log-normal levels)', { skip }, () => {
  const weighted = { weighting: 'min-snr', levels: 'log-normal' };
  for (const [workers, batch, objective] of [[2, 6, {}], [2, 5, {}], [3, 7, {}], [2, 5, weighted]] as [number, number, object][]) {
    const alone = train(1, batch, 4, objective);
    const shared = train(workers, batch, 4, objective);
    alone.losses.forEach((l, i) => assert.ok(Math.abs(shared.losses[i] - l) <= 1e-5 * Math.max(1, l), `${workers} threads, batch ${batch}, step ${i + 1}: loss ${shared.losses[i]} vs ${l}`));
    let worst = 0;
    alone.weights.forEach((w, k) => w.forEach((x, j) => (worst = Math.max(worst, Math.abs(shared.weights[k][j] - x)))));
    // Adam's first steps move each weight by about the rate (1e-3); rounding differences stay far below.
    assert.ok(worst < 2e-5, `${workers} threads, batch ${batch}: weights differ by up to ${worst}`);
  }
});

test('two data-parallel runs from one seed end with the same weights, bit for bit', { skip }, () => {
  // Uneven shares (3 images on the worker, 2 here): this thread finishes first, and while the worker
  // still computes nothing may change how its kernels run (OpenBLAS's thread count is process-wide).
  const first = train(2, 5, 6);
  const second = train(2, 5, 6);
  assert.deepEqual(second.losses, first.losses);
  first.weights.forEach((w, k) => assert.ok(Buffer.from(w.buffer).equals(Buffer.from(second.weights[k].buffer)), `variable ${k} differs`));
});

test('a data-parallel trainer keeps memory flat and falls back to one thread for a batch smaller than its threads', { skip }, () => {
  const record = resolveNewRun('default', { ...SMALL_UNET, seed: 1 } as never);
  const trainer = new Trainer(record, undefined, { workers: 2 });
  const data = images(40, 16, 3);
  trainer.trainStep(data, [0, 1, 2, 3]);
  const { numTensors, numBytes } = tf.memory();
  for (let i = 1; i < 6; i++) trainer.trainStep(data, [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]);
  const loss = trainer.trainStep(data, [30]); // one image: this thread alone
  assert.ok(Number.isFinite(loss));
  assert.equal(tf.memory().numTensors, numTensors);
  assert.equal(tf.memory().numBytes, numBytes);
  trainer.dispose();
});

test('predictions shared over threads equal the model\'s own, for batches larger than the pool takes at once', { skip }, () => {
  const record = resolveNewRun('default', { ...SMALL_UNET, seed: 5 } as never);
  const model = buildModel(record.model, new Rng(5));
  const parallel = new ParallelDenoiser(model, 2, 4); // takes 4 images at a time: 9 go in three pieces
  const x = tf.tensor2d(images(9, 16, 6).data, [9, 256]);
  const t = tf.tensor1d([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
  assertPredictsAsOwn(model, parallel, x, t);
  x.dispose();
  t.dispose();
  parallel.dispose(); // the model with it
  assert.equal(model.variables.values().next().value!.isDisposed, true);
});

test('a sampler\'s model loads its weights into the workers once, and again after the pool served other weights', { skip }, () => {
  const record = resolveNewRun('default', { ...SMALL_UNET, seed: 5 } as never);
  const [good, bad] = [buildModel(record.model, new Rng(5)), buildModel(record.model, new Rng(6))];
  const [goodOn, badOn] = withWorkersPaired(good, bad, 2, 4);
  const x = tf.tensor2d(images(4, 16, 7).data, [4, 256]);
  const t = tf.tensor1d([0.1, 0.4, 0.6, 0.9]);
  const reloaded = () => ((goodOn as unknown as { ownPool: { shares: { control: Int32Array }[] } }).ownPool.shares[0].control[Slot.Reload] === 1);
  const seen: boolean[] = [];
  for (const [own, parallel] of [[good, goodOn], [good, goodOn], [bad, badOn], [bad, badOn], [good, goodOn]] as const) {
    assertPredictsAsOwn(own, parallel, x, t);
    seen.push(reloaded());
  }
  assert.deepEqual(seen, [true, false, true, false, true]);
  badOn.dispose();
  goodOn.dispose();
  x.dispose();
  t.dispose();
});

test('autoguidance\'s two models of one architecture share one pool of threads, each predicting with its own weights; other architectures get one each', { skip }, () => {
  const record = resolveNewRun('default', { ...SMALL_UNET, seed: 5 } as never);
  const [good, bad] = [buildModel(record.model, new Rng(5)), buildModel(record.model, new Rng(6))]; // other weights, same architecture
  const [goodOn, badOn] = withWorkersPaired(good, bad, 2, 4);
  const x = tf.tensor2d(images(4, 16, 7).data, [4, 256]);
  const t = tf.tensor1d([0.1, 0.4, 0.6, 0.9]);
  for (const [own, parallel] of [[good, goodOn], [bad, badOn], [good, goodOn]] as const) assertPredictsAsOwn(own, parallel, x, t);
  const pools = (m: unknown) => (m as { ownPool: unknown }).ownPool;
  assert.ok(pools(goodOn), 'the first model started the pool');
  assert.equal(pools(badOn), null, 'the second borrowed it');
  badOn.dispose();
  goodOn.dispose();
  const other = resolveNewRun('default', { ...SMALL_UNET, baseChannels: 16, seed: 5 } as never);
  const [a, b] = withWorkersPaired(buildModel(record.model, new Rng(5)), buildModel(other.model, new Rng(5)), 2, 4);
  assert.ok(a instanceof ParallelDenoiser && b instanceof ParallelDenoiser);
  tf.tidy(() => { a.predict(x, t); b.predict(x, t); });
  assert.ok(pools(a) && pools(b), 'architectures that differ: a pool each');
  a.dispose();
  b.dispose();
  x.dispose();
  t.dispose();
});
