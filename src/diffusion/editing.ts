/**
 * Starting from given images instead of noise: DDIM inversion (Song et al. 2020: the deterministic
 * sampler run backwards, image → noise), spherical interpolation between noises, image-to-image at a
 * strength (SDEdit, Meng et al. 2021: noise to t = s·T, sample back) and inpainting with RePaint's
 * resampling (Lugmayr et al. 2022) on the few-step DDIM schedule. Values are [−1, 1] pixels, batch
 * after batch as the samplers take them.
 */
import { Denoiser } from '../models/denoiser';
import { Rng } from '../rng';
import { predictNoise } from './sampler';
import { DDPMScheduler, samplingTimesteps } from './schedule';

/**
 * The noise x_T from which K deterministic DDIM steps (η = 0) draw x0: each DDIM step taken upwards.
 * The step down from t uses the noise predicted at (x_t, t), unknown while x_t is being found: plain
 * inversion takes the prediction at the lower timestep instead (error falling only linearly with K);
 * `refine` fixed-point passes then predict at the x_t found so far and take the step again, which
 * converges to the step's exact inverse where the model is smooth (one more model call each).
 */
export function ddimInvert(model: Denoiser, scheduler: DDPMScheduler, x0: Float32Array, batch: number, K: number, labels?: Float32Array, refine = 0): Float32Array {
  let x = x0.slice();
  const upward = samplingTimesteps(scheduler.timesteps, K).reverse(); // [t, from] pairs, from −1 up
  for (const [to, from] of upward) {
    const abarFrom = from >= 0 ? scheduler.alphasCumprod[from] : 1;
    const abarTo = scheduler.alphasCumprod[to];
    const rootFrom = Math.sqrt(abarFrom), noiseFrom = Math.sqrt(1 - abarFrom);
    const rootTo = Math.sqrt(abarTo), noiseTo = Math.sqrt(1 - abarTo);
    const start = x;
    const up = (eps: Float32Array) => {
      const next = new Float32Array(start.length);
      for (let i = 0; i < next.length; i++) next[i] = rootTo * ((start[i] - noiseFrom * eps[i]) / rootFrom) + noiseTo * eps[i];
      return next;
    };
    x = up(predictNoise(model, scheduler, start, batch, Math.max(from, 0), labels));
    for (let r = 0; r < refine; r++) x = up(predictNoise(model, scheduler, x, batch, to, labels));
  }
  return x;
}

/** K deterministic DDIM steps (η = 0) from x_T: ddimInvert's inverse. */
export function ddimDecode(model: Denoiser, scheduler: DDPMScheduler, xT: Float32Array, batch: number, K: number, labels?: Float32Array): Float32Array {
  const x = xT.slice();
  const z = new Float32Array(x.length);
  for (const [t, tPrev] of samplingTimesteps(scheduler.timesteps, K)) {
    scheduler.ddimStep(predictNoise(model, scheduler, x, batch, t, labels), t, tPrev, x, z, 0, x);
  }
  return x;
}

/**
 * Spherical interpolation between two noises of equal size at fraction f (Shoemake; as diffusion
 * models' latents are interpolated, keeping the norm a Gaussian sample has): a at 0, b at 1 exactly.
 */
export function slerp(a: Float32Array, b: Float32Array, f: number): Float32Array {
  if (a.length !== b.length) throw new RangeError(`slerp of ${a.length} and ${b.length} values`);
  if (f === 0) return a.slice();
  if (f === 1) return b.slice();
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  const cos = Math.min(1, Math.max(-1, dot / Math.sqrt(na * nb)));
  const theta = Math.acos(cos);
  const out = new Float32Array(a.length);
  if (theta < 1e-4) {
    for (let i = 0; i < a.length; i++) out[i] = (1 - f) * a[i] + f * b[i]; // nearly parallel: a straight line
    return out;
  }
  const wa = Math.sin((1 - f) * theta) / Math.sin(theta), wb = Math.sin(f * theta) / Math.sin(theta);
  for (let i = 0; i < a.length; i++) out[i] = wa * a[i] + wb * b[i];
  return out;
}

/**
 * SDEdit: the images noised to timestep round(s·T) − 1 and brought back with `steps` DDIM steps of
 * noise η; strength 0 returns them unchanged (no model call), 1 samples afresh from pure noise.
 */
export function sdEdit(model: Denoiser, scheduler: DDPMScheduler, x0: Float32Array, batch: number, strength: number, options: { rng: Rng; steps: number; eta: number; labels?: Float32Array }): Float32Array {
  if (!(strength >= 0 && strength <= 1)) throw new RangeError(`strength must be in [0, 1], not ${strength}`);
  const t = Math.round(strength * scheduler.timesteps) - 1;
  if (t < 0) return x0.slice();
  const x = scheduler.addNoise(x0, options.rng.fillNormal(new Float32Array(x0.length)), new Array(batch).fill(t));
  const z = new Float32Array(x.length);
  for (const [from, to] of samplingTimesteps(t + 1, Math.min(options.steps, t + 1))) {
    const eps = predictNoise(model, scheduler, x, batch, from, options.labels);
    if (to >= 0 && options.eta > 0) options.rng.fillNormal(z);
    scheduler.ddimStep(eps, from, to, x, z, options.eta, x);
  }
  return x;
}

export interface RepaintOptions {
  rng: Rng;
  /** Model calls on the way down (DDIM's evenly spaced timesteps). */
  steps: number;
  /** RePaint's jump: after every `jump` steps down, noise back up `jump` steps and go down again ... */
  jump: number;
  /** ... this many times in all (1: no resampling). */
  resample: number;
  labels?: Float32Array;
  /** Clamp each step's predicted clean image to [−1, 1] (as the checkpoint's recipe says for sampling). */
  clipDenoised?: boolean;
}

/**
 * RePaint on K DDIM steps of η = 1: at every step the known pixels (mask 0) are the input noised to
 * that step's timestep and the unknown ones (mask 1) the model's step, so the model keeps seeing the
 * known part; going back up `jump` steps (fresh forward noise) and down again `resample` times lets the
 * unknown part settle into agreement with the known one. The known pixels of the result are the
 * input's exactly. `mask` holds one value per pixel (channels share it), 1 where to regenerate.
 */
export function repaint(model: Denoiser, scheduler: DDPMScheduler, x0: Float32Array, mask: Float32Array, batch: number, options: RepaintOptions): Float32Array {
  const { rng, steps, jump, resample, labels } = options;
  const pixels = mask.length;
  const size = x0.length / batch;
  const channels = size / pixels;
  if (!Number.isInteger(channels)) throw new RangeError(`a mask of ${mask.length} pixels for images of ${size} values`);
  // per value: regenerate it (its pixel's mask is 1)?
  const unknown = Uint8Array.from({ length: x0.length }, (_, i) => (mask[Math.floor((i % size) / channels)] > 0.5 ? 1 : 0));
  const times = [-1, ...samplingTimesteps(scheduler.timesteps, steps).map(([t]) => t).reverse()]; // −1, then ascending
  const abar = (k: number) => (times[k] >= 0 ? scheduler.alphasCumprod[times[k]] : 1);
  const noise = new Float32Array(x0.length);
  const z = new Float32Array(x0.length);
  // x at level k (timestep times[k]); start from pure noise at the top
  const x = rng.fillNormal(new Float32Array(x0.length));
  const knownAt = (k: number) => {
    // the input noised to level k, written over the known pixels of x
    const a = Math.sqrt(abar(k)), s = Math.sqrt(1 - abar(k));
    rng.fillNormal(noise);
    for (let i = 0; i < x.length; i++) if (!unknown[i]) x[i] = a * x0[i] + s * noise[i];
  };
  const down = (k: number) => {
    // one DDIM step of η = 1 from level k to k − 1 on the unknown pixels, the known ones from the input
    const eps = predictNoise(model, scheduler, x, batch, times[k], labels);
    if (k - 1 > 0) rng.fillNormal(z);
    else z.fill(0);
    scheduler.ddimStep(eps, times[k], times[k - 1], x, z, 1, x, options.clipDenoised);
    if (k - 1 > 0) knownAt(k - 1);
  };
  const up = (k: number, j: number) => {
    // forward noise from level k to k + j: x ← √(ᾱ_hi/ᾱ_lo)·x + √(1 − ᾱ_hi/ᾱ_lo)·ε
    const ratio = abar(k + j) / abar(k);
    const a = Math.sqrt(ratio), s = Math.sqrt(1 - ratio);
    rng.fillNormal(noise);
    for (let i = 0; i < x.length; i++) x[i] = a * x[i] + s * noise[i];
  };
  let k = times.length - 1;
  knownAt(k);
  while (k > 0) {
    // a block of up to `jump` steps down, then back up and down again, resample − 1 more times
    const block = Math.min(jump, k);
    for (let r = 0; r < resample; r++) {
      for (let i = 0; i < block; i++) down(k - i);
      if (r < resample - 1 && k - block > 0) up(k - block, block);
      else break;
    }
    k -= block;
  }
  for (let i = 0; i < x.length; i++) if (!unknown[i]) x[i] = x0[i];
  return x;
}
