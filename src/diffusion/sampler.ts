/**
 * The sampling pipeline: start from pure noise and run the reverse process with the model predicting
 * the noise at each step: all T ancestral steps (Ho et al.), or K DDIM steps (Song et al.).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Denoiser, imageSize } from '../models/denoiser';
import { Progress, silentProgress } from '../progress';
import { Rng } from '../rng';
import { DDPMScheduler, samplingTimesteps } from './schedule';

export interface SampleOptions {
  n: number;
  rng: Rng;
  /** Images denoised together; larger batches use the matrix kernels better. */
  batchSize?: number;
  progress?: Progress;
  /** Clamp each step's predicted x_0 to [−1, 1] (see DDPMScheduler.step). */
  clipDenoised?: boolean;
  /** DDIM with this many steps instead of the T ancestral ones. */
  steps?: number;
  /**
   * DDIM's stochasticity: 1 (the default) as much noise as the ancestral sampler, 0 deterministic.
   * 1 by default because at 100 steps it matches the ancestral sampler's quality where 0 does not on
   * these models (docs/results.md).
   */
  eta?: number;
}

/** The (t, t_prev) pairs a sampler visits and how it steps; t_prev = −1 ends at x̂_0. */
function reverseProcess(scheduler: DDPMScheduler, options: SampleOptions) {
  const T = scheduler.timesteps;
  const { steps, eta = 1, clipDenoised = false } = options;
  if (steps === undefined) {
    const pairs = Array.from({ length: T }, (_, i): [number, number] => [T - 1 - i, T - 2 - i]);
    return { pairs, step: (eps: Float32Array, t: number, _tPrev: number, x: Float32Array, z: Float32Array) => scheduler.step(eps, t, x, z, x, clipDenoised) };
  }
  return {
    pairs: samplingTimesteps(T, steps),
    step: (eps: Float32Array, t: number, tPrev: number, x: Float32Array, z: Float32Array) => scheduler.ddimStep(eps, t, tPrev, x, z, eta, x, clipDenoised),
  };
}

/** Predicted noise for a batch at one timestep, as plain numbers (converted from v for v-prediction models). */
export function predictNoise(model: Denoiser, scheduler: DDPMScheduler, x: Float32Array, batch: number, t: number): Float32Array {
  const pixels = x.length / batch;
  const output = tf.tidy(() => model.predict(tf.tensor2d(x as Float32Array<ArrayBuffer>, [batch, pixels]), tf.fill([batch], t / scheduler.timesteps) as tf.Tensor1D));
  const values = output.dataSync() as Float32Array;
  output.dispose();
  return scheduler.noiseFromOutput(values, x, t);
}

/** n images (n · pixels numbers) drawn from the model. */
export function generate(model: Denoiser, scheduler: DDPMScheduler, options: SampleOptions): Float32Array {
  const { n, rng, batchSize = 256, progress = silentProgress } = options;
  const pixels = imageSize(model.config);
  const { pairs, step } = reverseProcess(scheduler, options);
  const images = new Float32Array(n * pixels);
  const totalSteps = Math.ceil(n / batchSize) * pairs.length;
  const started = Date.now();
  progress.start(totalSteps, { images: n });
  let done = 0;
  for (let first = 0; first < n; first += batchSize) {
    const batch = Math.min(batchSize, n - first);
    let x: Float32Array = rng.fillNormal(new Float32Array(batch * pixels));
    const z = new Float32Array(batch * pixels);
    for (const [t, tPrev] of pairs) {
      const epsHat = predictNoise(model, scheduler, x, batch, t);
      if (tPrev >= 0) rng.fillNormal(z); // the last step adds no noise
      x = step(epsHat, t, tPrev, x, z);
      progress.update(++done, { images: n });
    }
    images.set(x, first * pixels);
  }
  progress.stop(`sampled ${n} images x ${pairs.length} steps in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return images;
}
