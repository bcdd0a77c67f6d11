import { test } from 'node:test';
import assert from 'node:assert/strict';
import { learningRateAt } from '../../../src/optim/lrSchedule';
import { RECIPES, recipeFor } from '../../../src/config/defaults';
import { resolveNewRun } from '../../../src/config/resolve';

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

test('constant: the peak rate throughout, after an optional linear warm-up', () => {
  close(learningRateAt(1e-4, undefined, 1), 1e-4);
  const s = { kind: 'constant' as const, warmupSteps: 100, totalSteps: 10_000 };
  close(learningRateAt(1e-3, s, 1), 1e-5);
  close(learningRateAt(1e-3, s, 50), 5e-4);
  close(learningRateAt(1e-3, s, 100), 1e-3);
  close(learningRateAt(1e-3, s, 9_999), 1e-3);
});

test('cosine: peak after warm-up, half-way down at the middle of the decay, zero at the last step', () => {
  const s = { kind: 'cosine' as const, warmupSteps: 100, totalSteps: 1100 };
  close(learningRateAt(1e-3, s, 100), 1e-3);
  close(learningRateAt(1e-3, s, 600), 5e-4);
  close(learningRateAt(1e-3, s, 1100), 0);
  close(learningRateAt(1e-3, s, 5000), 0);
  assert.ok(learningRateAt(1e-3, s, 300) > learningRateAt(1e-3, s, 301));
});

test('warm-up takes at most a tenth of a run of known length; an unknown length does not decay', () => {
  const short = { kind: 'cosine' as const, warmupSteps: 1000, totalSteps: 200 };
  close(learningRateAt(1e-3, short, 20), 1e-3);
  close(learningRateAt(1e-3, short, 10), 5e-4);
  const unknown = { kind: 'cosine' as const, warmupSteps: 10, totalSteps: 0 };
  close(learningRateAt(1e-3, unknown, 10_000), 1e-3);
});

test('the default recipe gives the U-net its own batch, averaging and prediction target; the seed recipe and the FC net are untouched', () => {
  assert.deepEqual(recipeFor('default', 'fc'), RECIPES.default);
  assert.deepEqual(recipeFor('seed', 'unet'), RECIPES.seed);
  const unet = recipeFor('default', 'unet');
  assert.equal(unet.batchSize, 64);
  assert.equal(unet.ema, 0.999);
  assert.equal(unet.prediction, 'v');
  assert.equal(unet.lr, RECIPES.default.lr);
  // few deterministic steps up to 32 px; from 64 px DDIM 100 with fresh noise, recorded in the run
  assert.deepEqual([unet.sampler, unet.steps], ['dpmpp-2m', 20]);
  const big = recipeFor('default', 'unet', 64);
  assert.deepEqual([big.sampler, big.steps, big.batchSize], ['ddim', 100, 64]);
  assert.deepEqual(resolveNewRun('default', { model: 'unet', data: '/x', imageSize: 64 }).sampling, { clipDenoised: false, sampler: 'ddim', steps: 100 });
  assert.deepEqual(resolveNewRun('default', { model: 'unet', data: '/x', imageSize: 32 }).sampling, { clipDenoised: false, sampler: 'dpmpp-2m', steps: 20 });
});
