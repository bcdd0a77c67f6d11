/**
 * The run record: everything a checkpoint says about its run besides the weights (model, noise
 * schedule, data, training state, default sampler), complete in every field. Older records are brought
 * up to this version once, by migrateRunRecord, when a checkpoint is read; nothing else fills gaps.
 */
import { CheckpointError, UnsupportedModelError } from '../errors';
import { ModelConfig } from '../models/denoiser';
import { RngState } from '../rng';
import { ScheduleConfig } from '../diffusion/schedule';
import { SamplerName } from '../diffusion/sampler';
import { NoiseLevels, UNIFORM_LEVELS, UNIFORM_WEIGHTING, Weighting } from '../diffusion/weighting';
import { AdamConfig } from '../optim/adam';
import { LrSchedule } from '../optim/lrSchedule';
import { DataRecord } from '../data/dataset';

/**
 * The version this diffuse writes. 2: every field required (version 1 left six of them optional).
 * 3: data.flip, and a folder's data.background. 4: the U-net's patchSize. 5: class conditioning
 * (model.classes, data.conditional and data.classes, training.labelDropout). 6: the loss's weighting and
 * the noise levels training draws (training.weighting, training.levels).
 */
export const RUN_RECORD_VERSION = 6;

export interface TrainingRecord {
  /** Epochs completed. */
  epoch: number;
  /** Optimizer updates taken. */
  step: number;
  batchSize: number;
  optimizer: { kind: 'adam' } & AdamConfig;
  seed: number;
  /** Generator state after the last completed epoch (or the saved step): resume continues the same stream. */
  rng: RngState;
  /** Mean loss of the last completed epoch. */
  loss: number | null;
  /** Decay of the weights' moving average kept for sampling; 0 = none. */
  ema: number;
  /** How the rate moves around optimizer.lr, its peak. */
  lrSchedule: LrSchedule;
  /** A conditional run's chance of training an image as "no class" (classifier-free guidance); 0 otherwise. */
  labelDropout: number;
  /** How each timestep's error counts in the loss, and which timesteps batches draw (diffusion/weighting.ts). */
  weighting: Weighting;
  levels: NoiseLevels;
}

export interface SamplingRecord {
  /** Clamp each step's predicted clean image to [−1, 1]. */
  clipDenoised: boolean;
  /** The sampler `sample` and `evaluate` use unless told otherwise, and its model calls (null: all T). */
  sampler: SamplerName;
  steps: number | null;
}

export interface RunRecord {
  model: ModelConfig;
  schedule: ScheduleConfig;
  data: DataRecord;
  training: TrainingRecord;
  sampling: SamplingRecord;
}

/**
 * A record of `version` as read from a file, brought to RUN_RECORD_VERSION. Version 1's absent fields
 * meant what its readers assumed: one channel, ε-prediction, no average, a constant rate, the plain
 * ancestral sampler, and (U-net) the GroupNorm + SiLU output head it then had.
 */
export function migrateRunRecord(record: Record<string, unknown>, version: number, file: string): RunRecord {
  if (!Number.isInteger(version) || version < 1) throw new CheckpointError(`${file} has no valid format version (${version})`);
  if (version > RUN_RECORD_VERSION) throw new UnsupportedModelError(`${file} has format version ${version}; this diffuse reads up to ${RUN_RECORD_VERSION} (a newer diffuse wrote it)`);
  // Version 1's own fields are taken as they are; only its optional ones are filled in.
  const r = structuredClone(record) as unknown as RunRecord;
  for (const key of ['model', 'schedule', 'data', 'training'] as const) {
    if (typeof r[key] !== 'object' || r[key] === null) throw new CheckpointError(`${file} is not a diffuse checkpoint: "${key}" is missing`);
  }
  if (version === 1) {
    const model = r.model as ModelConfig & { channels?: number; outputNorm?: boolean };
    model.channels ??= 1;
    if (model.kind === 'unet') model.outputNorm ??= true;
    r.schedule.prediction ??= 'epsilon';
    r.training.ema ??= 0;
    r.training.lrSchedule ??= { kind: 'constant', warmupSteps: 0, totalSteps: 0 };
    r.sampling ??= { clipDenoised: false } as RunRecord['sampling'];
    r.sampling.sampler ??= 'ancestral';
    r.sampling.steps ??= null;
  }
  if (version <= 2) {
    // Until version 3 there was no flip, and folders were composited onto black.
    r.data.flip = false;
    if (r.data.dataset === 'folder') r.data.background = '#000000';
  }
  if (version <= 3 && r.model.kind === 'unet') r.model.patchSize = 1; // no patches before version 4
  if (version <= 4) {
    // every model before version 5 was unconditional
    r.model.classes = 0;
    r.data.conditional = false;
    r.data.classes = [];
    r.training.labelDropout = 0;
  }
  if (version <= 5) {
    // before version 6 every run drew t uniformly and weighted every error alike
    r.training.weighting = { ...UNIFORM_WEIGHTING };
    r.training.levels = { ...UNIFORM_LEVELS };
  }
  return r;
}
