/**
 * Exact denoisers for the sampler and editing tests: for data whose pixels are drawn independently from
 * a Gaussian mixture, the noise a perfect model predicts at x_t is known in closed form.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { DDPMScheduler } from '../../../src/diffusion/schedule';
import { Denoiser, FcUnetConfig } from '../../../src/models/denoiser';

export const SIDE = 10; // 100 pixels an image

export interface Part {
  weight: number;
  mu: number;
  s: number;
}

/** E[x_0 | x_t] for data whose pixels are drawn independently from the mixture `parts`. */
export function posteriorMean(parts: Part[], abar: number, x: number): number {
  const a = Math.sqrt(abar);
  let norm = 0;
  let sum = 0;
  for (const { weight, mu, s } of parts) {
    const v = abar * s * s + 1 - abar;
    const r = weight * Math.exp(-((x - a * mu) ** 2) / (2 * v)) / Math.sqrt(v);
    norm += r;
    sum += r * (mu + ((a * s * s) / v) * (x - a * mu));
  }
  return sum / norm;
}

/** The perfect denoiser for the mixture: it outputs E[ε | x_t] (or E[v | x_t]) exactly. */
export function exactDenoiser(parts: Part[], scheduler: DDPMScheduler): Denoiser {
  const config: FcUnetConfig = { kind: 'fc-unet', classes: 0, width: 4, height: SIDE, imageWidth: SIDE, channels: 1 };
  return {
    config,
    variables: new Map(),
    predict(x: tf.Tensor2D, tFrac: tf.Tensor1D): tf.Tensor2D {
      const xs = x.dataSync();
      const ts = tFrac.dataSync();
      const pixels = x.shape[1];
      const out = new Float32Array(xs.length);
      for (let i = 0; i < xs.length; i++) {
        const t = Math.round(ts[Math.floor(i / pixels)] * scheduler.timesteps);
        const abar = scheduler.alphasCumprod[t];
        const x0 = posteriorMean(parts, abar, xs[i]);
        const eps = (xs[i] - Math.sqrt(abar) * x0) / Math.sqrt(1 - abar);
        out[i] = scheduler.prediction === 'epsilon' ? eps : Math.sqrt(abar) * eps - Math.sqrt(1 - abar) * x0;
      }
      return tf.tensor2d(out, x.shape);
    },
    dispose() {},
  };
}

