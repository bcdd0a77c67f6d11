import * as tf from '@tensorflow/tfjs-core';

/** What the scheduler and pipelines need of a model: ε̂ = model(x_t, t/T), and its weights. */
export interface Denoiser {
  readonly config: ModelConfig;
  /** Named trainable variables, in a fixed order (the checkpoint's order). */
  readonly variables: ReadonlyMap<string, tf.Variable>;
  /** x: [batch, pixels] noisy images; tFrac: [batch] timestep over total steps. Returns predicted noise [batch, pixels]. */
  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D): tf.Tensor2D;
  dispose(): void;
}

export interface FcUnetConfig {
  kind: 'fc-unet';
  /** w: widths are w, w/2, w/4. */
  width: number;
  height: number;
  imageWidth: number;
}

export type ModelConfig = FcUnetConfig;

export function parameterCount(model: Denoiser): number {
  let n = 0;
  for (const v of model.variables.values()) n += v.size;
  return n;
}
