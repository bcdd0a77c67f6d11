/**
 * Training recipes: the seed's exact one, and the default that trains the same fully connected U-net
 * to better samples per minute here (docs/results.md).
 * Every field stays selectable on its own; a recipe only fills in what the user did not give.
 */
import { LrSchedule } from '../optim/lrSchedule';
import { Prediction } from '../diffusion/schedule';
import { SamplerName } from '../diffusion/sampler';

export interface Recipe {
  lr: number;
  lrSchedule: LrSchedule['kind'];
  warmupSteps: number;
  /** Decay of the weights' moving average; 0 = none. */
  ema: number;
  batchSize: number;
  /** The sampler's default for the checkpoint: clamp each step's predicted x_0 to [−1, 1]. */
  clipDenoised: boolean;
  /** What the model learns to predict: the noise ε, or the velocity v. */
  prediction: Prediction;
  /** The sampler the checkpoint records as its default, and its model calls (null: all T). */
  sampler: SamplerName;
  steps: number | null;
}

export const RECIPES = {
  /** Adam 1e-4 constant, batch 128, sampled from the raw weights: the blog post's recipe. */
  seed: { lr: 1e-4, lrSchedule: 'constant', warmupSteps: 0, ema: 0, batchSize: 128, clipDenoised: false, prediction: 'epsilon', sampler: 'ancestral', steps: null },
  /**
   * 10x the rate, reached by warm-up and decayed to zero by a cosine; sampled from a moving average of
   * the weights. (Clamping x̂0 at every step, lucidrains' default, is left off: on these fully connected
   * models it lowers FD but leaves visible noise, since the high-noise steps' x̂0 is mostly clamped away.)
   */
  default: { lr: 1e-3, lrSchedule: 'cosine', warmupSteps: 1000, ema: 0.9995, batchSize: 128, clipDenoised: false, prediction: 'epsilon', sampler: 'ddim', steps: 100 },
} as const satisfies Record<string, Recipe>;

export type RecipeName = keyof typeof RECIPES;
export const RECIPE_NAMES = Object.keys(RECIPES) as RecipeName[];

/**
 * What the default recipe changes for the convolutional U-net, whose runs here last a few epochs, not
 * hundreds: half the batch for twice the updates, a moving average over the last ~1000 updates rather
 * than ~2000, v-prediction, which scored better than ε at every epoch of the same 90-minute schedule on
 * MNIST-32, and DPM-Solver++(2M) with 20 steps, within 2% of DDIM 100's FD in a fifth of the time
 * (docs/results.md). (The FC model's ε predictions sample better with fresh noise at each step: DDIM 100.)
 */
export const UNET_DEFAULT: Partial<Recipe> = { batchSize: 64, ema: 0.999, prediction: 'v', sampler: 'dpmpp-2m', steps: 20 };

/**
 * From 64 px (the icons) the U-net's checkpoints sample with DDIM's fresh noise at every step, 100 steps:
 * the deterministic samplers' images of the same nets were smeared and speckled where these are clean
 * shapes (docs/results.md).
 */
export const UNET_64_DEFAULT: Partial<Recipe> = { ...UNET_DEFAULT, sampler: 'ddim', steps: 100 };

/** The recipe `name` as it applies to `model` on images of side `size`. */
export function recipeFor(name: RecipeName, model: 'fc' | 'unet', size = 32): Recipe {
  return { ...RECIPES[name], ...(model === 'unet' && name === 'default' ? (size >= 64 ? UNET_64_DEFAULT : UNET_DEFAULT) : {}) };
}
