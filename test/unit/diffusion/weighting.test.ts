/**
 * Loss weighting and noise levels (src/diffusion/weighting.ts): min-SNR-γ's weights against values
 * worked out by hand, the weighted loss and its gradient, and the timesteps each kind of level draws.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { DDPMScheduler, linearSchedule } from '../../../src/diffusion/schedule';
import { TimestepSampler, lossWeights } from '../../../src/diffusion/weighting';
import { meanSquaredError } from '../../../src/diffusion/loss';
import { resolveNewRun, resolveResumedRun } from '../../../src/config/resolve';
import { Rng } from '../../../src/rng';

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-7 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('min-SNR-5 weights against hand-worked values for ε and v', () => {
  // Two steps, β = 0.1 then 0.5: ᾱ = 0.9 (SNR 9) and 0.45 (SNR 0.45/0.55 = 9/11).
  for (const prediction of ['epsilon', 'v'] as const) {
    const s = new DDPMScheduler(linearSchedule(2, 0.1, 0.5, prediction));
    const w = lossWeights(s, [0, 1, 0], { kind: 'min-snr', gamma: 5 })!;
    // ε: min(SNR, 5)/SNR = 5/9 above γ, 1 below; v: min(SNR, 5)/(SNR + 1) = 5/10, then (9/11)/(20/11) = 0.45.
    const expected = prediction === 'epsilon' ? [5 / 9, 1, 5 / 9] : [0.5, 0.45, 0.5];
    expected.forEach((e, i) => close(w[i], e, `${prediction} t=${i}`));
  }
  // Ho et al.'s schedule: SNR at t = 0 is (1 − 1e-4)/1e-4 = 9999.
  const ho = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, 'v'));
  close(lossWeights(ho, [0], { kind: 'min-snr', gamma: 5 })![0], 5 / 10000, 'v, t=0 of 1000');
  assert.equal(lossWeights(ho, [0, 500], { kind: 'uniform' }), null);
});

test('the weighted loss is mean(w·(p − t)²) per row, its gradient 2w(p − t)/n', () => {
  const p = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
  const t = tf.tensor2d([0, 0, 1, 1, 1, 1], [2, 3]);
  const w = tf.tensor2d([0.5, 2], [2, 1]);
  const { value, grad } = tf.valueAndGrad((x: tf.Tensor) => meanSquaredError(x, t, w))(p);
  // row 0: 0.5·(1 + 4 + 4) = 4.5; row 1: 2·(9 + 16 + 25) = 100; over 6 values
  assert.ok(Math.abs(value.dataSync()[0] - 104.5 / 6) < 1e-5, `loss ${value.dataSync()[0]}`);
  const expected = [1, 2, 2, 3, 4, 5].map((d, i) => (2 * (i < 3 ? 0.5 : 2) * d) / 6);
  Array.from(grad.dataSync()).forEach((g, i) => assert.ok(Math.abs(g - expected[i]) < 1e-6, `gradient ${i}: ${g} vs ${expected[i]}`));
  tf.dispose([p, t, w, value, grad]);
});

test("uniform levels draw the generator's int(T) stream; log-normal levels draw around EDM's ln σ = −1.2", () => {
  const s = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, 'v'));
  const uniform = new TimestepSampler(s, { kind: 'uniform' }).draw(new Rng(7), 50);
  const rng = new Rng(7);
  assert.deepEqual(Array.from(uniform), Array.from({ length: 50 }, () => rng.int(1000)));

  const logSigma = (t: number) => 0.5 * Math.log((1 - s.alphasCumprod[t]) / s.alphasCumprod[t]);
  const sampler = new TimestepSampler(s, { kind: 'log-normal', mean: -1.2, std: 1.2 });
  for (const t of [0, 1, 137, 998, 999]) assert.equal(sampler.nearest(logSigma(t)), t, `ln σ of t=${t}`);
  assert.equal(sampler.nearest(-50), 0);
  assert.equal(sampler.nearest(50), 999);
  const drawn = Array.from(sampler.draw(new Rng(1), 20000)).sort((a, b) => a - b);
  const median = drawn[10000];
  // half the draws lie below ln σ = −1.2 (the timestep whose ln σ is nearest it), within a few steps
  assert.ok(Math.abs(median - sampler.nearest(-1.2)) <= 3, `median timestep ${median}, ln σ = −1.2 at ${sampler.nearest(-1.2)}`);
  // one standard deviation each side holds about 68% of the draws
  const inside = drawn.filter((t) => logSigma(t) > -2.4 && logSigma(t) < 0).length / drawn.length;
  assert.ok(Math.abs(inside - 0.683) < 0.02, `within one σ: ${inside}`);
});

test("a run records the weighting and levels with the table's constants; a resumed run may change them", () => {
  const plain = resolveNewRun('default', { model: 'unet' });
  assert.deepEqual([plain.training.weighting, plain.training.levels], [{ kind: 'uniform' }, { kind: 'uniform' }]);
  const r = resolveNewRun('default', { model: 'unet', weighting: 'min-snr', levels: 'log-normal' });
  assert.deepEqual(r.training.weighting, { kind: 'min-snr', gamma: 5 });
  assert.deepEqual(r.training.levels, { kind: 'log-normal', mean: -1.2, std: 1.2 });
  const resumed = resolveResumedRun(r, { weighting: 'uniform' });
  assert.deepEqual([resumed.training.weighting, resumed.training.levels], [{ kind: 'uniform' }, { kind: 'log-normal', mean: -1.2, std: 1.2 }]);
});
