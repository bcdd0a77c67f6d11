/**
 * Every sampler against exact denoisers: for data drawn from N(μ, s²) per pixel (and from a two-part
 * Gaussian mixture) the noise a perfect model predicts is known in closed form, so the samples' moments
 * must approach the data's as the steps grow, and the deterministic solvers must show their order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { DDPMScheduler, Prediction, linearSchedule, samplingTimesteps } from '../../../src/diffusion/schedule';
import { DpmSolverPlusPlus, SAMPLERS, SPACINGS, SampleOptions, generate, solverTimesteps } from '../../../src/diffusion/sampler';
import { Rng } from '../../../src/rng';
import { mean, variance } from '../../helpers';
import { Part, exactDenoiser, posteriorMean } from './exact';

const GAUSSIAN: Part[] = [{ weight: 1, mu: 0.3, s: 0.5 }];
const MIXTURE: Part[] = [
  { weight: 0.3, mu: -0.5, s: 0.15 },
  { weight: 0.7, mu: 0.5, s: 0.15 },
];

function moments(parts: Part[]) {
  const m = parts.reduce((a, p) => a + p.weight * p.mu, 0);
  const v = parts.reduce((a, p) => a + p.weight * (p.s * p.s + p.mu * p.mu), 0) - m * m;
  return { mean: m, std: Math.sqrt(v) };
}

function sample(parts: Part[], prediction: Prediction, options: Omit<SampleOptions, 'n' | 'rng'>, n = 60): Float32Array {
  const scheduler = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, prediction));
  return generate(exactDenoiser(parts, scheduler), scheduler, { n, rng: new Rng(3), batchSize: n, ...options });
}

/**
 * The few-step samplers, each with a step count where it should be close: the stochastic DDIM loses
 * spread at coarse steps (each step uses the posterior mean of x_0, not a draw), the first-order ODE
 * step converges linearly, the DPM-Solver++ steps fast.
 */
const FEW_STEP = [
  { sampler: 'ddim', eta: 1, fine: 200 },
  { sampler: 'ddim', eta: 0, fine: 100 },
  { sampler: 'dpmpp-2m', spacing: 'logsnr', fine: 20 },
  { sampler: 'dpmpp-3m', spacing: 'logsnr', fine: 20 },
] as const;

test('every sampler draws the Gaussian\'s mean and spread, closer as the steps grow (ε and v models)', async () => {
  await tf.setBackend('cpu');
  const target = moments(GAUSSIAN);
  const all = sample(GAUSSIAN, 'epsilon', { sampler: 'ancestral' });
  assert.ok(Math.abs(mean(all) - target.mean) < 0.02 && Math.abs(Math.sqrt(variance(all)) - target.std) < 0.02, `ancestral: ${mean(all)}, ${Math.sqrt(variance(all))}`);
  for (const prediction of ['epsilon', 'v'] as const) {
    for (const o of FEW_STEP) {
      const error = (steps: number) => {
        const x = sample(GAUSSIAN, prediction, { ...o, steps });
        return Math.abs(mean(x) - target.mean) + Math.abs(Math.sqrt(variance(x)) - target.std);
      };
      const [coarse, fine] = [error(3), error(o.fine)];
      const what = `${o.sampler}${'eta' in o ? ` η=${o.eta}` : ''} (${prediction})`;
      assert.ok(fine < 0.03, `${what}: moment error ${fine} at ${o.fine} steps`);
      assert.ok(fine < coarse, `${what}: ${coarse} at 3 steps, ${fine} at ${o.fine}`);
    }
  }
});

test('on a two-part mixture (a non-linear denoiser) the few-step samplers find both modes in their proportions', async () => {
  await tf.setBackend('cpu');
  const target = moments(MIXTURE);
  for (const o of FEW_STEP) {
    const x = sample(MIXTURE, 'v', { ...o, steps: o.fine }, 100);
    const upper = x.filter((v) => v > 0).length / x.length;
    const what = `${o.sampler}${'eta' in o ? ` η=${o.eta}` : ''}`;
    assert.ok(Math.abs(upper - 0.7) < 0.03, `${what}: ${upper} of the samples in the upper mode`);
    assert.ok(Math.abs(mean(x) - target.mean) < 0.03, `${what}: mean ${mean(x)} vs ${target.mean}`);
    assert.ok(Math.abs(Math.sqrt(variance(x)) - target.std) < 0.03, `${what}: std ${Math.sqrt(variance(x))} vs ${target.std}`);
    // each mode keeps its own spread
    const modeStd = Math.sqrt(variance(x.filter((v) => v > 0)));
    assert.ok(Math.abs(modeStd - 0.15) < 0.03, `${what}: upper mode's spread ${modeStd}`);
  }
});

/**
 * The deterministic samplers' error at t = 0 against the exact probability-flow solution for the
 * Gaussian, which maps x_T to √ᾱ_0·μ + √(ᾱ_0·s² + 1 − ᾱ_0)·z with z = (x_T − √ᾱ_T·μ)/√(ᾱ_T·s² + 1 − ᾱ_T).
 */
function odeError(kind: 'ddim' | 'dpmpp-2m' | 'dpmpp-3m', K: number): number {
  const scheduler = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, 'epsilon'));
  const { mu, s } = GAUSSIAN[0];
  const times = solverTimesteps(scheduler, K + 1, 'logsnr'); // K steps from T − 1 to 0
  const start = new Rng(5).fillNormal(new Float64Array(50) as unknown as Float32Array).map((v) => v);
  const x = Float32Array.from(start);
  const denoise = (t: number) => Float32Array.from(x, (v) => posteriorMean(GAUSSIAN, scheduler.alphasCumprod[t], v));
  if (kind === 'ddim') {
    for (let i = 0; i < K; i++) {
      const [t, prev] = [times[i], times[i + 1]];
      const eps = Float32Array.from(x, (v, k) => (v - Math.sqrt(scheduler.alphasCumprod[t]) * denoise(t)[k]) / Math.sqrt(1 - scheduler.alphasCumprod[t]));
      scheduler.ddimStep(eps, t, prev, x, new Float32Array(x.length), 0, x);
    }
  } else {
    const solver = new DpmSolverPlusPlus(scheduler, times, kind === 'dpmpp-2m' ? 2 : 3);
    // K steps, stopping at t = 0 (the step to x_0 is the data prediction itself and not part of the ODE)
    for (let i = 0; i < K; i++) solver.step(x, denoise(times[i]));
  }
  const [aT, a0] = [scheduler.alphasCumprod[times[0]], scheduler.alphasCumprod[0]];
  let worst = 0;
  start.forEach((v, k) => {
    const z = (v - Math.sqrt(aT) * mu) / Math.sqrt(aT * s * s + 1 - aT);
    worst = Math.max(worst, Math.abs(x[k] - (Math.sqrt(a0) * mu + Math.sqrt(a0 * s * s + 1 - a0) * z)));
  });
  return worst;
}

test('the deterministic solvers show their order: doubling the steps divides the error by about 2 (DDIM) and 4 (2M)', () => {
  const orderOf = (errors: number[]) => Math.log2(errors[1] / errors[2]);
  const [ddim, twoM, threeM] = (['ddim', 'dpmpp-2m', 'dpmpp-3m'] as const).map((kind) => [16, 32, 64].map((K) => odeError(kind, K)));
  for (const errors of [ddim, twoM, threeM]) assert.ok(errors[2] > 1e-5, `error ${errors[2]} near float precision; use fewer steps`);
  assert.ok(Math.abs(orderOf(ddim) - 1) < 0.3, `DDIM: errors ${ddim}`);
  assert.ok(Math.abs(orderOf(twoM) - 2) < 0.3, `DPM-Solver++(2M): errors ${twoM}`);
  // 3M's first step has only one earlier prediction to use (first order), and that one step's error
  // shrinks as h²: the method is third order per step, second order overall from a cold start.
  assert.ok(orderOf(threeM) > 1.8, `DPM-Solver++(3M): errors ${threeM}`);
  threeM.forEach((e, i) => assert.ok(e < twoM[i], `3M ${e} vs 2M ${twoM[i]} at ${[16, 32, 64][i]} steps`));
});

test('DPM-Solver++ timesteps: distinct, from T − 1 down to 0, for every spacing and step count', () => {
  const scheduler = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, 'epsilon'));
  for (const spacing of SPACINGS) {
    for (const K of [1, 2, 3, 5, 10, 20, 50, 999, 1000]) {
      const times = solverTimesteps(scheduler, K, spacing);
      assert.equal(times.length, K);
      assert.equal(times[0], 999);
      if (K > 1) assert.equal(times[K - 1], 0, `${spacing} ${K}`);
      for (let i = 1; i < K; i++) assert.ok(times[i] < times[i - 1], `${spacing} ${K}: ${times}`);
    }
  }
  assert.deepEqual(solverTimesteps(scheduler, 5, 'linspace'), [999, 749, 500, 250, 0]);
  assert.deepEqual(samplingTimesteps(1000, 4), [[999, 749], [749, 499], [499, 249], [249, -1]]); // DDIM's, unchanged
  assert.deepEqual([...SAMPLERS], ['ancestral', 'ddim', 'dpmpp-2m', 'dpmpp-3m']);
});
