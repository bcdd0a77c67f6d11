/**
 * A loaded model sampled as the caller asks (diffusers' pipeline call), the same in Node and in the
 * browser: the sampler settings over the recorded ones, the classes to draw with classifier-free
 * guidance, and how many images. Loading is elsewhere (./load.ts from disk, src/api/browser.ts by URL).
 */
import { DEFAULTS } from '../config/defaults';
import { RunRecord } from '../config/runRecord';
import { SamplerChoices, labelsFor, parseClasses, samplerSettings } from '../config/sampling';
import { SampleOptions } from '../diffusion/sampler';
import { DDPMScheduler } from '../diffusion/schedule';
import { ClassifierFree } from '../models/classifierFree';
import { Denoiser } from '../models/denoiser';
import { OptionError } from '../errors';
import { Rng } from '../rng';

/** Autoguidance: the weaker checkpoint that guides (its folder, or its file on a page), and the weight w. */
export interface Guide {
  checkpoint: string;
  weight: number;
}

export interface Pipeline {
  /** The model as it samples: on every core where that pays, autoguided where a guide was given. */
  model: Denoiser;
  scheduler: DDPMScheduler;
  record: RunRecord;
  /** Whether the weights are the run's moving average. */
  averaged: boolean;
  guide?: Guide;
}

/** What one draw does: the model to call (classifier-free guided where classes are drawn), the sampler's options, and what to say of it. */
export interface DrawPlan {
  model: Denoiser;
  options: SampleOptions;
  /** Images drawn: n, or perClass of each class. */
  n: number;
  /** Each image's class index, where classes are drawn. */
  labels?: Float32Array;
  /** With perClass: one row per class, this many across. */
  columns?: number;
  settings: ReturnType<typeof samplerSettings> & { guide?: Guide; cfg?: number; classes?: string[] };
}

/** The draw that `choices` ask of `pipeline`: n images, or choices.perClass of each class asked for, one class after another. */
export function drawPlan(pipeline: Pipeline, n: number, choices: SamplerChoices): DrawPlan {
  const { model, record, guide } = pipeline;
  const settings = samplerSettings(record, choices);
  const classes = classGuidance(record, choices);
  const count = classes && choices.perClass ? choices.perClass * classes.classes.length : n;
  const labels = classes ? labelsFor(classes.classes, count) : undefined;
  return {
    model: classes ? new ClassifierFree(model, classes.weight) : model,
    options: { n: count, rng: new Rng(choices.seed), batchSize: choices.batchSize, progress: choices.progress, observe: choices.observe, labels, ...settings },
    n: count,
    labels,
    columns: classes ? choices.perClass : undefined,
    settings: { ...settings, ...(guide ? { guide } : {}), ...(classes ? { cfg: classes.weight, classes: classes.classes.map((c) => record.data.classes[c]) } : {}) },
  };
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
