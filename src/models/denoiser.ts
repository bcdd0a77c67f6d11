import * as tf from '@tensorflow/tfjs-core';

/** What the scheduler and pipelines need of a model: ε̂ = model(x_t, t/T, y), and its weights. */
export interface Denoiser {
  readonly config: ModelConfig;
  /** Named trainable variables, in a fixed order (the checkpoint's order). */
  readonly variables: ReadonlyMap<string, tf.Variable>;
  /**
   * x: [batch, pixels] noisy images; tFrac: [batch] timestep over total steps; labels: [batch] class
   * indices of a conditional model (float; `config.classes` is "no class", as is an absent tensor).
   * Returns the prediction [batch, pixels].
   */
  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D, labels?: tf.Tensor1D): tf.Tensor2D;
  dispose(): void;
}

/**
 * The labels as one-hot rows of classes + 1 columns, the last the learned "no class" of classifier-free
 * guidance (Ho & Salimans 2022): a model trained with labels dropped to it is unconditional there.
 */
export function classOneHot(labels: tf.Tensor1D | undefined, batch: number, classes: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(tf.cast(labels ?? tf.fill([batch], classes), 'int32'), classes + 1), 'float32') as tf.Tensor2D);
}

export interface FcUnetConfig {
  kind: 'fc-unet';
  /** Classes it is conditioned on (0: unconditional): a one-hot of classes + 1 beside t/T in its input. */
  classes: number;
  /** w: widths are w, w/2, w/4. */
  width: number;
  height: number;
  imageWidth: number;
  channels: number;
}

/** The convolutional U-net with attention (Ho et al.; lucidrains' layout). */
export interface UnetConfig {
  kind: 'unet';
  /** Classes it is conditioned on (0: unconditional): a learned embedding added to the time embedding. */
  classes: number;
  height: number;
  imageWidth: number;
  channels: number;
  /** Channels of the first stage; stage i has baseChannels · channelMults[i]. */
  baseChannels: number;
  channelMults: number[];
  /** Residual blocks per stage (down and up). */
  blocksPerStage: number;
  /**
   * Side of the square patches folded into channels before the first convolution (and unfolded after the
   * last): 2 runs a 64-px net at 32 px with 4x the channels per pixel, as simple diffusion and DiT do.
   * Records before version 4 have 1.
   */
  patchSize: number;
  /** Side lengths of the feature maps (image side / patchSize / 2^stage) whose blocks are followed by self-attention; the middle always has it. */
  attentionResolutions: number[];
  /** GroupNorm groups (must divide every stage's channels). */
  groups: number;
  heads: number;
  /**
   * GroupNorm and SiLU before the output convolution (Ho et al.'s head). New nets leave them out, as
   * lucidrains' U-net does: the norm hides each image's mean from the output, and the nets then failed
   * to predict the noise's per-image mean, so sampled colours drifted. Checkpoints written before
   * (version 1 without the field) have them.
   */
  outputNorm: boolean;
}

export type ModelConfig = FcUnetConfig | UnetConfig;

/** Numbers per image: height × width × channels. */
export function imageSize(config: ModelConfig): number {
  return config.height * config.imageWidth * config.channels;
}

export function parameterCount(model: Denoiser): number {
  let n = 0;
  for (const v of model.variables.values()) n += v.size;
  return n;
}
