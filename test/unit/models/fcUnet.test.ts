import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { FcUnet, fcUnetConfig } from '../../../src/models/fcUnet';
import { parameterCount } from '../../../src/models/denoiser';
import { gelu, layerNorm } from '../../../src/models/layers';
import { loadMnist } from '../../../src/data/mnist';
import { Rng } from '../../../src/rng';
import { Trainer } from '../../../src/training/trainer';
import { resolveNewRun } from '../../../src/config/resolve';
import { useBackend } from '../../helpers';
import { DDPMScheduler, linearSchedule } from '../../../src/diffusion/schedule';
import { generate } from '../../../src/diffusion/sampler';

before(() => useBackend('cpu'));

test('the seed model (w = 2048) has exactly 8,476,944 parameters', () => {
  const model = new FcUnet(fcUnetConfig(2048), new Rng(0));
  assert.equal(parameterCount(model), 8_476_944);
  assert.deepEqual(model.variables.get('in/kernel')!.shape, [785, 2048]);
  assert.deepEqual(model.variables.get('down2/kernel')!.shape, [1024, 512]);
  assert.deepEqual(model.variables.get('out/kernel')!.shape, [2048, 784]);
  model.dispose();
});

test('the model maps [batch, 784] and t/T to a [batch, 784] noise prediction', () => {
  const model = new FcUnet(fcUnetConfig(64), new Rng(0));
  const out = tf.tidy(() => model.predict(tf.randomNormal([3, 784]), tf.tensor1d([0, 0.5, 0.999])));
  assert.deepEqual(out.shape, [3, 784]);
  assert.ok(out.dataSync().every(Number.isFinite));
  out.dispose();
  model.dispose();
});

test('the same seed gives the same initial weights', () => {
  const a = new FcUnet(fcUnetConfig(16), new Rng(4));
  const b = new FcUnet(fcUnetConfig(16), new Rng(4));
  assert.deepEqual(a.variables.get('up1/kernel')!.dataSync(), b.variables.get('up1/kernel')!.dataSync());
  a.dispose();
  b.dispose();
});

test('gelu matches x·Φ(x) and layerNorm normalizes rows', () => {
  const x = tf.tensor2d([[-3, -1, 0, 0.5, 2]]);
  const phi = (v: number) => 0.5 * (1 + erf(v / Math.SQRT2));
  const g = gelu(x).dataSync();
  [-3, -1, 0, 0.5, 2].forEach((v, i) => assert.ok(Math.abs(g[i] - v * phi(v)) < 1e-5));
  const n = layerNorm(tf.tensor2d([[1, 2, 3, 4]]), tf.ones([4]) as tf.Tensor1D, tf.zeros([4]) as tf.Tensor1D).dataSync();
  const sd = Math.sqrt(1.25 + 1e-5);
  [1, 2, 3, 4].forEach((v, i) => assert.ok(Math.abs(n[i] - (v - 2.5) / sd) < 1e-5));
});

/** erf by its series, for the reference above. */
function erf(x: number): number {
  let sum = 0, term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function smallTrainer(width: number, lr: number, seed = 0): Trainer {
  return new Trainer(resolveNewRun('seed', { width, timesteps: 1000, limit: 0, batchSize: 16, lr, seed }));
}

test('a small model overfits one fixed batch: the loss falls by a large factor within 100 steps', () => {
  const data = loadMnist('train', 16);
  const trainer = smallTrainer(128, 1e-3);
  const fixed = trainer.rng.state();
  const losses: number[] = [];
  const batch = Array.from({ length: 16 }, (_, i) => i);
  for (let step = 0; step < 100; step++) {
    trainer.rng.setState(fixed); // same timesteps and noise every step: one fixed batch
    losses.push(trainer.trainStep(data, batch));
  }
  trainer.dispose();
  assert.ok(losses[0] > 0.5, `first loss ${losses[0]}`);
  assert.ok(losses[99] < losses[0] / 10, `loss fell from ${losses[0]} to ${losses[99]}`);
});

test('training steps leak no tensors', () => {
  const data = loadMnist('train', 64);
  const trainer = smallTrainer(32, 1e-3);
  trainer.trainStep(data, [0, 1, 2, 3]);
  const baseline = tf.memory().numTensors;
  for (let i = 0; i < 10; i++) trainer.trainStep(data, [4 * i, 4 * i + 1, 4 * i + 2]);
  assert.equal(tf.memory().numTensors, baseline);
  trainer.dispose();
});

test('generate: DDIM with K = T and η = 1 draws the very images of the ancestral sampler; K = 20 is deterministic', () => {
  const model = new FcUnet(fcUnetConfig(16), new Rng(2));
  const scheduler = new DDPMScheduler(linearSchedule(50, 1e-4, 0.02, 'epsilon'));
  const ancestral = generate(model, scheduler, { n: 3, rng: new Rng(9), sampler: 'ancestral' });
  const ddim = generate(model, scheduler, { n: 3, rng: new Rng(9), sampler: 'ddim', steps: 50, eta: 1 });
  for (let i = 0; i < ancestral.length; i++) assert.ok(Math.abs(ancestral[i] - ddim[i]) < 1e-3, `${ancestral[i]} vs ${ddim[i]}`);
  const a = generate(model, scheduler, { n: 2, rng: new Rng(1), sampler: 'ddim', steps: 20, eta: 0 });
  const b = generate(model, scheduler, { n: 2, rng: new Rng(1), sampler: 'ddim', steps: 20, eta: 0 });
  assert.deepEqual(a, b);
  assert.ok(a.every(Number.isFinite));
  model.dispose();
});
