/**
 * Every default of diffuse, in one table: what a run gets for what the user did not give, by model kind
 * and image size. The resolver, the recipes, the sampler settings and `--help` all read it, so what
 * `--help` says is what a run gets. Why each value was chosen is in docs/results.md.
 */
import { SamplerName, Spacing } from '../diffusion/sampler';
import { Prediction } from '../diffusion/schedule';
import { NoiseLevels, Weighting } from '../diffusion/weighting';
import { UnetConfig } from '../models/denoiser';
import { validateUnetConfig } from '../models/unet';
import { AdamConfig } from '../optim/adam';
import { LrSchedule } from '../optim/lrSchedule';

export type ModelKind = 'fc' | 'unet';

export const DEFAULTS = {
  model: 'fc' as ModelKind,
  /** Total epochs of `train`. */
  epochs: 1000,
  /** Training images by model: MNIST at 28 px for the FC net, padded to 32 px for the U-net's halvings. */
  data: { fc: 'mnist', unet: 'mnist32' } as Record<ModelKind, string>,
  /** A folder's images: side, channels, and what transparent pixels become (icons are drawn for light pages). */
  folder: { imageSize: 32, channels: 3 as 1 | 3, background: '#ffffff' },
  flip: false,
  /** Train on the data's labels; a conditional run drops a label to "no class" this often (Ho & Salimans use 0.1-0.2). */
  conditional: false,
  labelDropout: 0.1,
  limit: 0,
  seed: 0,
  /** The FC net's widths w, w/2, w/4. */
  width: 2048,
  /** Ho et al.'s process: 1000 steps, β linear from 1e-4 to 0.02. */
  schedule: { timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
  /** The alternatives' constants as their papers give them: min-SNR's γ (Hang et al.), EDM's ln σ ~ N(−1.2, 1.2²) (Karras et al.). */
  weighting: { minSnrGamma: 5, logNormalMean: -1.2, logNormalStd: 1.2 },
  /** Adam's moments and ε as Kingma & Ba (and torch.optim.Adam) have them. */
  adam: { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
  sampling: {
    /** Images drawn where not asked (`diffuse sample --n`, the API's sample). */
    n: 64,
    /** Model calls of a few-step sampler where neither the user nor the checkpoint says. */
    usualSteps: { ancestral: null, ddim: 100, 'dpmpp-2m': 20, 'dpmpp-3m': 20 } as Record<SamplerName, number | null>,
    /** Images denoised together (larger batches use the matrix kernels better). */
    batchSize: 256,
    /** DDIM's η: at 100 steps η = 1 matches the ancestral sampler where η = 0 does not on these models. */
    eta: 1,
    spacing: 'logsnr' as Spacing,
    /** Autoguidance's w: on the MNIST-32 U-net guided by its third epoch, w = 2 raised confidence at the same FD. */
    guidance: 2,
    /** Classifier-free guidance's w for a conditional model sampled by class. */
    cfg: 2,
  },
  editing: {
    /** DDIM steps of invert, decode, interpolate, edit and inpaint. */
    steps: 50,
    /** invert's fixed-point refinements per step (on the exact Gaussian denoiser at 50 steps: error 0.045 plain, 0.0026 with one, 0.00017 with two). */
    refine: 2,
    /** RePaint's jump length and resampling count (inpaint). */
    jump: 5,
    resample: 5,
  },
} as const;

/** Adam with the table's moments at learning rate `lr`. */
export function adamConfig(lr: number): AdamConfig {
  return { lr, ...DEFAULTS.adam };
}

export type UnetArchitecture = Pick<UnetConfig, 'baseChannels' | 'channelMults' | 'blocksPerStage' | 'patchSize' | 'attentionResolutions' | 'groups' | 'heads' | 'outputNorm'>;

/**
 * The U-net's shape by image side. Below 64 px (MNIST-32): 16 channels at full resolution, 32 at 16 px,
 * 96 at 8 px where attention works, two residual blocks per stage (1.64 M parameters): what trained best
 * in 90 minutes on two cores. From 64 px the net works on 2x2 patches folded into channels, so a 32-px
 * net of four stages does the work, attention at 8 and 4 px (2.43 M parameters).
 */
export function unetArchitecture(size: number): UnetArchitecture {
  const shape = size >= 64 ? { baseChannels: 32, channelMults: [1, 2, 2, 4], blocksPerStage: 1, patchSize: 2, attentionResolutions: [8, 4] } : { baseChannels: 16, channelMults: [1, 2, 6], blocksPerStage: 2, patchSize: 1, attentionResolutions: [8] };
  return { ...shape, groups: 8, heads: 4, outputNorm: false };
}

/** A complete, checked U-net configuration for square images of side `size`: the table's shape under `overrides`. */
export function unetConfig(size = 32, channels = 1, overrides: Partial<UnetConfig> = {}): UnetConfig {
  const config: UnetConfig = { kind: 'unet', classes: 0, height: size, imageWidth: size, channels, ...unetArchitecture(size), ...overrides };
  validateUnetConfig(config);
  return config;
}

/** The image sides at which the U-net's defaults change, for `--help`. */
const UNET_SIDES = [32, 64] as const;

/** A U-net default as `--help` says it: "16 below 64 px, 32 from 64 px". */
export function unetDefaultText(field: keyof UnetArchitecture): string {
  const show = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));
  const [small, large] = UNET_SIDES.map((s) => show(unetArchitecture(s)[field]));
  return small === large ? small : `${small} below ${UNET_SIDES[1]} px, ${large} from ${UNET_SIDES[1]} px`;
}

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
  /** How each timestep's error counts, and which timesteps batches draw (diffusion/weighting.ts). */
  weighting: Weighting['kind'];
  levels: NoiseLevels['kind'];
}

/** The weighting `kind` with the table's constant. */
export function weightingOf(kind: Weighting['kind']): Weighting {
  return kind === 'min-snr' ? { kind, gamma: DEFAULTS.weighting.minSnrGamma } : { kind };
}

/** The noise levels `kind` with the table's constants. */
export function levelsOf(kind: NoiseLevels['kind']): NoiseLevels {
  return kind === 'log-normal' ? { kind, mean: DEFAULTS.weighting.logNormalMean, std: DEFAULTS.weighting.logNormalStd } : { kind };
}

/** Training recipes: every field stays selectable on its own; a recipe fills in what the user did not give. */
export const RECIPES = {
  /** Adam 1e-4 constant, batch 128, sampled from the raw weights: the blog post's recipe. */
  seed: { lr: 1e-4, lrSchedule: 'constant', warmupSteps: 0, ema: 0, batchSize: 128, clipDenoised: false, prediction: 'epsilon', sampler: 'ancestral', steps: null, weighting: 'uniform', levels: 'uniform' },
  /**
   * 10x the rate, reached by warm-up and decayed to zero by a cosine; sampled from a moving average of
   * the weights. (Clamping x̂0 at every step, lucidrains' default, is left off: on these fully connected
   * models it lowers FD but leaves visible noise, since the high-noise steps' x̂0 is mostly clamped away.)
   */
  default: { lr: 1e-3, lrSchedule: 'cosine', warmupSteps: 1000, ema: 0.9995, batchSize: 128, clipDenoised: false, prediction: 'epsilon', sampler: 'ddim', steps: 100, weighting: 'uniform', levels: 'uniform' },
} as const satisfies Record<string, Recipe>;

export type RecipeName = keyof typeof RECIPES;
export const RECIPE_NAMES = Object.keys(RECIPES) as RecipeName[];

/**
 * What the default recipe changes for the convolutional U-net, whose runs here last a few epochs, not
 * hundreds: half the batch for twice the updates, an average over the last ~1000 updates, v-prediction
 * (better than ε at every epoch of the same schedule on MNIST-32), and DPM-Solver++(2M) with 20 steps
 * (within 2% of DDIM 100's FD in a fifth of the time). From 64 px, DDIM with fresh noise at every step:
 * the deterministic samplers smeared and speckled the icons.
 */
export const UNET_DEFAULT: Partial<Recipe> = { batchSize: 64, ema: 0.999, prediction: 'v', sampler: 'dpmpp-2m', steps: 20 };
export const UNET_64_DEFAULT: Partial<Recipe> = { ...UNET_DEFAULT, sampler: 'ddim', steps: 100 };

/** The recipe `name` as it applies to `model` on images of side `size`. */
export function recipeFor(name: RecipeName, model: ModelKind, size = 32): Recipe {
  return { ...RECIPES[name], ...(model === 'unet' && name === 'default' ? (size >= 64 ? UNET_64_DEFAULT : UNET_DEFAULT) : {}) };
}

/** A recipe's field as `--help` says it: "(default recipe: 0.9995, 0.999 for unet; seed: 0)". */
export function recipeDefaultText(field: keyof Recipe): string {
  const unet = recipeFor('default', 'unet', 32)[field];
  const unet64 = recipeFor('default', 'unet', 64)[field];
  const forUnet = unet === RECIPES.default[field] ? '' : `, ${unet} for unet${unet64 === unet ? '' : ` (${unet64} from 64 px)`}`;
  return `(default recipe: ${RECIPES.default[field]}${forUnet}; seed: ${RECIPES.seed[field]})`;
}
