/**
 * The DDPM noise schedule (Ho et al. 2020) on plain numbers: the β schedule and the quantities derived
 * from it, the forward noising q(x_t | x_0) and the ancestral reverse step p(x_{t-1} | x_t).
 * Timesteps are indexed 0..T-1, as in the PyTorch reference; the model sees t/T.
 */
import { UserError } from '../errors';

export interface ScheduleConfig {
  kind: 'linear';
  timesteps: number;
  betaStart: number;
  betaEnd: number;
  /** What the model predicts. */
  prediction: Prediction;
}

/**
 * The model's output: the noise ε (Ho et al., the seed's), or the velocity v = √ᾱ_t·ε − √(1 − ᾱ_t)·x_0
 * (Salimans & Ho 2022). With ε, an error δ in the predicted noise's per-image mean moves x̂_0's mean by
 * δ·√(1 − ᾱ_t)/√ᾱ_t, 150x at t = T − 1; with v, by δ·√(1 − ᾱ_t): the early steps cannot drift a
 * briefly trained model's background.
 */
export type Prediction = 'epsilon' | 'v';
export const PREDICTIONS = ['epsilon', 'v'] as const satisfies readonly Prediction[];

export function linearSchedule(timesteps: number, betaStart: number, betaEnd: number, prediction: Prediction): ScheduleConfig {
  return { kind: 'linear', timesteps, betaStart, betaEnd, prediction };
}

export class DDPMScheduler {
  readonly config: ScheduleConfig;
  readonly timesteps: number;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  readonly alphasCumprod: Float64Array;
  readonly alphasCumprodPrev: Float64Array;
  /** Variance of q(x_{t-1} | x_t, x_0): β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t). */
  readonly posteriorVariance: Float64Array;
  /** Mean of q(x_{t-1} | x_t, x_0) = posteriorMeanCoef1 · x_0 + posteriorMeanCoef2 · x_t. */
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;

  readonly prediction: Prediction;

  constructor(config: ScheduleConfig) {
    if (config.kind !== 'linear') throw new UserError(`unknown beta schedule "${config.kind}"`);
    if (!PREDICTIONS.includes(config.prediction)) throw new UserError(`unknown prediction "${config.prediction}"`);
    const T = config.timesteps;
    this.config = config;
    this.prediction = config.prediction;
    this.timesteps = T;
    this.betas = new Float64Array(T);
    this.alphas = new Float64Array(T);
    this.alphasCumprod = new Float64Array(T);
    this.alphasCumprodPrev = new Float64Array(T);
    this.posteriorVariance = new Float64Array(T);
    this.posteriorMeanCoef1 = new Float64Array(T);
    this.posteriorMeanCoef2 = new Float64Array(T);
    let cumprod = 1;
    for (let t = 0; t < T; t++) {
      this.betas[t] = T === 1 ? config.betaStart : config.betaStart + ((config.betaEnd - config.betaStart) * t) / (T - 1);
      this.alphas[t] = 1 - this.betas[t];
      this.alphasCumprodPrev[t] = cumprod;
      cumprod *= this.alphas[t];
      this.alphasCumprod[t] = cumprod;
      this.posteriorVariance[t] = (this.betas[t] * (1 - this.alphasCumprodPrev[t])) / (1 - this.alphasCumprod[t]);
      this.posteriorMeanCoef1[t] = (this.betas[t] * Math.sqrt(this.alphasCumprodPrev[t])) / (1 - this.alphasCumprod[t]);
      this.posteriorMeanCoef2[t] = ((1 - this.alphasCumprodPrev[t]) * Math.sqrt(this.alphas[t])) / (1 - this.alphasCumprod[t]);
    }
  }

  /**
   * x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε, for a batch: `t` holds one timestep per example and each example
   * is x0.length / t.length numbers long.
   */
  addNoise(x0: Float32Array, eps: Float32Array, t: ArrayLike<number>, out: Float32Array = new Float32Array(x0.length)): Float32Array {
    const size = x0.length / t.length;
    for (let b = 0; b < t.length; b++) {
      const a = Math.sqrt(this.alphasCumprod[t[b]]);
      const s = Math.sqrt(1 - this.alphasCumprod[t[b]]);
      for (let i = b * size; i < (b + 1) * size; i++) out[i] = a * x0[i] + s * eps[i];
    }
    return out;
  }

  /** What the model learns to output for x_t made from x0 and eps: eps itself, or v = √ᾱ_t·ε − √(1 − ᾱ_t)·x_0. */
  trainingTarget(x0: Float32Array, eps: Float32Array, t: ArrayLike<number>): Float32Array {
    if (this.prediction === 'epsilon') return eps;
    const size = x0.length / t.length;
    const out = new Float32Array(x0.length);
    for (let b = 0; b < t.length; b++) {
      const a = Math.sqrt(this.alphasCumprod[t[b]]);
      const s = Math.sqrt(1 - this.alphasCumprod[t[b]]);
      for (let i = b * size; i < (b + 1) * size; i++) out[i] = a * eps[i] - s * x0[i];
    }
    return out;
  }

  /** The noise ε̂ a model output at x_t implies (in place): the output itself, or √ᾱ_t·v̂ + √(1 − ᾱ_t)·x_t. */
  noiseFromOutput(output: Float32Array, xt: Float32Array, t: number): Float32Array {
    if (this.prediction === 'epsilon') return output;
    const a = Math.sqrt(this.alphasCumprod[t]);
    const s = Math.sqrt(1 - this.alphasCumprod[t]);
    for (let i = 0; i < output.length; i++) output[i] = a * output[i] + s * xt[i];
    return output;
  }

  /**
   * One ancestral step from x_t to x_{t−1} for a batch at the same t, given the predicted noise ε̂:
   * mean = (x_t − β_t / √(1 − ᾱ_t) · ε̂) / √α_t, plus √(posterior variance) · z except at t = 0.
   * With `clipDenoised`, the mean is instead the posterior mean around the predicted x̂_0 clamped to the
   * data's range [−1, 1] (as lucidrains' and diffusers' samplers do): the same where x̂_0 is in range.
   */
  step(epsHat: Float32Array, t: number, xt: Float32Array, z: Float32Array, out: Float32Array = new Float32Array(xt.length), clipDenoised = false): Float32Array {
    const sigma = t > 0 ? Math.sqrt(this.posteriorVariance[t]) : 0;
    if (clipDenoised) {
      const c1 = this.posteriorMeanCoef1[t];
      const c2 = this.posteriorMeanCoef2[t];
      const [rootAbar, rootNoise] = this.startRoots(t);
      for (let i = 0; i < xt.length; i++) {
        const x0 = Math.min(1, Math.max(-1, (xt[i] - rootNoise * epsHat[i]) / rootAbar));
        out[i] = c1 * x0 + c2 * xt[i] + sigma * z[i];
      }
      return out;
    }
    const epsCoef = this.betas[t] / Math.sqrt(1 - this.alphasCumprod[t]);
    const scale = 1 / Math.sqrt(this.alphas[t]);
    for (let i = 0; i < xt.length; i++) out[i] = scale * (xt[i] - epsCoef * epsHat[i]) + sigma * z[i];
    return out;
  }

  /**
   * [√ᾱ_t, √(1 − ᾱ_t)]: the clean image the predicted noise implies is x̂_0 = (x_t − √(1 − ᾱ_t) · ε̂) / √ᾱ_t;
   * the samplers' loops take the roots once per step, not per pixel.
   */
  startRoots(t: number): [number, number] {
    return [Math.sqrt(this.alphasCumprod[t]), Math.sqrt(1 - this.alphasCumprod[t])];
  }

  /**
   * One DDIM step (Song et al. 2020, eq. 12) from x_t to x_{tPrev}, tPrev < t, or to x̂_0 when tPrev = −1:
   * x_prev = √ᾱ_prev · x̂_0 + √(1 − ᾱ_prev − σ²) · ε̂ + σ · z, with
   * σ = η · √((1 − ᾱ_prev) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_prev). η = 0 is deterministic; η = 1 with every
   * timestep is the ancestral step. With `clipDenoised`, x̂_0 is clamped and ε̂ re-derived from it.
   */
  ddimStep(epsHat: Float32Array, t: number, tPrev: number, xt: Float32Array, z: Float32Array, eta: number, out: Float32Array = new Float32Array(xt.length), clipDenoised = false): Float32Array {
    const abar = this.alphasCumprod[t];
    const abarPrev = tPrev >= 0 ? this.alphasCumprod[tPrev] : 1;
    const sigma = eta * Math.sqrt(((1 - abarPrev) / (1 - abar)) * (1 - abar / abarPrev));
    const dirCoef = Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma));
    const [rootAbar, rootNoise] = this.startRoots(t);
    const rootPrev = Math.sqrt(abarPrev);
    for (let i = 0; i < xt.length; i++) {
      let x0 = (xt[i] - rootNoise * epsHat[i]) / rootAbar;
      let eps = epsHat[i];
      if (clipDenoised && (x0 > 1 || x0 < -1)) {
        x0 = Math.min(1, Math.max(-1, x0));
        eps = (xt[i] - rootAbar * x0) / rootNoise;
      }
      out[i] = rootPrev * x0 + dirCoef * eps + sigma * z[i];
    }
    return out;
  }
}

/**
 * The K timesteps a few-step sampler visits, from T − 1 down, evenly spaced (as lucidrains'
 * denoising-diffusion-pytorch), each paired with the one it steps to; the last pair ends at −1 (x̂_0).
 */
export function samplingTimesteps(T: number, K: number): [number, number][] {
  if (!Number.isInteger(K) || K < 1 || K > T) throw new RangeError(`sampling steps must be an integer in 1..${T}, not ${K}`);
  const times = Array.from({ length: K + 1 }, (_, i) => Math.round(-1 + (i * T) / K)); // −1 … T − 1
  const pairs: [number, number][] = [];
  for (let i = K; i >= 1; i--) pairs.push([times[i], times[i - 1]]);
  return pairs;
}
