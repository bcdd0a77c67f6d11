/**
 * Classifier-free guidance (Ho & Salimans 2022): a conditional model trained with some labels dropped
 * to "no class" predicts both ways, and the prediction is uncond + w·(cond − uncond). w = 1 is plain
 * conditional sampling; larger w trades variety for images that are more clearly their class. As for
 * autoguidance, mixing the raw outputs (ε or v) is mixing the predicted noise. The two predictions are
 * one batch of twice the images: one pass through the net, on every thread.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Denoiser, ModelConfig } from './denoiser';

export class ClassifierFree implements Denoiser {
  constructor(
    readonly model: Denoiser,
    /** The guidance weight w. */
    readonly weight: number,
  ) {}

  get config(): ModelConfig {
    return this.model.config;
  }

  get variables(): ReadonlyMap<string, tf.Variable> {
    return this.model.variables;
  }

  /** Without labels (unconditional sampling) or at w = 1, the model's own prediction. */
  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D, labels?: tf.Tensor1D): tf.Tensor2D {
    if (!labels || this.weight === 1) return this.model.predict(x, tFrac, labels);
    return tf.tidy(() => {
      const batch = x.shape[0];
      const none = tf.fill([batch], this.config.classes) as tf.Tensor1D;
      const both = this.model.predict(tf.concat([x, x]), tf.concat([tFrac, tFrac]), tf.concat([labels, none]));
      const [conditional, unconditional] = tf.split(both, 2);
      return tf.add(unconditional, tf.mul(tf.sub(conditional, unconditional), this.weight));
    });
  }

  dispose(): void {
    this.model.dispose();
  }
}
