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
  channels: number;
}

/** The convolutional U-net with attention (Ho et al.; lucidrains' layout). */
export interface UnetConfig {
  kind: 'unet';
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
