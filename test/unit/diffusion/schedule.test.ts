import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DDPMScheduler, linearSchedule, samplingTimesteps } from '../../../src/diffusion/schedule';
import { Rng } from '../../../src/rng';
import { mean, variance } from '../../helpers';

const s = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, 'epsilon'));

test('linear betas run from 1e-4 to 0.02 in T steps', () => {
  assert.equal(s.betas.length, 1000);
  assert.ok(Math.abs(s.betas[0] - 1e-4) < 1e-12);
  assert.ok(Math.abs(s.betas[999] - 0.02) < 1e-12);
  assert.ok(Math.abs(s.betas[500] - (1e-4 + (0.02 - 1e-4) * (500 / 999))) < 1e-12);
});

test('alphasCumprod matches the closed form exp(Σ log(1 − β))', () => {
  for (const t of [0, 1, 10, 500, 999]) {
    let logSum = 0;
    for (let k = 0; k <= t; k++) logSum += Math.log(1 - (1e-4 + ((0.02 - 1e-4) * k) / 999));
    assert.ok(Math.abs(s.alphasCumprod[t] - Math.exp(logSum)) < 1e-12, `t=${t}`);
  }
  // ᾱ_T for the standard schedule is about 4.04e-5: x_T is essentially pure noise.
  assert.ok(Math.abs(s.alphasCumprod[999] - 4.0358e-5) < 1e-8);
  assert.equal(s.alphasCumprodPrev[0], 1);
  assert.equal(s.alphasCumprodPrev[10], s.alphasCumprod[9]);
});

test('posterior variance is β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t), zero at t = 0', () => {
  assert.equal(s.posteriorVariance[0], 0);
  const t = 300;
  const expected = (s.betas[t] * (1 - s.alphasCumprod[t - 1])) / (1 - s.alphasCumprod[t]);
  assert.ok(Math.abs(s.posteriorVariance[t] - expected) < 1e-15);
  assert.ok(s.posteriorVariance[t] < s.betas[t]);
});

test('addNoise has mean √ᾱ_t·x0 and variance 1 − ᾱ_t over a large batch', () => {
  const rng = new Rng(1);
  const n = 200_000;
  for (const t of [0, 250, 999]) {
    const x0 = new Float32Array(n).fill(0.7);
    const eps = rng.fillNormal(new Float32Array(n));
    const xt = s.addNoise(x0, eps, new Int32Array(n).fill(t));
    const a = s.alphasCumprod[t];
    assert.ok(Math.abs(mean(xt) - Math.sqrt(a) * 0.7) < 0.01, `mean at t=${t}`);
    assert.ok(Math.abs(variance(xt) - (1 - a)) < 0.01 * Math.max(1 - a, 0.01) + 1e-4, `variance at t=${t}`);
  }
});

test('addNoise uses each example its own timestep', () => {
  const x0 = new Float32Array([1, 1, 1, 1]);
  const eps = new Float32Array([0, 0, 0, 0]);
  const xt = s.addNoise(x0, eps, [0, 999]);
  assert.ok(Math.abs(xt[0] - Math.sqrt(s.alphasCumprod[0])) < 1e-6);
  assert.ok(Math.abs(xt[3] - Math.sqrt(s.alphasCumprod[999])) < 1e-6);
});

test('step with the true noise gives the posterior mean μ̃(x_t, x_0) plus σ_t·z', () => {
  for (const t of [1, 100, 999]) {
    const x0 = new Float32Array([0.3, -0.8, 1]);
    const eps = new Float32Array([1.2, -0.4, 0.1]);
    const xt = s.addNoise(x0, eps, [t]);
    const z = new Float32Array([0.5, -1, 2]);
    const out = s.step(eps, t, xt, z);
    // Ho et al. eq. 7: μ̃ = √ᾱ_{t−1}β_t/(1−ᾱ_t)·x0 + √α_t(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t
    const c0 = (Math.sqrt(s.alphasCumprodPrev[t]) * s.betas[t]) / (1 - s.alphasCumprod[t]);
    const ct = (Math.sqrt(s.alphas[t]) * (1 - s.alphasCumprodPrev[t])) / (1 - s.alphasCumprod[t]);
    for (let i = 0; i < 3; i++) {
      const expected = c0 * x0[i] + ct * xt[i] + Math.sqrt(s.posteriorVariance[t]) * z[i];
      assert.ok(Math.abs(out[i] - expected) < 1e-5, `t=${t} i=${i}: ${out[i]} vs ${expected}`);
    }
  }
});

test('the last step (t = 0) adds no noise and recovers x0 from the true noise', () => {
  const x0 = new Float32Array([0.25, -0.5]);
  const eps = new Float32Array([0.9, 0.3]);
  const xt = s.addNoise(x0, eps, [0]);
  const out = s.step(eps, 0, xt, new Float32Array([100, 100]));
  assert.ok(Math.abs(out[0] - 0.25) < 1e-5 && Math.abs(out[1] + 0.5) < 1e-5);
});

test('clipDenoised: the same step where x̂0 is in range; a clamped x̂0 where it is not', () => {
  const t = 400;
  const z = new Float32Array([0.5, -1]);
  const inRange = new Float32Array([0.3, -0.6]);
  const eps = new Float32Array([0.7, -1.1]);
  const xt = s.addNoise(inRange, eps, [t]);
  const plain = s.step(eps, t, xt, z);
  const clipped = s.step(eps, t, xt, z, undefined, true);
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(plain[i] - clipped[i]) < 1e-5);
  // x̂0 = 3 and −2 are clamped to 1 and −1 before the posterior mean is taken.
  const far = s.addNoise(new Float32Array([3, -2]), eps, [t]);
  const out = s.step(eps, t, far, z, undefined, true);
  const sigma = Math.sqrt(s.posteriorVariance[t]);
  [1, -1].forEach((x0, i) => {
    const expected = s.posteriorMeanCoef1[t] * x0 + s.posteriorMeanCoef2[t] * far[i] + sigma * z[i];
    assert.ok(Math.abs(out[i] - expected) < 1e-5, `${out[i]} vs ${expected}`);
  });
});

test('sampling timesteps: K evenly spaced from T − 1 down to −1; K = T visits every step', () => {
  assert.deepEqual(samplingTimesteps(1000, 4), [[999, 749], [749, 499], [499, 249], [249, -1]]);
  const all = samplingTimesteps(1000, 1000);
  assert.equal(all.length, 1000);
  all.forEach(([t, prev], i) => {
    assert.equal(t, 999 - i);
    assert.equal(prev, t - 1);
  });
  assert.throws(() => samplingTimesteps(1000, 1001), RangeError);
});

test('a DDIM step with η = 1 and the next timestep is the ancestral step', () => {
  const rng = new Rng(5);
  for (const t of [1, 37, 500, 999]) {
    const xt = rng.fillNormal(new Float32Array(64));
    const eps = rng.fillNormal(new Float32Array(64));
    const z = rng.fillNormal(new Float32Array(64));
    const ancestral = s.step(eps, t, xt, z);
    const ddim = s.ddimStep(eps, t, t - 1, xt, z, 1);
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(ancestral[i] - ddim[i]) < 1e-4, `t=${t}: ${ancestral[i]} vs ${ddim[i]}`);
  }
});

test('deterministic DDIM with a perfect denoiser of one image reaches that image in any number of steps', () => {
  const x0 = new Float32Array([0.5, -1, 0.25, 1]);
  for (const K of [1, 5, 50]) {
    let x = new Rng(K).fillNormal(new Float32Array(4));
    for (const [t, prev] of samplingTimesteps(1000, K)) {
      const a = s.alphasCumprod[t];
      const eps = x.map((v, i) => (v - Math.sqrt(a) * x0[i]) / Math.sqrt(1 - a));
      x = s.ddimStep(eps, t, prev, x, new Float32Array(4).fill(9), 0);
    }
    x.forEach((v, i) => assert.ok(Math.abs(v - x0[i]) < 1e-4, `K=${K}: ${v} vs ${x0[i]}`));
  }
});

test('v-prediction: the target is √ᾱ·ε − √(1 − ᾱ)·x0, and the noise a true v implies is ε; ε-prediction passes outputs through', () => {
  const v = new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, 'v'));
  assert.equal(new DDPMScheduler(linearSchedule(1000, 1e-4, 0.02, 'epsilon')).prediction, 'epsilon');
  assert.equal(linearSchedule(1000, 1e-4, 0.02, 'epsilon').prediction, 'epsilon');
  const rng = new Rng(4);
  const x0 = rng.fillNormal(new Float32Array(12));
  const eps = rng.fillNormal(new Float32Array(12));
  const t = [0, 500, 999];
  const target = v.trainingTarget(x0, eps, t);
  const xt = v.addNoise(x0, eps, t);
  t.forEach((tb, b) => {
    const a = v.alphasCumprod[tb];
    for (let i = b * 4; i < b * 4 + 4; i++) assert.ok(Math.abs(target[i] - (Math.sqrt(a) * eps[i] - Math.sqrt(1 - a) * x0[i])) < 1e-6);
    const implied = v.noiseFromOutput(target.slice(b * 4, b * 4 + 4), xt.slice(b * 4, b * 4 + 4), tb);
    implied.forEach((e, i) => assert.ok(Math.abs(e - eps[b * 4 + i]) < 1e-5, `t=${tb}: ${e} vs ${eps[b * 4 + i]}`));
  });
  assert.equal(s.trainingTarget(x0, eps, t), eps);
  const out = new Float32Array([1, 2]);
  assert.equal(s.noiseFromOutput(out, new Float32Array(2), 5), out);
  assert.throws(() => new DDPMScheduler({ ...linearSchedule(10, 1e-4, 0.02, 'epsilon'), prediction: 'x0' as never }), /unknown prediction/);
});
