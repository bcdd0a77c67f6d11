/**
 * A checkpoint (a run's folder, or a safetensors file from `diffuse export` or diffuse_torch) as a
 * ready sampler (diffusers' "pipeline"): its model, predicting on every core where that pays
 * (src/parallel/dataParallel.ts), with the averaged weights where the run kept an average, its noise
 * scheduler and its record; optionally guided by a weaker checkpoint (src/models/autoguidance.ts).
 */
import * as fs from 'node:fs';
import { RunRecord } from '../config/runRecord';
import { generate } from '../diffusion/sampler';
import { DEFAULTS } from '../config/defaults';
import { SamplerChoices } from '../config/sampling';
import { DDPMScheduler } from '../diffusion/schedule';
import { NamedArray, loadCheckpoint, restoreVariables, samplingPrefix } from '../io/checkpoint';
import { readSafetensors } from '../io/safetensors';
import { fromTorchTensors } from '../io/torchWeights';
import { buildModel } from '../models/build';
import { AutoGuided } from '../models/autoguidance';
import { Denoiser } from '../models/denoiser';
import { OptionError } from '../errors';
import { Rng } from '../rng';
import { withWorkers, withWorkersPaired } from '../parallel/dataParallel';
import { Guide, Pipeline, checkGuide, drawPlan } from './draw';

export { checkGuide } from './draw';
export type { Guide, Pipeline } from './draw';

/** A checkpoint's record and arrays, from its folder or from a .safetensors file. */
export function readModelFile(source: string): { meta: RunRecord; tensors: Map<string, NamedArray> } {
  if (/\.safetensors$/i.test(source) && !isDirectory(source)) {
    const { tensors, metadata } = readSafetensors(source);
    const { record, arrays } = fromTorchTensors(source, tensors, metadata);
    return { meta: record, tensors: arrays };
  }
  return loadCheckpoint(source);
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The checkpoint at `source` loaded for sampling, guided by `guide` if given; the caller disposes the model. */
export function loadPipeline(source: string, guide?: Guide): Pipeline {
  const { meta: record, tensors } = readModelFile(source);
  const guiding = guide ? { ...readModelFile(guide.checkpoint), ...guide } : null;
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
  return { model: new AutoGuided(goodOnWorkers, badOnWorkers, guiding.weight), scheduler, record, averaged: good.averaged, guide };
}

/** A record's model with its sampling weights (the moving average where the run kept one). */
function restoredModel(record: RunRecord, tensors: Map<string, NamedArray>): { model: Denoiser; averaged: boolean } {
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

/** The guide that --guide and --guidance ask for (w defaulted), or none; --guidance alone is refused. */
export function guideFrom(choices: { guide?: string; guidance?: number }): Guide | undefined {
  if (choices.guidance !== undefined && !choices.guide) throw new OptionError('guidance', 'weighs a guide: give --guide <checkpoint> too');
  return choices.guide ? { checkpoint: choices.guide, weight: choices.guidance ?? DEFAULTS.sampling.guidance } : undefined;
}

/**
 * n images from the checkpoint at `source` (with choices.perClass: that many of each class asked for,
 * one class after another), synchronously; `check` may refuse its record before any sampling.
 */
export function sampleCheckpoint(source: string, n: number, choices: SamplerChoices, check: (record: RunRecord) => void = () => {}) {
  const pipeline = loadPipeline(source, guideFrom(choices));
  try {
    check(pipeline.record);
    const plan = drawPlan(pipeline, n, choices);
    const images = generate(plan.model, pipeline.scheduler, plan.options);
    return { images, n: plan.n, record: pipeline.record, averaged: pipeline.averaged, labels: plan.labels, settings: plan.settings };
  } finally {
    pipeline.model.dispose();
  }
}
