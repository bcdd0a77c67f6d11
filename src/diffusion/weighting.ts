/**
 * Where training spends its updates along the noise levels: which timesteps a batch draws (`NoiseLevels`)
 * and how much each one's error counts in the loss (`Weighting`). Ho et al. draw t uniformly and weight
 * every error alike; the alternatives here are the two from the literature the project measured
 * (docs/results.md, "Loss weighting").
 */
import { Rng } from '../rng';
import { DDPMScheduler } from './schedule';

/**
 * uniform: every timestep's mean squared error counts the same (Ho et al.).
 * min-snr: min-SNR-γ (Hang et al. 2023): the x_0-error of timestep t counts min(SNR_t, γ), so the
 * nearly clean timesteps, which a model learns fast and which pull the gradients apart from the noisy
 * ones, cannot dominate. As a weight on the model's own error: min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v.
 */
export type Weighting = { kind: 'uniform' } | { kind: 'min-snr'; gamma: number };
export const WEIGHTINGS = ['uniform', 'min-snr'] as const satisfies readonly Weighting['kind'][];
export const UNIFORM_WEIGHTING: Weighting = { kind: 'uniform' };

/**
 * uniform: t uniform in 0..T−1 (Ho et al.).
 * log-normal: EDM's noise levels (Karras et al. 2022): ln σ ~ N(mean, std²) with σ_t = √((1 − ᾱ_t)/ᾱ_t),
 * each draw taken to the timestep of nearest ln σ; the middle levels, where an image's shapes are decided,
 * get most updates. (v-prediction's unit weight is EDM's own loss weighting for data of unit spread.)
 */
export type NoiseLevels = { kind: 'uniform' } | { kind: 'log-normal'; mean: number; std: number };
export const NOISE_LEVELS = ['uniform', 'log-normal'] as const satisfies readonly NoiseLevels['kind'][];
export const UNIFORM_LEVELS: NoiseLevels = { kind: 'uniform' };

/** Signal-to-noise ratio of timestep t: ᾱ_t / (1 − ᾱ_t). */
export function snr(scheduler: DDPMScheduler, t: number): number {
  const a = scheduler.alphasCumprod[t];
  return a / (1 - a);
}

/** Each example's weight on its squared error at timesteps t, or null where all weigh 1. */
export function lossWeights(scheduler: DDPMScheduler, t: ArrayLike<number>, weighting: Weighting): Float32Array | null {
  if (weighting.kind === 'uniform') return null;
  const { gamma } = weighting;
  const v = scheduler.prediction === 'v';
  return Float32Array.from(t, (step) => {
    const s = snr(scheduler, step);
    return Math.min(s, gamma) / (v ? s + 1 : s);
  });
}

/** Draws a batch's timesteps from the run's generator. */
export class TimestepSampler {
  /** ln σ_t by t (increasing), for log-normal levels. */
  private readonly logSigma: Float64Array;

  constructor(
    private readonly scheduler: DDPMScheduler,
    private readonly levels: NoiseLevels,
  ) {
    this.logSigma = Float64Array.from(scheduler.alphasCumprod, (a) => 0.5 * Math.log((1 - a) / a));
  }

  draw(rng: Rng, count: number): Int32Array {
    const t = new Int32Array(count);
    const { levels } = this;
    // uniform keeps the stream runs always had: one int(T) per image
    for (let b = 0; b < count; b++) t[b] = levels.kind === 'uniform' ? rng.int(this.scheduler.timesteps) : this.nearest(levels.mean + levels.std * rng.normal());
    return t;
  }

  /** The timestep whose ln σ is nearest `logSigma`. */
  nearest(logSigma: number): number {
    const ls = this.logSigma;
    let lo = 0;
    let hi = ls.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ls[mid] < logSigma) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && logSigma - ls[lo - 1] < ls[lo] - logSigma ? lo - 1 : lo;
  }
}
