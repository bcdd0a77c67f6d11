/**
 * A checkpoint as a ready sampler (diffusers' "pipeline"): its model (predicting on every core where
 * that pays: src/training/dataParallel.ts) with the averaged weights where
 * the run kept an average, its noise scheduler, and the sampler settings its recipe recorded, which
 * the caller's choices override.
 */
import { RunRecord } from './config/runRecord';
import { generate } from './diffusion/sampler';
import { SamplerChoices, samplerSettings } from './config/sampling';
import { DDPMScheduler } from './diffusion/schedule';
import { loadCheckpoint, restoreVariables, samplingPrefix } from './io/checkpoint';
import { buildModel } from './models/build';
import { Denoiser } from './models/denoiser';
import { Rng } from './rng';
import { withWorkers } from './training/dataParallel';

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
  const prefix = samplingPrefix(tensors);
  try {
    restoreVariables(tensors, prefix, model.variables, true);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model: withWorkers(model), scheduler: new DDPMScheduler(record.schedule), record, averaged: prefix === 'ema/' };
}

/** n images from the checkpoint in `dir`; `check` may refuse its record before any sampling. */
export function sampleCheckpoint(dir: string, n: number, choices: SamplerChoices, check: (record: RunRecord) => void = () => {}) {
  const { model, record, scheduler, averaged } = loadPipeline(dir);
  try {
    check(record);
    const settings = samplerSettings(record, choices);
    const images = generate(model, scheduler, { n, rng: new Rng(choices.seed), batchSize: choices.batchSize, progress: choices.progress, observe: choices.observe, ...settings });
    return { images, record, averaged, settings };
  } finally {
    model.dispose();
  }
}
