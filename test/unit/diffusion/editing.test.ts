/**
 * The editors against the exact Gaussian denoiser (./exact.ts), where the answer is known: DDIM
 * inversion then decoding with the same K returns the image (within the discretization's error,
 * shrinking with K); slerp's ends are the ends; SDEdit at strength 0 is the input without a model call;
 * RePaint keeps the unmasked pixels exactly and draws the masked ones from the data's distribution.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { DDPMScheduler, linearSchedule } from '../../../src/diffusion/schedule';
import { ddimDecode, ddimInvert, repaint, sdEdit, slerp } from '../../../src/diffusion/editing';
import { Denoiser } from '../../../src/models/denoiser';
import { Rng } from '../../../src/rng';
import { mean, variance } from '../../helpers';
import { Part, SIDE, exactDenoiser } from './exact';

const GAUSSIAN: Part[] = [{ weight: 1, mu: 0.3, s: 0.5 }];
const PIXELS = SIDE * SIDE;

function setup(prediction: 'epsilon' | 'v' = 'epsilon') {
  const scheduler = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, prediction));
  return { scheduler, model: exactDenoiser(GAUSSIAN, scheduler) };
}

/** n images drawn from the data distribution itself. */
function data(n: number, seed: number): Float32Array {
  const { mu, s } = GAUSSIAN[0];
  return new Rng(seed).fillNormal(new Float32Array(n * PIXELS)).map((z) => mu + s * z);
}

const meanAbs = (a: Float32Array, b: Float32Array) => a.reduce((sum, v, i) => sum + Math.abs(v - b[i]), 0) / a.length;

test('DDIM inversion then decoding with the same K returns the image: plain inversion to an error falling linearly with K, fixed-point refinement far closer (ε and v models)', async () => {
  await tf.setBackend('cpu');
  for (const prediction of ['epsilon', 'v'] as const) {
    const { scheduler, model } = setup(prediction);
    const x0 = data(4, 1);
    const error = (K: number, refine: number) => meanAbs(ddimDecode(model, scheduler, ddimInvert(model, scheduler, x0, 4, K, undefined, refine), 4, K), x0);
    // measured (ε): plain 0.184, 0.045, 0.023 at K = 10, 50, 100; one refinement 0.068, 0.0026, 0.0006; two 0.024, 0.00017, 0.00002
    const plain = [10, 50, 100].map((K) => error(K, 0));
    assert.ok(plain[1] < 0.06 && plain[2] < 0.03 && plain[2] > 0.3 * plain[1], `${prediction}: plain ${plain.map((e) => e.toFixed(4))}, halving with twice the steps`);
    const refined = [error(50, 1), error(50, 2), error(100, 2)];
    assert.ok(refined[0] < plain[1] / 5 && refined[1] < 1e-3 && refined[2] < 1e-4, `${prediction}: refined ${refined.map((e) => e.toExponential(2))}`);
    // and the noise found is noise-like: mean ~0, variance ~1
    const noise = ddimInvert(model, scheduler, data(20, 2), 20, 50, undefined, 2);
    assert.ok(Math.abs(mean(noise)) < 0.1 && Math.abs(variance(noise) - 1) < 0.15, `noise mean ${mean(noise)}, variance ${variance(noise)}`);
  }
});

test('slerp returns its ends exactly and keeps a Gaussian sample\'s norm between them', () => {
  const rng = new Rng(3);
  const a = rng.fillNormal(new Float32Array(4096)), b = rng.fillNormal(new Float32Array(4096));
  assert.deepEqual(slerp(a, b, 0), a);
  assert.deepEqual(slerp(a, b, 1), b);
  const norm = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
  const mid = slerp(a, b, 0.5);
  assert.ok(Math.abs(norm(mid) / norm(a) - 1) < 0.05, `the middle's norm ${norm(mid)} against ${norm(a)}`);
  // a straight line would shrink it by about 1/√2 for independent noises
  const line = a.map((v, i) => (v + b[i]) / 2);
  assert.ok(norm(line) / norm(a) < 0.75);
  assert.throws(() => slerp(a, b.subarray(1), 0.5), /slerp of 4096 and 4095 values/);
});

test('SDEdit at strength 0 returns the input without calling the model; at 1 it draws from the data', async () => {
  await tf.setBackend('cpu');
  const { scheduler, model } = setup();
  const refuses: Denoiser = { ...model, predict: () => assert.fail('strength 0 called the model') };
  const x0 = data(2, 4);
  assert.deepEqual(sdEdit(refuses, scheduler, x0, 2, 0, { rng: new Rng(1), steps: 20, eta: 1 }), x0);
  const far = new Float32Array(20 * PIXELS).fill(-3); // far outside the data
  // (stochastic DDIM at 100 steps keeps most of the spread: measured sd 0.470)
  const drawn = sdEdit(model, scheduler, far, 20, 1, { rng: new Rng(1), steps: 100, eta: 1 });
  assert.ok(Math.abs(mean(drawn) - 0.3) < 0.05 && Math.abs(Math.sqrt(variance(drawn)) - 0.5) < 0.05, `mean ${mean(drawn)}, sd ${Math.sqrt(variance(drawn))}`);
  const light = sdEdit(model, scheduler, far, 20, 0.1, { rng: new Rng(1), steps: 50, eta: 1 });
  assert.ok(mean(light) < mean(drawn) - 1, `a low strength keeps much of the input: mean ${mean(light)}`);
  assert.throws(() => sdEdit(model, scheduler, x0, 2, 1.5, { rng: new Rng(1), steps: 20, eta: 1 }), /strength must be in \[0, 1\]/);
});

test('RePaint keeps the unmasked pixels exactly and draws the masked ones from the data', async () => {
  await tf.setBackend('cpu');
  const { scheduler, model } = setup();
  const n = 20;
  const x0 = new Float32Array(n * PIXELS).fill(-3); // known pixels far from the data: they must stay, exactly
  const mask = Float32Array.from({ length: PIXELS }, (_, p) => (Math.floor(p / SIDE) >= SIDE / 2 ? 1 : 0)); // bottom half
  const out = repaint(model, scheduler, x0, mask, n, { rng: new Rng(5), steps: 100, jump: 5, resample: 3 });
  const kept: number[] = [], drawn: number[] = [];
  out.forEach((v, i) => (mask[i % PIXELS] ? drawn : kept).push(v));
  assert.ok(kept.every((v) => v === -3), 'an unmasked pixel changed');
  // pixels are independent under this data, so the masked ones follow N(0.3, 0.5²) whatever the rest is
  const m = drawn.reduce((a, b) => a + b, 0) / drawn.length;
  const sd = Math.sqrt(drawn.reduce((a, b) => a + (b - m) ** 2, 0) / drawn.length);
  // (measured at 100 steps: mean 0.287, sd 0.450; stochastic DDIM's coarse steps lose some spread)
  assert.ok(Math.abs(m - 0.3) < 0.05 && Math.abs(sd - 0.5) < 0.08, `masked pixels: mean ${m}, sd ${sd}`);
});
