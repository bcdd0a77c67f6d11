/**
 * Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"): the
 * prediction D_bad + w·(D_good − D_bad), where the bad model is a weaker version of the good one, e.g.
 * an early checkpoint of the same run. Classifier-free guidance sharpens samples the same way but needs
 * a class-conditional model; this needs none. w = 1 is the good model alone. Mixing the raw outputs is
 * the same as mixing the predicted noise or x̂0, as long as both predict the same quantity (ε or v):
 * each is the output times one coefficient plus x_t times another (the caller checks the schedules).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Denoiser, ModelConfig } from './denoiser';

export class AutoGuided implements Denoiser {
  constructor(
    readonly good: Denoiser,
    readonly bad: Denoiser,
    /** The guidance weight w. */
    readonly weight: number,
  ) {}

  get config(): ModelConfig {
    return this.good.config;
  }

  get variables(): ReadonlyMap<string, tf.Variable> {
    return this.good.variables;
  }

  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D, labels?: tf.Tensor1D): tf.Tensor2D {
    return tf.tidy(() => {
      const bad = this.bad.predict(x, tFrac, labels);
      return tf.add(bad, tf.mul(tf.sub(this.good.predict(x, tFrac, labels), bad), this.weight));
    });
  }

  dispose(): void {
    this.good.dispose();
    this.bad.dispose();
  }
}
