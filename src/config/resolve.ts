/**
 * The one place a run's configuration is decided, before anything runs: the options the user gave
 * over the recipe over the defaults for a new run, or over the checkpoint's record for a resumed one.
 * Everything downstream (trainer, models, scheduler, sampler) reads the complete record this returns.
 */
import * as path from 'node:path';
import { OptionError } from '../errors';
import { Prediction, linearSchedule } from '../diffusion/schedule';
import { NoiseLevels, Weighting } from '../diffusion/weighting';
import { FcUnetConfig, UnetConfig } from '../models/denoiser';
import { fcUnetConfig, fcUnetParameters, validateFcUnetWidth } from '../models/fcUnet';
import { LrSchedule } from '../optim/lrSchedule';
import { Rng } from '../rng';
import { DataRecord, dataShape } from '../data/dataset';
import { MNIST_CLASSES } from '../data/mnist';
import { DEFAULTS, ModelKind, RecipeName, adamConfig, levelsOf, recipeFor, unetConfig, weightingOf } from './defaults';
import { RunRecord } from './runRecord';

/** Every choice that shapes a run's record. */
export interface TrainChoices {
  /** The denoiser: the seed's fully connected U-net, or the convolutional one. */
  model: ModelKind;
  /** 'mnist', 'mnist32' (padded to 32 px), or a folder of images. */
  data: string;
  /** A folder's images: side after resizing and cropping, and channels. */
  imageSize: number;
  channels: 1 | 3;
  /** A folder's images: the colour transparent pixels are composited onto (#rrggbb). */
  background: string;
  /** Mirror each training image left-right with probability 1/2 (augmentation). */
  flip: boolean;
  /** Train on the data's labels (MNIST's digits, a folder's class subfolders), for sampling by class. */
  conditional: boolean;
  /** A conditional run's chance of dropping an image's label to "no class". */
  labelDropout: number;
  /** fc: widths w, w/2, w/4. */
  width: number;
  /** unet: see UnetConfig. */
  baseChannels: number;
  channelMults: number[];
  patchSize: number;
  blocksPerStage: number;
  attentionResolutions: number[];
  timesteps: number;
  prediction: Prediction;
  /** First n images (0 = all). */
  limit: number;
  seed: number;
  batchSize: number;
  /** Adam's peak learning rate. */
  lr: number;
  lrSchedule: LrSchedule['kind'];
  warmupSteps: number;
  /** Decay of the weights' moving average (0 = none). */
  ema: number;
  /** How each timestep's error counts in the loss, and which timesteps batches draw. */
  weighting: Weighting['kind'];
  levels: NoiseLevels['kind'];
}

const FC_ONLY = ['width'] as const;
const UNET_ONLY = ['baseChannels', 'channelMults', 'patchSize', 'blocksPerStage', 'attentionResolutions'] as const;
/**
 * The fully connected model grows with the pixels times the width: 100 M parameters are 1.6 GiB with
 * Adam's two moments and the weights' average, beyond what tfjs's CPU backends hold and train here.
 */
const MAX_FC_PARAMETERS = 100e6;

/** Why a conditional run keeps some dropout: its "no class" is what guidance and unconditional samples read. */
const NO_DROPOUT = '0: a conditional run must train its "no class" (classifier-free guidance and sampling without --class read it); give a share above 0';

/** Fixed when a run starts (they shape the weights or the data's meaning); the others may change on resume. */
const FIXED = ['model', 'data', 'imageSize', 'channels', 'background', 'conditional', ...FC_ONLY, ...UNET_ONLY, 'timesteps', 'prediction', 'seed'] as const;


function checkModelOptions(model: ModelKind, given: Partial<TrainChoices>): void {
  const foreign = model === 'fc' ? UNET_ONLY.find((k) => given[k] !== undefined) : FC_ONLY.find((k) => given[k] !== undefined);
  if (foreign) throw new OptionError(foreign, `is an option of the ${model === 'fc' ? 'convolutional U-net (unet)' : 'fully connected model (fc)'}, not of ${model}`);
}

/** The data record the choices name. */
function dataRecord(data: string, given: Partial<TrainChoices>): DataRecord {
  const flip = given.flip ?? DEFAULTS.flip;
  const limit = given.limit ?? DEFAULTS.limit;
  const conditional = given.conditional ?? DEFAULTS.conditional;
  if (data === 'mnist' || data === 'mnist32') {
    const folderOnly = (['imageSize', 'channels', 'background'] as const).find((k) => given[k] !== undefined);
    if (folderOnly) throw new OptionError(folderOnly, `is an option of a folder of images, not of ${data}`);
    return { dataset: data, flip, limit, count: 0, conditional, classes: conditional ? [...MNIST_CLASSES] : [] };
  }
  // a folder's classes are its subfolders, named when the data loads (withData)
  return { dataset: 'folder', path: path.resolve(data), imageSize: given.imageSize ?? DEFAULTS.folder.imageSize, channels: given.channels ?? DEFAULTS.folder.channels, background: given.background ?? DEFAULTS.folder.background, flip, limit, count: 0, conditional, classes: [] };
}

/** What the user asked for: a recipe and options for a new run, or the options to change in a resumed one. */
export interface RunRequest {
  recipe: RecipeName;
  given: Partial<TrainChoices>;
}

/**
 * The one resolution of a run's record, before the run folder is locked or data loads: a new run's from
 * the request over its recipe over the defaults, or a resumed run's from its checkpoint's record
 * (`saved`) with the changeable options replaced. withData completes it once the data has loaded.
 */
export function resolveRun(request: RunRequest, saved: RunRecord | null): RunRecord {
  return saved ? resolveResumedRun(saved, request.given) : resolveNewRun(request.recipe, request.given);
}

/**
 * The record completed by its training data: the images counted, the updates the rate schedule spans to
 * `epochs`, and a conditional folder run's classes (its subfolders' names, `classNames`), which a
 * resumed run must find unchanged.
 */
export function withData(record: RunRecord, count: number, epochs: number, classNames: readonly string[] = []): RunRecord {
  // The cosine ends at the last step of --epochs; a resumed run with a new total stretches it from here.
  const totalSteps = epochs * Math.ceil(count / record.training.batchSize);
  let { data, model } = record;
  if (data.conditional && data.dataset === 'folder') {
    if (data.classes.length > 0 && JSON.stringify(data.classes) !== JSON.stringify(classNames)) {
      throw new OptionError('data', `${data.path}: its classes are now ${classNames.join(', ')}; the run was started with ${data.classes.join(', ')}`);
    }
    if (classNames.length < 2) throw new OptionError('data', `${data.path}: a conditional run needs at least two classes (subfolders), found ${classNames.length}`);
    data = { ...data, classes: [...classNames] };
    model = { ...model, classes: classNames.length };
  }
  return { ...record, model, data: { ...data, count }, training: { ...record.training, lrSchedule: { ...record.training.lrSchedule, totalSteps } } };
}

/** The complete record of a run that has not started: `given` over `recipe` over the defaults. */
export function resolveNewRun(recipe: RecipeName, given: Partial<TrainChoices>): RunRecord {
  const model = given.model ?? DEFAULTS.model;
  checkModelOptions(model, given);
  const data = dataRecord(given.data ?? DEFAULTS.data[model], given);
  const shape = dataShape(data);
  const r = { ...recipeFor(recipe, model, shape.height), ...definedOnly(given) };
  if (given.labelDropout !== undefined && !data.conditional) throw new OptionError('labelDropout', 'applies to a conditional run (--conditional)');
  if (given.labelDropout === 0) throw new OptionError('labelDropout', NO_DROPOUT);
  const classes = data.classes.length;
  let config: FcUnetConfig | UnetConfig;
  if (model === 'fc') {
    const width = given.width ?? DEFAULTS.width;
    try {
      validateFcUnetWidth(width);
    } catch (e) {
      throw new OptionError('width', (e as Error).message);
    }
    config = fcUnetConfig(width, shape.height, shape.width, shape.channels, classes);
    const parameters = fcUnetParameters(config);
    if (parameters > MAX_FC_PARAMETERS) {
      const which = given.imageSize !== undefined ? 'imageSize' : 'width';
      throw new OptionError(which, `${String(given[which] ?? width)}: the fully connected model on ${shape.height}x${shape.width}x${shape.channels} images would have ${(parameters / 1e6).toFixed(0)} M parameters (${((parameters * 16) / 2 ** 30).toFixed(1)} GiB with Adam's moments and the average); at most ${MAX_FC_PARAMETERS / 1e6} M: use a smaller --image-size or --width, or --model unet`);
    }
  } else {
    const unet: Partial<UnetConfig> = {};
    for (const k of UNET_ONLY) if (given[k] !== undefined) (unet as Record<string, unknown>)[k] = given[k];
    config = unetConfig(shape.height, shape.channels, { ...unet, classes });
  }
  const seed = given.seed ?? DEFAULTS.seed;
  return {
    model: config,
    schedule: linearSchedule(given.timesteps ?? DEFAULTS.schedule.timesteps, DEFAULTS.schedule.betaStart, DEFAULTS.schedule.betaEnd, r.prediction),
    data,
    training: {
      epoch: 0,
      step: 0,
      batchSize: r.batchSize,
      optimizer: { kind: 'adam', ...adamConfig(r.lr) },
      seed,
      rng: new Rng(seed + 1).state(), // a stream apart from the one that draws the initial weights
      loss: null,
      ema: r.ema,
      lrSchedule: { kind: r.lrSchedule, warmupSteps: r.warmupSteps, totalSteps: 0 }, // totalSteps: withData
      labelDropout: data.conditional ? (given.labelDropout ?? DEFAULTS.labelDropout) : 0,
      weighting: weightingOf(r.weighting),
      levels: levelsOf(r.levels),
    },
    sampling: { clipDenoised: r.clipDenoised, sampler: r.sampler, steps: r.steps },
  };
}

/** What the saved record says for each fixed choice, to compare with what was given. */
function savedChoice(saved: RunRecord, key: (typeof FIXED)[number]): unknown {
  const m = saved.model;
  switch (key) {
    case 'model':
      return m.kind === 'fc-unet' ? 'fc' : 'unet';
    case 'data':
      return saved.data.dataset === 'folder' ? saved.data.path : saved.data.dataset;
    case 'imageSize':
      return saved.data.imageSize;
    case 'channels':
      return saved.data.channels;
    case 'background':
      return saved.data.background;
    case 'timesteps':
      return saved.schedule.timesteps;
    case 'prediction':
      return saved.schedule.prediction;
    case 'seed':
      return saved.training.seed;
    case 'conditional':
      return saved.data.conditional;
    case 'width':
      return m.kind === 'fc-unet' ? m.width : undefined;
    default:
      return m.kind === 'unet' ? m[key] : undefined;
  }
}

/**
 * The record of a resumed run: the checkpoint's, with the options that may change (batch size,
 * learning rate and its schedule, average, loss weighting and noise levels, limit) replaced where given. A fixed choice given with
 * another value than the checkpoint's is refused.
 */
export function resolveResumedRun(saved: RunRecord, given: Partial<TrainChoices>): RunRecord {
  for (const key of FIXED) {
    const value = given[key];
    if (value === undefined) continue;
    const was = savedChoice(saved, key);
    const same = key === 'data' && typeof value === 'string' && !['mnist', 'mnist32'].includes(value) ? path.resolve(value) === was : JSON.stringify(value) === JSON.stringify(was);
    if (!same) {
      throw new OptionError(key, `${value}: the checkpoint's run has ${was === undefined ? 'no such option' : String(was)}, fixed when a run starts (train into another folder for a new run)`);
    }
  }
  const training = { ...saved.training, optimizer: { ...saved.training.optimizer }, lrSchedule: { ...saved.training.lrSchedule } };
  if (given.batchSize !== undefined) training.batchSize = given.batchSize;
  if (given.lr !== undefined) training.optimizer.lr = given.lr;
  if (given.ema !== undefined) training.ema = given.ema;
  if (given.lrSchedule !== undefined) training.lrSchedule.kind = given.lrSchedule;
  if (given.warmupSteps !== undefined) training.lrSchedule.warmupSteps = given.warmupSteps;
  if (given.weighting !== undefined) training.weighting = weightingOf(given.weighting);
  if (given.levels !== undefined) training.levels = levelsOf(given.levels);
  if (given.labelDropout !== undefined) {
    if (!saved.data.conditional) throw new OptionError('labelDropout', "applies to a conditional run, and the checkpoint's is not");
    if (given.labelDropout === 0) throw new OptionError('labelDropout', NO_DROPOUT);
    training.labelDropout = given.labelDropout;
  }
  const data = { ...saved.data };
  if (given.limit !== undefined) data.limit = given.limit;
  if (given.flip !== undefined) data.flip = given.flip;
  return { ...saved, data, training };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
