/**
 * The sampling pipeline: start from pure noise and run the full reverse process, all T ancestral steps,
 * with the model predicting the noise at each step.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Denoiser } from './models/denoiser';
import { Progress, silentProgress } from './progress';
import { Rng } from './rng';
import { DDPMScheduler } from './schedule';

export interface SampleOptions {
  n: number;
  rng: Rng;
  /** Images denoised together; larger batches use the matrix kernels better. */
  batchSize?: number;
  progress?: Progress;
  /** Clamp each step's predicted x_0 to [−1, 1] (see DDPMScheduler.step). */
  clipDenoised?: boolean;
}

/** Predicted noise for a batch at one timestep, as plain numbers. */
export function predictNoise(model: Denoiser, x: ArrayLike<number>, batch: number, t: number, timesteps: number): Float32Array {
  const pixels = x.length / batch;
  const eps = tf.tidy(() => model.predict(tf.tensor2d(x as Float32Array<ArrayBuffer>, [batch, pixels]), tf.fill([batch], t / timesteps) as tf.Tensor1D));
  const values = eps.dataSync() as Float32Array;
  eps.dispose();
  return values;
}

/** n images (n · pixels numbers) drawn from the model. */
export function generate(model: Denoiser, scheduler: DDPMScheduler, options: SampleOptions): Float32Array {
  const { n, rng, batchSize = 256, progress = silentProgress, clipDenoised = false } = options;
  const pixels = model.config.height * model.config.imageWidth;
  const T = scheduler.timesteps;
  const images = new Float32Array(n * pixels);
  const totalSteps = Math.ceil(n / batchSize) * T;
  const started = Date.now();
  progress.start(totalSteps, { images: n });
  let done = 0;
  for (let first = 0; first < n; first += batchSize) {
    const batch = Math.min(batchSize, n - first);
    let x: Float32Array = rng.fillNormal(new Float32Array(batch * pixels));
    const z = new Float32Array(batch * pixels);
    for (let t = T - 1; t >= 0; t--) {
      const epsHat = predictNoise(model, x, batch, t, T);
      if (t > 0) rng.fillNormal(z);
      x = scheduler.step(epsHat, t, x, z, x, clipDenoised);
      progress.update(++done, { images: n });
    }
    images.set(x, first * pixels);
  }
  progress.stop(`sampled ${n} images x ${T} steps in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return images;
}
