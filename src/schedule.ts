/**
 * The DDPM noise schedule (Ho et al. 2020) on plain numbers: the β schedule and the quantities derived
 * from it, the forward noising q(x_t | x_0) and the ancestral reverse step p(x_{t-1} | x_t).
 * Timesteps are indexed 0..T-1, as in the PyTorch reference; the model sees t/T.
 */
export interface ScheduleConfig {
  kind: 'linear';
  timesteps: number;
  betaStart: number;
  betaEnd: number;
}

export function linearSchedule(timesteps = 1000, betaStart = 1e-4, betaEnd = 0.02): ScheduleConfig {
  return { kind: 'linear', timesteps, betaStart, betaEnd };
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

  constructor(config: ScheduleConfig = linearSchedule()) {
    if (config.kind !== 'linear') throw new Error(`unknown beta schedule "${config.kind}"`);
    const T = config.timesteps;
    this.config = config;
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

  /**
   * One ancestral step from x_t to x_{t−1} for a batch at the same t, given the predicted noise ε̂:
   * mean = (x_t − β_t / √(1 − ᾱ_t) · ε̂) / √α_t, plus √(posterior variance) · z except at t = 0.
   * With `clipDenoised`, the mean is instead the posterior mean around the predicted x̂_0 clamped to the
   * data's range [−1, 1] (as lucidrains' and diffusers' samplers do): the same where x̂_0 is in range.
   */
  step(epsHat: Float32Array, t: number, xt: Float32Array, z: Float32Array, out: Float32Array = new Float32Array(xt.length), clipDenoised = false): Float32Array {
    const sigma = t > 0 ? Math.sqrt(this.posteriorVariance[t]) : 0;
    if (clipDenoised) {
      const recip = 1 / Math.sqrt(this.alphasCumprod[t]);
      const noiseScale = Math.sqrt(1 - this.alphasCumprod[t]);
      const c1 = this.posteriorMeanCoef1[t];
      const c2 = this.posteriorMeanCoef2[t];
      for (let i = 0; i < xt.length; i++) {
        const x0 = Math.min(1, Math.max(-1, recip * (xt[i] - noiseScale * epsHat[i])));
        out[i] = c1 * x0 + c2 * xt[i] + sigma * z[i];
      }
      return out;
    }
    const epsCoef = this.betas[t] / Math.sqrt(1 - this.alphasCumprod[t]);
    const scale = 1 / Math.sqrt(this.alphas[t]);
    for (let i = 0; i < xt.length; i++) out[i] = scale * (xt[i] - epsCoef * epsHat[i]) + sigma * z[i];
    return out;
  }
}
