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
  /** A conditional model's classes to draw (parseClasses: "all", indices or names), the images divided among them in order; absent: unconditional. */
  classes?: string;
  /** With `classes`: this many images of each class, one row per class (instead of n divided among them). */
  perClass?: number;
  /** Classifier-free guidance's w with `classes` (default DEFAULTS.sampling.cfg). */
  cfg?: number;
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


/**
 * The classes `spec` names in a conditional record: "all", or indices or class names separated by
 * commas (a folder's subfolder names, MNIST's digits).
 */
export function parseClasses(record: RunRecord, spec: string): number[] {
  const names = record.data.classes;
  if (record.model.classes === 0) throw new OptionError('class', `${spec}: the checkpoint's model is unconditional (train with --conditional to sample by class)`);
  if (spec.trim() === 'all') return names.map((_, i) => i);
  return spec.split(',').map((part) => {
    const p = part.trim();
    const byName = names.indexOf(p);
    if (byName >= 0) return byName;
    const index = /^\d+$/.test(p) ? Number(p) : -1;
    if (index >= 0 && index < names.length) return index;
    throw new OptionError('class', `${p}: the checkpoint's classes are ${names.join(', ')} (or their indices 0..${names.length - 1}, or all)`);
  });
}

/** A label per image: the n images divided among `classes` in order, in runs as equal as can be. */
export function labelsFor(classes: readonly number[], n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => classes[Math.floor((i * classes.length) / n)]);
}
