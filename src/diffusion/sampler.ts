/**
 * The reverse process: start from pure noise and denoise with the model, by one of
 * - `ancestral`: all T steps of p(x_{t−1} | x_t) (Ho et al.);
 * - `ddim`: K DDIM steps (Song et al.), η = 1 as much fresh noise as the ancestral sampler, 0 none;
 * - `dpmpp-2m`, `dpmpp-3m`: K steps of DPM-Solver++ (Lu et al. 2022), the multistep solvers of the
 *   probability-flow ODE in its data-prediction form, of order 2 and 3: each step reuses the model's
 *   previous predictions of x_0 instead of calling it more than once.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Denoiser, imageSize } from '../models/denoiser';
import type { Progress } from '../progress';
import { Rng } from '../rng';
import { DDPMScheduler, samplingTimesteps } from './schedule';

export const SAMPLERS = ['ancestral', 'ddim', 'dpmpp-2m', 'dpmpp-3m'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/**
 * Where the K model calls of a DPM-Solver++ sampler sit, from T − 1 down to 0: evenly in t (`linspace`),
 * evenly in √t (`quadratic`, denser at low noise), or evenly in the half log-SNR λ (`logsnr`).
 */
export const SPACINGS = ['linspace', 'quadratic', 'logsnr'] as const;
export type Spacing = (typeof SPACINGS)[number];

export interface SampleOptions {
  n: number;
  rng: Rng;
  /** Images denoised together; larger batches use the matrix kernels better. */
  batchSize?: number;
  progress?: Progress;
  /** Clamp each step's predicted x_0 to [−1, 1] (see DDPMScheduler.step). */
  clipDenoised?: boolean;
  sampler: SamplerName;
  /** Model calls for the few-step samplers. */
  steps?: number;
  /** DDIM's stochasticity: 1 as much noise as the ancestral sampler, 0 deterministic (ddim only). */
  eta?: number;
  /** Where DPM-Solver++ calls the model (dpmpp only). */
  spacing?: Spacing;
  /** A conditional model's class for each of the n images (its "no class" for unconditional ones); absent: none. */
  labels?: Float32Array;
  /** Sees each batch's images before the first step (step 0) and after every step (for animations). */
  observe?: (x: Float32Array, first: number, step: number, of: number) => void;
}

/** Half log-SNR λ_t = log(α_t / σ_t) with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t); t = −1 is the clean data (λ = ∞). */
function logSnr(scheduler: DDPMScheduler, t: number): number {
  if (t < 0) return Infinity;
  const abar = scheduler.alphasCumprod[t];
  return 0.5 * Math.log(abar / (1 - abar));
}

/** K distinct timesteps from T − 1 down to 0 (for K ≥ 2), spaced as `spacing` says. */
export function solverTimesteps(scheduler: DDPMScheduler, K: number, spacing: Spacing): number[] {
  const T = scheduler.timesteps;
  if (!Number.isInteger(K) || K < 1 || K > T) throw new RangeError(`sampling steps must be an integer in 1..${T}, not ${K}`);
  if (K === 1) return [T - 1];
  const at = (u: number): number => {
    // u runs from 1 (the noisiest, T − 1) to 0 (t = 0)
    if (spacing === 'linspace') return u * (T - 1);
    if (spacing === 'quadratic') return u * u * (T - 1);
    const [hi, lo] = [logSnr(scheduler, 0), logSnr(scheduler, T - 1)];
    const target = hi + u * (lo - hi);
    let t = 0; // λ decreases with t: the last t whose λ is still ≥ target, interpolated
    while (t < T - 1 && logSnr(scheduler, t + 1) >= target) t++;
    if (t === T - 1) return t;
    const [a, b] = [logSnr(scheduler, t), logSnr(scheduler, t + 1)];
    return t + (a - target) / (a - b);
  };
  const times: number[] = [];
  for (let i = 0; i < K; i++) {
    // rounded, then kept strictly decreasing and room left for the ones still to come
    let t = Math.round(at(1 - i / (K - 1)));
    if (i > 0) t = Math.min(t, times[i - 1] - 1);
    t = Math.max(t, K - 1 - i);
    times.push(t);
  }
  return times;
}

/**
 * A DPM-Solver++ multistep sampler over the timesteps `times` then to t = −1 (x_0). `step` takes the
 * model's x̂_0 at the current timestep (`denoised`) and moves x in place to the next timestep, using up
 * to `order` − 1 earlier x̂_0s; the step to x_0 is first order (x̂_0 itself), and so, as in the paper's
 * "lower order final", the step before it at most second order.
 */
export class DpmSolverPlusPlus {
  private readonly lambdas: number[];
  private readonly history: { lambda: number; denoised: Float32Array }[] = [];
  private index = 0;

  constructor(
    private readonly scheduler: DDPMScheduler,
    readonly times: number[],
    private readonly order: 1 | 2 | 3,
  ) {
    this.lambdas = [...times, -1].map((t) => logSnr(scheduler, t));
  }

  private alphaSigma(t: number): [number, number] {
    if (t < 0) return [1, 0];
    const abar = this.scheduler.alphasCumprod[t];
    return [Math.sqrt(abar), Math.sqrt(1 - abar)];
  }

  step(x: Float32Array, denoised: Float32Array): void {
    const i = this.index++;
    const s = this.times[i];
    const t = i + 1 < this.times.length ? this.times[i + 1] : -1;
    const lambdaS = this.lambdas[i];
    this.history.unshift({ lambda: lambdaS, denoised });
    if (this.history.length > 3) this.history.pop();
    const remaining = this.times.length - i; // steps left including this one
    const order = Math.min(this.order, this.history.length, remaining === 1 ? 1 : remaining === 2 ? 2 : 3);
    const [alphaT, sigmaT] = this.alphaSigma(t);
    const [, sigmaS] = this.alphaSigma(s);
    if (t < 0) {
      x.set(denoised); // σ_t = 0: the solution is the data prediction itself
      return;
    }
    const h = this.lambdas[i + 1] - lambdaS;
    const phi1 = Math.expm1(-h); // e^{−h} − 1
    const ratio = sigmaT / sigmaS;
    const m0 = denoised;
    if (order === 1) {
      for (let k = 0; k < x.length; k++) x[k] = ratio * x[k] - alphaT * phi1 * m0[k];
      return;
    }
    const m1 = this.history[1].denoised;
    const r0 = (lambdaS - this.history[1].lambda) / h;
    if (order === 2) {
      // x_t = (σ_t/σ_s)·x_s − α_t·φ1·(m0 + (m0 − m1)/(2·r0))
      const c = -alphaT * phi1;
      const d = (-0.5 * alphaT * phi1) / r0;
      for (let k = 0; k < x.length; k++) x[k] = ratio * x[k] + c * m0[k] + d * (m0[k] - m1[k]);
      return;
    }
    const m2 = this.history[2].denoised;
    const r1 = (this.history[1].lambda - this.history[2].lambda) / h;
    const phi2 = phi1 / h + 1;
    const phi3 = phi2 / h - 0.5;
    for (let k = 0; k < x.length; k++) {
      const d10 = (m0[k] - m1[k]) / r0;
      const d11 = (m1[k] - m2[k]) / r1;
      const d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
      const d2 = (d10 - d11) / (r0 + r1);
      x[k] = ratio * x[k] - alphaT * phi1 * m0[k] + alphaT * phi2 * d1 - alphaT * phi3 * d2;
    }
  }
}

/** Predicted noise for a batch at one timestep, as plain numbers (converted from v for v-prediction models). */
export function predictNoise(model: Denoiser, scheduler: DDPMScheduler, x: Float32Array, batch: number, t: number, labels?: Float32Array): Float32Array {
  const pixels = x.length / batch;
  const output = tf.tidy(() => model.predict(tf.tensor2d(x as Float32Array<ArrayBuffer>, [batch, pixels]), tf.fill([batch], t / scheduler.timesteps) as tf.Tensor1D, labels ? tf.tensor1d(labels) : undefined));
  const values = output.dataSync() as Float32Array;
  output.dispose();
  return scheduler.noiseFromOutput(values, x, t);
}

/** The sampler the options name, and the model calls it makes per batch. */
export function samplerOf(options: Pick<SampleOptions, 'sampler' | 'steps'>, T: number): { sampler: SamplerName; calls: number } {
  const { sampler } = options;
  return { sampler, calls: sampler === 'ancestral' ? T : (options.steps ?? T) };
}

/**
 * Denoises one batch of starting noise x in place with the chosen sampler, yielding after every model
 * call (so a page can draw the images as they form); `generate` runs it through.
 */
export function* denoiseSteps(model: Denoiser, scheduler: DDPMScheduler, x: Float32Array, batch: number, options: SampleOptions): Generator<{ step: number; of: number; t: number }> {
  const { rng, eta, clipDenoised = false, spacing, labels } = options;
  const { sampler, calls } = samplerOf(options, scheduler.timesteps);
  if (sampler === 'ddim' && eta === undefined) throw new Error('the ddim sampler needs its eta');
  if (sampler.startsWith('dpmpp') && spacing === undefined) throw new Error('a dpmpp sampler needs its spacing');
  const z = new Float32Array(x.length);
  let step = 0;
  if (sampler === 'ancestral' || sampler === 'ddim') {
    for (const [t, tPrev] of samplingTimesteps(scheduler.timesteps, calls)) { // all T for ancestral
      const epsHat = predictNoise(model, scheduler, x, batch, t, labels);
      // the last step adds no noise, nor does deterministic DDIM (its draws were 2 ms of a 64-image step)
      if (tPrev >= 0 && (sampler === 'ancestral' || eta! > 0)) rng.fillNormal(z);
      if (sampler === 'ancestral') scheduler.step(epsHat, t, x, z, x, clipDenoised);
      else scheduler.ddimStep(epsHat, t, tPrev, x, z, eta!, x, clipDenoised);
      yield { step: ++step, of: calls, t };
    }
    return;
  }
  const solver = new DpmSolverPlusPlus(scheduler, solverTimesteps(scheduler, calls, spacing!), sampler === 'dpmpp-2m' ? 2 : 3);
  for (const t of solver.times) {
    const epsHat = predictNoise(model, scheduler, x, batch, t, labels);
    const denoised = new Float32Array(x.length);
    const [rootAbar, rootNoise] = scheduler.startRoots(t);
    for (let k = 0; k < x.length; k++) {
      const x0 = (x[k] - rootNoise * epsHat[k]) / rootAbar;
      denoised[k] = clipDenoised ? Math.min(1, Math.max(-1, x0)) : x0;
    }
    solver.step(x, denoised);
    yield { step: ++step, of: calls, t };
  }
}

const silent: Progress = { start() {}, update() {}, stop() {} };

/** Where sampling is: batch [first, first + batch) of n at `step` of `of` (0 = its starting noise), its images x now. */
export interface SamplingStep {
  /** Images drawn in all. */
  n: number;
  first: number;
  batch: number;
  step: number;
  of: number;
  /** The batch's images as they are now (not clamped; [−1, 1] when done), valid until the next step. */
  x: Float32Array;
}

/**
 * n images (n · pixels numbers) drawn from the model batch by batch, yielding before each batch's first
 * step and after every step (for animations, progress, and pages that paint between steps); returns
 * them all. `generate` runs it through.
 */
export function* generateSteps(model: Denoiser, scheduler: DDPMScheduler, options: SampleOptions): Generator<SamplingStep, Float32Array> {
  const { n, rng, batchSize = 256 } = options;
  const pixels = imageSize(model.config);
  const { calls } = samplerOf(options, scheduler.timesteps);
  const images = new Float32Array(n * pixels);
  for (let first = 0; first < n; first += batchSize) {
    const batch = Math.min(batchSize, n - first);
    const x: Float32Array = rng.fillNormal(new Float32Array(batch * pixels));
    yield { n, first, batch, step: 0, of: calls, x };
    for (const { step } of denoiseSteps(model, scheduler, x, batch, { ...options, labels: options.labels?.subarray(first, first + batch) })) {
      yield { n, first, batch, step, of: calls, x };
    }
    images.set(x, first * pixels);
  }
  return images;
}

/** n images (n · pixels numbers) drawn from the model, reported to options.progress and options.observe. */
export function generate(model: Denoiser, scheduler: DDPMScheduler, options: SampleOptions): Float32Array {
  const run = reported(model, scheduler, options);
  for (let next = run.steps.next(); ; next = run.steps.next()) {
    if (next.done) return run.finish(next.value);
    run.seen(next.value);
  }
}

/** As generate, awaiting `pause` after each step where it returns a promise (a page paints then). */
export async function generateAsync(model: Denoiser, scheduler: DDPMScheduler, options: SampleOptions, pause: (step: SamplingStep) => void | Promise<void> = () => {}): Promise<Float32Array> {
  const run = reported(model, scheduler, options);
  for (let next = run.steps.next(); ; next = run.steps.next()) {
    if (next.done) return run.finish(next.value);
    run.seen(next.value);
    const paused = pause(next.value);
    if (paused) await paused;
  }
}

/** generateSteps with its progress bar and observer. */
function reported(model: Denoiser, scheduler: DDPMScheduler, options: SampleOptions) {
  const { n, batchSize = 256, progress = silent } = options;
  const { sampler, calls } = samplerOf(options, scheduler.timesteps);
  const started = Date.now();
  progress.start(Math.ceil(n / batchSize) * calls, { images: n });
  let done = 0;
  return {
    steps: generateSteps(model, scheduler, options),
    seen({ x, first, step, of }: SamplingStep) {
      options.observe?.(x, first, step, of);
      if (step > 0) progress.update(++done, { images: n });
    },
    finish(images: Float32Array) {
      progress.stop(`sampled ${n} images x ${calls} ${sampler} steps in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return images;
    },
  };
}

/**
 * The blog post's starting point: noise clean images x0 forward to timestep t, then run the reverse
 * process back from t with `steps` DDIM steps (η = 0 deterministic, 1 stochastic). Returns the noisy
 * images and the denoised ones; from a small t the originals come back, from t near T new images appear.
 */
export function noiseAndDenoise(model: Denoiser, scheduler: DDPMScheduler, x0: Float32Array, batch: number, t: number, options: { rng: Rng; eta?: number; steps?: number; labels?: Float32Array }): { noisy: Float32Array; denoised: Float32Array } {
  const { rng, eta = 0, steps = 50, labels } = options;
  const noisy = scheduler.addNoise(x0, rng.fillNormal(new Float32Array(x0.length)), new Array(batch).fill(t));
  const x = noisy.slice();
  const z = new Float32Array(x.length);
  // DDIM's evenly spaced steps over a process of t + 1 timesteps: from t down to −1
  for (const [from, to] of samplingTimesteps(t + 1, Math.min(steps, t + 1))) {
    const epsHat = predictNoise(model, scheduler, x, batch, from, labels);
    if (to >= 0 && eta > 0) rng.fillNormal(z);
    scheduler.ddimStep(epsHat, from, to, x, z, eta, x);
  }
  return { noisy, denoised: x };
}
