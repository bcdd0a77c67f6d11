/**
 * A checkpoint as a ready sampler (diffusers' "pipeline"): its model (predicting on every core where
 * that pays: src/training/dataParallel.ts) with the averaged weights where
 * the run kept an average, its noise scheduler, and the sampler settings its recipe recorded, which
 * the caller's choices override; optionally guided by a weaker checkpoint (src/models/autoguidance.ts).
 */
import { RunRecord } from './config/runRecord';
import { generate } from './diffusion/sampler';
import { DEFAULTS } from './config/defaults';
import { SamplerChoices, labelsFor, parseClasses, samplerSettings } from './config/sampling';
import { DDPMScheduler } from './diffusion/schedule';
import { loadCheckpoint, restoreVariables, samplingPrefix } from './io/checkpoint';
import { buildModel } from './models/build';
import { AutoGuided } from './models/autoguidance';
import { ClassifierFree } from './models/classifierFree';
import { Denoiser } from './models/denoiser';
import { OptionError } from './errors';
import { Rng } from './rng';
import { withWorkers, withWorkersPaired } from './parallel/dataParallel';

export interface Pipeline {
  model: Denoiser;
  scheduler: DDPMScheduler;
  record: RunRecord;
  /** Whether the weights are the run's moving average. */
  averaged: boolean;
}

/** Autoguidance: the weaker checkpoint that guides, and the weight w. */
export interface Guide {
  checkpoint: string;
  weight: number;
}

/** The checkpoint in `dir` loaded for sampling, guided by `guide` if given; the caller disposes the model. */
export function loadPipeline(dir: string, guide?: Guide): Pipeline {
  const { meta: record, tensors } = loadCheckpoint(dir);
  const guiding = guide ? { ...loadCheckpoint(guide.checkpoint), ...guide } : null;
  if (guiding) checkGuide(record, guiding.meta, guiding.checkpoint);
  const good = restoredModel(record, tensors);
  const scheduler = new DDPMScheduler(record.schedule);
  if (!guiding) return { model: withWorkers(good.model), scheduler, record, averaged: good.averaged };
  let bad: Denoiser;
  try {
    bad = restoredModel(guiding.meta, guiding.tensors).model;
  } catch (e) {
    good.model.dispose();
    throw e;
  }
  const [goodOnWorkers, badOnWorkers] = withWorkersPaired(good.model, bad);
  return { model: new AutoGuided(goodOnWorkers, badOnWorkers, guiding.weight), scheduler, record, averaged: good.averaged };
}

/** A record's model with its sampling weights (the moving average where the run kept one). */
function restoredModel(record: RunRecord, tensors: ReturnType<typeof loadCheckpoint>['tensors']): { model: Denoiser; averaged: boolean } {
  const model = buildModel(record.model, new Rng(0));
  const prefix = samplingPrefix(tensors);
  try {
    restoreVariables(tensors, prefix, model.variables, true);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, averaged: prefix === 'ema/' };
}

/**
 * A guide must draw the same images through the same noise schedule, predicting the same quantity, and
 * read the checkpoint's labels as the checkpoint does: the same classes, or none (it ignores them).
 */
export function checkGuide(record: RunRecord, guide: RunRecord, guideDir: string): void {
  const shape = (r: RunRecord) => `${r.model.height}x${r.model.imageWidth}x${r.model.channels}`;
  if (shape(record) !== shape(guide)) throw new OptionError('guide', `${guideDir}: its images are ${shape(guide)}, the checkpoint's ${shape(record)}`);
  if (guide.model.classes > 0 && JSON.stringify(guide.data.classes) !== JSON.stringify(record.data.classes))
    throw new OptionError('guide', `${guideDir}: its classes (${guide.data.classes.join(', ')}) are not the checkpoint's (${record.data.classes.join(', ') || 'none'})`);
  const a = record.schedule, b = guide.schedule;
  if (a.kind !== b.kind || a.timesteps !== b.timesteps || a.betaStart !== b.betaStart || a.betaEnd !== b.betaEnd || a.prediction !== b.prediction)
    throw new OptionError('guide', `${guideDir}: its noise schedule (${JSON.stringify(b)}) is not the checkpoint's (${JSON.stringify(a)})`);
}

/** The guide that --guide and --guidance ask for (w defaulted), or none; --guidance alone is refused. */
export function guideFrom(choices: { guide?: string; guidance?: number }): Guide | undefined {
  if (choices.guidance !== undefined && !choices.guide) throw new OptionError('guidance', 'weighs a guide: give --guide <checkpoint> too');
  return choices.guide ? { checkpoint: choices.guide, weight: choices.guidance ?? DEFAULTS.sampling.guidance } : undefined;
}

/**
 * n images from the checkpoint in `dir` (with choices.perClass: that many of each class asked for, one
 * class after another); `check` may refuse its record before any sampling.
 */
export function sampleCheckpoint(dir: string, n: number, choices: SamplerChoices, check: (record: RunRecord) => void = () => {}) {
  const guide = guideFrom(choices);
  const { model, record, scheduler, averaged } = loadPipeline(dir, guide);
  try {
    check(record);
    const settings = samplerSettings(record, choices);
    const classes = classGuidance(record, choices);
    const guided = classes ? new ClassifierFree(model, classes.weight) : model;
    const count = classes && choices.perClass ? choices.perClass * classes.classes.length : n;
    const labels = classes ? labelsFor(classes.classes, count) : undefined;
    const images = generate(guided, scheduler, { n: count, rng: new Rng(choices.seed), batchSize: choices.batchSize, progress: choices.progress, observe: choices.observe, labels, ...settings });
    return { images, n: count, record, averaged, labels, settings: { ...settings, ...(guide ? { guide } : {}), ...(classes ? { cfg: classes.weight, classes: classes.classes.map((c) => record.data.classes[c]) } : {}) } };
  } finally {
    model.dispose();
  }
}

/** The classes to draw and classifier-free guidance's w, where classes are asked for; --cfg alone is refused. */
export function classGuidance(record: RunRecord, choices: { classes?: string; cfg?: number; perClass?: number }): { classes: number[]; weight: number } | undefined {
  if (record.model.classes === 0) {
    const given = (['classes', 'cfg', 'perClass'] as const).find((k) => choices[k] !== undefined);
    if (given) throw new OptionError(given === 'classes' ? 'class' : given, `${choices[given]}: the checkpoint's model is unconditional (train with --conditional to sample by class)`);
  }
  if (choices.cfg !== undefined && choices.classes === undefined) throw new OptionError('cfg', 'weighs the classes drawn: give --class too');
  if (choices.perClass !== undefined && choices.classes === undefined) throw new OptionError('perClass', 'counts the images of each class drawn: give --class too (e.g. --class all)');
  if (choices.classes === undefined) return undefined;
  return { classes: parseClasses(record, choices.classes), weight: choices.cfg ?? DEFAULTS.sampling.cfg };
}
