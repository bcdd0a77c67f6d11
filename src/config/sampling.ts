/**
 * How a checkpoint is sampled: the choices given (flags, the web page's controls) over what its record
 * says, resolved once before sampling starts.
 */
import { OptionError } from '../errors';
import { SampleOptions, SamplerName, Spacing } from '../diffusion/sampler';
import type { Progress } from '../progress';
import { DEFAULTS } from './defaults';
import { RunRecord } from './runRecord';

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
  /** Autoguidance: a weaker checkpoint of the same images and schedule (src/models/autoguidance.ts). */
  guide?: string;
  /** Its weight w (default DEFAULTS.sampling.guidance); only with `guide`. */
  guidance?: number;
  progress?: Progress;
  /** Sees the images as they form (see SampleOptions.observe). */
  observe?: SampleOptions['observe'];
}


/** The sampler settings for a checkpoint's record: the choices given, else what the record says. */
export function samplerSettings(record: RunRecord, choices: Omit<SamplerChoices, 'seed' | 'batchSize' | 'progress'> = {}) {
  const recorded = record.sampling;
  const sampler = choices.sampler ?? (choices.eta !== undefined || (choices.steps !== undefined && recorded.sampler === 'ancestral') ? 'ddim' : recorded.sampler);
  if (choices.eta !== undefined && sampler !== 'ddim') throw new OptionError('eta', `applies to the ddim sampler, not ${sampler}`);
  if (choices.spacing !== undefined && !sampler.startsWith('dpmpp')) throw new OptionError('spacing', `applies to the dpmpp samplers, not ${sampler}`);
  if (sampler === 'ancestral' && choices.steps !== undefined) throw new OptionError('steps', 'does not apply to the ancestral sampler, which takes all T steps');
  const T = record.schedule.timesteps;
  if (choices.steps !== undefined && choices.steps > T) throw new OptionError('steps', `${choices.steps}: the checkpoint's process has ${T} timesteps`);
  const steps = sampler === 'ancestral' ? undefined : Math.min(T, choices.steps ?? (sampler === recorded.sampler ? recorded.steps : null) ?? DEFAULTS.sampling.usualSteps[sampler] ?? T);
  return {
    sampler,
    ...(steps !== undefined ? { steps } : {}),
    ...(sampler === 'ddim' ? { eta: choices.eta ?? DEFAULTS.sampling.eta } : {}),
    ...(sampler.startsWith('dpmpp') ? { spacing: choices.spacing ?? DEFAULTS.sampling.spacing } : {}),
    clipDenoised: choices.clipDenoised ?? recorded.clipDenoised,
  };
}

