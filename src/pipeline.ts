/**
 * A checkpoint as a ready sampler (diffusers' "pipeline"): its model with the averaged weights where
 * the run kept an average, its noise scheduler, and the sampler settings its recipe recorded, which
 * the caller's choices override.
 */
import { RunRecord } from './config/runRecord';
import { OptionError } from './errors';
import { SamplerName, Spacing, generate } from './diffusion/sampler';
import { DDPMScheduler } from './diffusion/schedule';
import { loadCheckpoint, restoreVariables } from './io/checkpoint';
import { buildModel } from './models/build';
import { Denoiser } from './models/denoiser';
import { Progress } from './progress';
import { Rng } from './rng';

export interface Pipeline {
  model: Denoiser;
  scheduler: DDPMScheduler;
  record: RunRecord;
  /** Whether the weights are the run's moving average. */
  averaged: boolean;
}

/** The checkpoint in `dir` loaded for sampling; the caller disposes the model. */
export function loadPipeline(dir: string): Pipeline {
  const { meta: record, tensors } = loadCheckpoint(dir);
  const model = buildModel(record.model, new Rng(0));
  const averaged = [...tensors.keys()].some((k) => k.startsWith('ema/'));
  try {
    restoreVariables(tensors, averaged ? 'ema/' : 'model/', model.variables, true);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, scheduler: new DDPMScheduler(record.schedule), record, averaged };
}

export interface SamplerChoices {
  seed: number;
  batchSize: number;
  /** Absent: the checkpoint's recorded sampler (DDIM where only --steps or --eta is given to an ancestral one). */
  sampler?: SamplerName;
  /** Model calls of a few-step sampler; absent: the recorded count, or the sampler's usual one. */
  steps?: number;
  /** DDIM's noise (1 = ancestral-like, 0 = deterministic). */
  eta?: number;
  /** Where DPM-Solver++ calls the model. */
  spacing?: Spacing;
  /** Clamp x̂0 at every step; absent = as the checkpoint's recipe says. */
  clipDenoised?: boolean;
  progress?: Progress;
}

/** Model calls a few-step sampler makes when neither the user nor the checkpoint says. */
export const USUAL_STEPS: Record<SamplerName, number | null> = { ancestral: null, ddim: 100, 'dpmpp-2m': 20, 'dpmpp-3m': 20 };

/** The sampler settings for a checkpoint's record: the choices given, else what the record says. */
export function samplerSettings(record: RunRecord, choices: Omit<SamplerChoices, 'seed' | 'batchSize' | 'progress'> = {}) {
  const recorded = record.sampling;
  const sampler = choices.sampler ?? (choices.eta !== undefined || (choices.steps !== undefined && recorded.sampler === 'ancestral') ? 'ddim' : recorded.sampler);
  if (choices.eta !== undefined && sampler !== 'ddim') throw new OptionError('eta', `applies to the ddim sampler, not ${sampler}`);
  if (choices.spacing !== undefined && !sampler.startsWith('dpmpp')) throw new OptionError('spacing', `applies to the dpmpp samplers, not ${sampler}`);
  if (sampler === 'ancestral' && choices.steps !== undefined) throw new OptionError('steps', 'does not apply to the ancestral sampler, which takes all T steps');
  const T = record.schedule.timesteps;
  if (choices.steps !== undefined && choices.steps > T) throw new OptionError('steps', `${choices.steps}: the checkpoint's process has ${T} timesteps`);
  const steps = sampler === 'ancestral' ? undefined : Math.min(T, choices.steps ?? (sampler === recorded.sampler ? recorded.steps : null) ?? USUAL_STEPS[sampler] ?? T);
  return {
    sampler,
    ...(steps !== undefined ? { steps } : {}),
    ...(choices.eta !== undefined ? { eta: choices.eta } : {}),
    ...(choices.spacing !== undefined ? { spacing: choices.spacing } : {}),
    clipDenoised: choices.clipDenoised ?? recorded.clipDenoised,
  };
}

/** n images from the checkpoint in `dir`; `check` may refuse its record before any sampling. */
export function sampleCheckpoint(dir: string, n: number, choices: SamplerChoices, check: (record: RunRecord) => void = () => {}) {
  const { model, record, scheduler, averaged } = loadPipeline(dir);
  try {
    check(record);
    const settings = samplerSettings(record, choices);
    const images = generate(model, scheduler, { n, rng: new Rng(choices.seed), batchSize: choices.batchSize, progress: choices.progress, ...settings });
    return { images, record, averaged, settings };
  } finally {
    model.dispose();
  }
}
