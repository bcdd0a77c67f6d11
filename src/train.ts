/**
 * Training: ε-prediction MSE (Ho et al.) with a uniform random timestep per example, Adam, a checkpoint
 * after every epoch, optional sample grids, resume, and a clean stop on Ctrl-C or a non-finite loss.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs'; // registers the gradients, which tfjs-core's CommonJS build leaves out
import { CheckpointMeta, DataRecord, NamedArray, checkpointExists, loadCheckpoint, saveCheckpoint } from './checkpoint';
import { epochBatches, gatherBatch } from './data/batches';
import { ImageSet, loadMnist, padImages } from './data/mnist';
import { UserError, flagName } from './errors';
import { writeImageGrid } from './image';
import { Denoiser, ModelConfig, UnetConfig, parameterCount } from './models/denoiser';
import { ConvUnet, unetConfig } from './models/unet';
import { loadImageFolder } from './data/folder';
import { FcUnet, fcUnetConfig, validateFcUnetWidth } from './models/fcUnet';
import { Adam, adamConfig } from './optim';
import { Progress, createProgress, samplingProgress } from './progress';
import { Rng } from './rng';
import { generate } from './sample';
import { WeightAverage } from './ema';
import { assignCopy } from './tensors';
import { RunLock } from './runLock';
import { DDPMScheduler, Prediction, linearSchedule } from './schedule';
import { LrSchedule, effectiveWarmup, learningRateAt } from './lrSchedule';

export class NonFiniteLossError extends UserError {}

/** The model, its optimizer, the schedule and the random stream, and how far training has come. */
export class Trainer {
  readonly model: Denoiser;
  readonly optimizer: Adam;
  readonly scheduler: DDPMScheduler;
  readonly rng: Rng;
  /** The weights' moving average, where the run keeps one. */
  readonly ema: WeightAverage | null;
  epoch = 0;
  readonly meta: CheckpointMeta;

  constructor(meta: CheckpointMeta, saved?: Map<string, NamedArray>) {
    this.meta = meta;
    this.scheduler = new DDPMScheduler(meta.schedule);
    this.rng = new Rng(meta.training.rng);
    const init = new Rng(meta.training.seed); // initial weights depend on the seed only
    this.model = buildModel(meta.model, init);
    const { lr, beta1, beta2, epsilon } = meta.training.optimizer;
    this.optimizer = new Adam({ lr, beta1, beta2, epsilon }, this.model.variables);
    this.ema = meta.training.ema ? new WeightAverage(meta.training.ema, this.model.variables) : null;
    this.epoch = meta.training.epoch;
    this.optimizer.step = meta.training.step;
    if (saved) this.restore(saved);
  }

  /** One optimizer update on the examples `indices` of `data`; returns the loss before the update. */
  trainStep(data: ImageSet, indices: ArrayLike<number>): number {
    const batch = indices.length;
    const pixels = data.height * data.width * data.channels;
    const T = this.scheduler.timesteps;
    const x0 = gatherBatch(data.data, pixels, indices);
    const t = new Int32Array(batch);
    for (let b = 0; b < batch; b++) t[b] = this.rng.int(T);
    const eps = this.rng.fillNormal(new Float32Array(batch * pixels));
    const xt = this.scheduler.addNoise(x0, eps, t);
    return tf.tidy(() => {
      const xs = tf.tensor2d(xt, [batch, pixels]);
      const tFrac = tf.tensor1d(Float32Array.from(t, (v) => v / T));
      const target = tf.tensor2d(this.scheduler.trainingTarget(x0, eps, t), [batch, pixels]);
      const { value, grads } = this.optimizer.gradients(() => tf.mean(tf.squaredDifference(this.model.predict(xs, tFrac), target)));
      const loss = value.dataSync()[0];
      if (!Number.isFinite(loss)) throw new NonFiniteLossError(`training stopped: the loss became ${loss} at step ${this.optimizer.step + 1}`);
      this.optimizer.apply(grads, learningRateAt(this.meta.training.optimizer.lr, this.meta.training.lrSchedule, this.optimizer.step + 1));
      this.ema?.update(this.model.variables, this.optimizer.step);
      return loss;
    });
  }

  /** Everything a checkpoint holds as arrays: weights and Adam's moments. */
  tensors(): Map<string, NamedArray> {
    const out = new Map<string, NamedArray>();
    const add = (prefix: string, vars: ReadonlyMap<string, tf.Variable>) => {
      for (const [name, v] of vars) out.set(`${prefix}${name}`, { shape: v.shape, values: v.dataSync() as Float32Array });
    };
    add('model/', this.model.variables);
    add('adam/m/', this.optimizer.m);
    add('adam/v/', this.optimizer.v);
    if (this.ema) add('ema/', this.ema.shadow);
    return out;
  }

  private restore(saved: Map<string, NamedArray>): void {
    assignSaved(saved, 'model/', this.model.variables, true);
    assignSaved(saved, 'adam/m/', this.optimizer.m, false);
    assignSaved(saved, 'adam/v/', this.optimizer.v, false);
    if (this.ema) {
      if ([...saved.keys()].some((k) => k.startsWith('ema/'))) assignSaved(saved, 'ema/', this.ema.shadow, true);
      else this.ema.reset(this.model.variables); // --ema added on resume: the average starts from here
    }
  }

  /** A copy of the model holding the weights' moving average (null where the run keeps none); the caller disposes it. */
  averagedModel(): Denoiser | null {
    if (!this.ema) return null;
    const copy = buildModel(this.meta.model, new Rng(0));
    for (const [name, v] of copy.variables) assignCopy(v, this.ema.shadow.get(name)!.dataSync() as Float32Array);
    return copy;
  }

  checkpointMeta(loss: number | null): CheckpointMeta {
    return {
      ...this.meta,
      training: { ...this.meta.training, epoch: this.epoch, step: this.optimizer.step, rng: this.rng.state(), loss },
    };
  }

  dispose(): void {
    this.model.dispose();
    this.optimizer.dispose();
    this.ema?.dispose();
  }
}

/** Copies the saved arrays named `prefix + name` into the variables; shapes must agree. */
function assignSaved(saved: Map<string, NamedArray>, prefix: string, vars: ReadonlyMap<string, tf.Variable>, required: boolean): void {
  for (const [name, v] of vars) {
    const t = saved.get(`${prefix}${name}`);
    if (!t) {
      if (required) throw new UserError(`checkpoint does not match its model: tensor ${prefix}${name} is missing`);
      continue;
    }
    if (t.shape.join('x') !== v.shape.join('x')) {
      throw new UserError(`checkpoint does not match its model: ${prefix}${name} has shape [${t.shape}], the model needs [${v.shape}]`);
    }
    assignCopy(v, t.values);
  }
}

export function buildModel(config: ModelConfig, rng: Rng): Denoiser {
  if (config?.kind === 'fc-unet') return new FcUnet(config, rng);
  if (config?.kind === 'unet') return new ConvUnet(config, rng);
  throw new UserError(`unknown model kind "${(config as { kind?: string })?.kind}" in checkpoint`);
}

function describeModel(model: Denoiser): string {
  const c = model.config;
  const size = `${(parameterCount(model) / 1e6).toFixed(2)} M parameters`;
  if (c.kind === 'fc-unet') return `fc-unet width ${c.width} (${size})`;
  return `unet ${c.baseChannels}x[${c.channelMults}] attention at ${c.attentionResolutions.join(',')} px (${size})`;
}

function describeData(d: DataRecord): string {
  return d.dataset === 'folder' ? `${d.imageSize}-px ${d.channels === 1 ? 'grayscale' : 'RGB'} ${d.path}` : d.dataset === 'mnist' ? 'MNIST' : 'MNIST-32';
}

/** A model with the weights of a checkpoint, for sampling: the moving average where the run kept one. */
export function loadModel(dir: string): { model: Denoiser; meta: CheckpointMeta; averaged: boolean } {
  const { meta, tensors } = loadCheckpoint(dir);
  const model = buildModel(meta.model, new Rng(0));
  const averaged = [...tensors.keys()].some((k) => k.startsWith('ema/'));
  try {
    assignSaved(tensors, averaged ? 'ema/' : 'model/', model.variables, true);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, meta, averaged };
}

export type ModelKind = 'fc' | 'unet';

export interface TrainOptions {
  /** The denoiser: the seed's fully connected U-net, or the convolutional one. */
  model: ModelKind;
  /** 'mnist', 'mnist32' (padded to 32 px), or a folder of images. */
  data: string;
  /** Side of a folder's images after resizing and cropping. */
  imageSize: number;
  /** 3 (RGB) or 1 (grayscale), for a folder's images. */
  channels: 1 | 3;
  /** Choices for the convolutional U-net; unetConfig fills in the rest. */
  unet: Partial<UnetConfig>;
  epochs: number;
  batchSize: number;
  lr: number;
  width: number;
  timesteps: number;
  limit: number;
  seed: number;
  out: string;
  resume: boolean;
  overwrite: boolean;
  sampleEvery: number;
  /** Decay of the weights' moving average (0 = none). */
  ema: number;
  lrSchedule: LrSchedule['kind'];
  warmupSteps: number;
  /** Keep a copy of the checkpoint in out/epoch-NNNN every this many epochs (0 = never). */
  keepEvery: number;
  /** Recorded in the checkpoint as the sampler's default. */
  clipDenoised: boolean;
  /** What the model learns to predict (fixed for a run). */
  prediction: Prediction;
  /** Options the user gave explicitly (for resume: they override or must agree with the checkpoint). */
  explicit: Set<string>;
}

export interface TrainHooks {
  log(message: string): void;
  shouldStop(): boolean;
  progress?(): Progress;
}

/** What a run trains on, as its checkpoint records it. */
export function dataRecord(o: Pick<TrainOptions, 'data' | 'imageSize' | 'channels' | 'limit'>): DataRecord {
  if (o.data === 'mnist' || o.data === 'mnist32') return { dataset: o.data, limit: o.limit, count: 0 };
  return { dataset: 'folder', path: path.resolve(o.data), imageSize: o.imageSize, channels: o.channels, limit: o.limit, count: 0 };
}

/** Height, width and channels of the data a record names. */
export function dataShape(data: DataRecord): { height: number; width: number; channels: number } {
  if (data.dataset === 'mnist') return { height: 28, width: 28, channels: 1 };
  if (data.dataset === 'mnist32') return { height: 32, width: 32, channels: 1 };
  return { height: data.imageSize!, width: data.imageSize!, channels: data.channels! };
}

/** The training images a record names: MNIST, MNIST padded to 32 px, or a folder. */
export async function loadTrainingData(data: DataRecord, log: (m: string) => void = () => {}): Promise<ImageSet> {
  if (data.dataset === 'mnist') return loadMnist('train', data.limit);
  if (data.dataset === 'mnist32') return padImages(loadMnist('train', data.limit), 2);
  const set = await loadImageFolder(data.path!, { size: data.imageSize!, channels: data.channels === 1 ? 1 : 3, limit: data.limit });
  if (set.skipped > 0) log(`skipped ${set.skipped} of ${set.files} image files in ${data.path} that could not be read`);
  return set;
}

/** The record of a run that has not started: the seed recipe, with the given choices. */
export function newRunMeta(
  o: Pick<TrainOptions, 'width' | 'timesteps' | 'limit' | 'batchSize' | 'lr' | 'seed'> &
    Partial<Pick<TrainOptions, 'ema' | 'lrSchedule' | 'warmupSteps' | 'clipDenoised' | 'prediction' | 'model' | 'data' | 'imageSize' | 'channels' | 'unet'>>,
): CheckpointMeta {
  const model = o.model ?? 'fc';
  const data = dataRecord({ data: o.data ?? (model === 'unet' ? 'mnist32' : 'mnist'), imageSize: o.imageSize ?? 32, channels: o.channels ?? 3, limit: o.limit });
  const shape = dataShape(data);
  if (model === 'fc') validateFcUnetWidth(o.width);
  return {
    model: model === 'fc' ? fcUnetConfig(o.width, shape.height, shape.width, shape.channels) : unetConfig(shape.height, shape.channels, o.unet),
    schedule: linearSchedule(o.timesteps, undefined, undefined, o.prediction),
    data,
    training: {
      epoch: 0,
      step: 0,
      batchSize: o.batchSize,
      optimizer: { kind: 'adam', ...adamConfig(o.lr) },
      seed: o.seed,
      rng: new Rng(o.seed + 1).state(), // a stream apart from the one that draws the initial weights
      loss: null,
      ema: o.ema ?? 0,
      // totalSteps is set when training starts, from --epochs and the data's size
      lrSchedule: { kind: o.lrSchedule ?? 'constant', warmupSteps: o.warmupSteps ?? 0, totalSteps: 0 },
    },
    sampling: { clipDenoised: o.clipDenoised ?? false },
  };
}

/** The checkpoint's record, with explicitly given options applied; architecture changes are refused. */
function resumedMeta(saved: CheckpointMeta, o: TrainOptions): CheckpointMeta {
  if (o.explicit.has('width') && (saved.model.kind !== 'fc-unet' || o.width !== saved.model.width)) {
    const has = saved.model.kind === 'fc-unet' ? `width ${saved.model.width}` : 'a convolutional U-net';
    throw new UserError(`the checkpoint in ${o.out} has ${has}; --width ${o.width} would need a new model (use another --out)`);
  }
  for (const option of ['model', 'data', 'imageSize', 'channels']) {
    if (o.explicit.has(option)) throw new UserError(`${flagName(option)} is fixed when a run starts; the checkpoint in ${o.out} keeps its own (use another --out)`);
  }
  if (o.explicit.has('timesteps') && o.timesteps !== saved.schedule.timesteps) {
    throw new UserError(`the checkpoint in ${o.out} uses ${saved.schedule.timesteps} timesteps, not ${o.timesteps}`);
  }
  const savedPrediction = saved.schedule.prediction ?? 'epsilon';
  if (o.explicit.has('prediction') && o.prediction !== savedPrediction) {
    throw new UserError(`the checkpoint in ${o.out} predicts ${savedPrediction}, not ${o.prediction} (use another --out)`);
  }
  const training = { ...saved.training, optimizer: { ...saved.training.optimizer } };
  if (o.explicit.has('batchSize')) training.batchSize = o.batchSize;
  if (o.explicit.has('lr')) training.optimizer.lr = o.lr;
  if (o.explicit.has('ema')) training.ema = o.ema;
  const lrSchedule = training.lrSchedule ?? { kind: 'constant', warmupSteps: 0, totalSteps: 0 };
  training.lrSchedule = {
    ...lrSchedule,
    kind: o.explicit.has('lrSchedule') ? o.lrSchedule : lrSchedule.kind,
    warmupSteps: o.explicit.has('warmupSteps') ? o.warmupSteps : lrSchedule.warmupSteps,
  };
  const data = { ...saved.data };
  if (o.explicit.has('limit')) data.limit = o.limit;
  return { ...saved, data, training };
}

export interface TrainResult {
  epoch: number;
  interrupted: boolean;
  lastLoss: number | null;
  samplesPerSecond: number;
}

export async function runTraining(o: TrainOptions, hooks: TrainHooks): Promise<TrainResult> {
  // Before anything else: a bad configuration, a second writer, or an --out that cannot take files
  // fails before hours of work.
  const fresh = o.resume ? undefined : newRunMeta(o);
  const lock = RunLock.acquire(o.out);
  try {
    return await trainLocked(o, hooks, lock, fresh);
  } finally {
    lock.release();
  }
}

async function trainLocked(o: TrainOptions, hooks: TrainHooks, lock: RunLock, fresh?: CheckpointMeta): Promise<TrainResult> {
  let meta: CheckpointMeta;
  let saved: Map<string, NamedArray> | undefined;
  const exists = checkpointExists(o.out);
  if (o.resume) {
    const loaded = loadCheckpoint(o.out);
    meta = resumedMeta(loaded.meta, o);
    saved = loaded.tensors;
  } else {
    if (exists && !o.overwrite) {
      throw new UserError(`${o.out} already holds a checkpoint; pass --resume to continue it, --overwrite to start afresh, or choose another --out`);
    }
    meta = fresh ?? newRunMeta(o);
  }
  const data = await loadTrainingData(meta.data, hooks.log);
  meta.data.count = data.count;
  // The cosine ends at the last step of --epochs; a resumed run with a new total stretches it from here.
  if (meta.training.lrSchedule) meta.training.lrSchedule.totalSteps = o.epochs * Math.ceil(data.count / meta.training.batchSize);
  if (meta.training.epoch >= o.epochs) {
    hooks.log(`${o.out} already holds ${meta.training.epoch} epochs (--epochs ${o.epochs}); nothing to do`);
    return { epoch: meta.training.epoch, interrupted: false, lastLoss: meta.training.loss, samplesPerSecond: 0 };
  }

  const trainer = new Trainer(meta, saved);
  const batchSize = meta.training.batchSize;
  hooks.log(
    `training ${describeModel(trainer.model)} on ${data.count} ${describeData(meta.data)} images, batch ${batchSize}, ` +
      `lr ${meta.training.optimizer.lr} ${meta.training.lrSchedule?.kind ?? 'constant'}` +
      `${meta.training.lrSchedule && effectiveWarmup(meta.training.lrSchedule) ? ` (warm-up ${effectiveWarmup(meta.training.lrSchedule)} steps)` : ''}` +
      `${meta.training.ema ? `, ema ${meta.training.ema}` : ''}${meta.schedule.prediction === 'v' ? ', v-prediction' : ''}, epochs ${trainer.epoch + 1}..${o.epochs}, checkpoints in ${o.out}`,
  );
  let interrupted = false;
  let lastLoss = meta.training.loss;
  let samplesPerSecond = 0;
  try {
    while (trainer.epoch < o.epochs && !interrupted) {
      const batches = epochBatches(data.count, batchSize, trainer.rng);
      const progress = hooks.progress?.() ?? createProgress('epoch {epoch} |{bar}| {value}/{total} | loss {loss} | {sps} samples/s | ETA {eta_formatted}');
      const started = Date.now();
      let lossSum = 0;
      let seen = 0;
      const payload = (loss: number) => ({ epoch: `${trainer.epoch + 1}/${o.epochs}`, loss: loss.toFixed(4), sps: Math.round((seen * 1000) / Math.max(1, Date.now() - started)) });
      progress.start(batches.length, payload(0));
      for (let i = 0; i < batches.length; i++) {
        const loss = trainer.trainStep(data, batches[i]);
        lossSum += loss * batches[i].length;
        seen += batches[i].length;
        progress.update(i + 1, payload(lossSum / seen));
        await new Promise(setImmediate); // lets a pending Ctrl-C handler run
        if (hooks.shouldStop()) {
          interrupted = true;
          break;
        }
      }
      const seconds = (Date.now() - started) / 1000;
      samplesPerSecond = seen / seconds;
      if (interrupted) {
        // Weights include this partial epoch; the epoch count does not, so resume repeats the epoch.
        progress.stop(`interrupted in epoch ${trainer.epoch + 1} after ${seen} images; saving`);
      } else {
        trainer.epoch += 1;
        lastLoss = lossSum / seen;
        progress.stop(`epoch ${trainer.epoch}/${o.epochs}: loss ${lastLoss.toFixed(4)}, ${Math.round(samplesPerSecond)} samples/s, ${seconds.toFixed(1)} s`);
      }
      lock.verify();
      saveCheckpoint(o.out, trainer.checkpointMeta(lastLoss), trainer.tensors());
      if (!interrupted && o.keepEvery > 0 && trainer.epoch % o.keepEvery === 0) {
        saveCheckpoint(path.join(o.out, `epoch-${String(trainer.epoch).padStart(4, '0')}`), trainer.checkpointMeta(lastLoss), trainer.tensors());
      }
      if (!interrupted && o.sampleEvery > 0 && (trainer.epoch % o.sampleEvery === 0 || trainer.epoch === o.epochs)) {
        const file = path.join(o.out, `samples-epoch-${String(trainer.epoch).padStart(4, '0')}.png`);
        const averaged = trainer.averagedModel();
        const images = generate(averaged ?? trainer.model, trainer.scheduler, {
          n: 64,
          rng: new Rng(meta.training.seed + 2), // the same noise at every epoch, so grids compare
          progress: hooks.progress?.() ?? samplingProgress(),
        });
        averaged?.dispose();
        await writeImageGrid(file, images, 64, meta.model.height, meta.model.imageWidth, meta.model.channels ?? 1);
        hooks.log(`wrote ${file}`);
      }
    }
  } finally {
    trainer.dispose();
  }
  return { epoch: trainer.epoch, interrupted, lastLoss, samplesPerSecond };
}
