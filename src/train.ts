/**
 * Training: ε-prediction MSE (Ho et al.) with a uniform random timestep per example, Adam, a checkpoint
 * after every epoch, optional sample grids, resume, and a clean stop on Ctrl-C or a non-finite loss.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs'; // registers the gradients, which tfjs-core's CommonJS build leaves out
import { CheckpointMeta, NamedArray, checkpointExists, loadCheckpoint, saveCheckpoint } from './checkpoint';
import { epochBatches, gatherBatch } from './data/batches';
import { ImageSet, loadMnist } from './data/mnist';
import { UserError } from './errors';
import { writeImageGrid } from './image';
import { Denoiser, FcUnetConfig } from './models/denoiser';
import { FcUnet, fcUnetConfig, validateFcUnetWidth } from './models/fcUnet';
import { Adam, adamConfig } from './optim';
import { Progress, createProgress, samplingProgress } from './progress';
import { Rng } from './rng';
import { generate } from './sample';
import { WeightAverage } from './ema';
import { assignCopy } from './tensors';
import { DDPMScheduler, linearSchedule } from './schedule';
import { LrSchedule, learningRateAt } from './lrSchedule';

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
    const pixels = data.height * data.width;
    const T = this.scheduler.timesteps;
    const x0 = gatherBatch(data.data, pixels, indices);
    const t = new Int32Array(batch);
    for (let b = 0; b < batch; b++) t[b] = this.rng.int(T);
    const eps = this.rng.fillNormal(new Float32Array(batch * pixels));
    const xt = this.scheduler.addNoise(x0, eps, t);
    return tf.tidy(() => {
      const xs = tf.tensor2d(xt, [batch, pixels]);
      const tFrac = tf.tensor1d(Float32Array.from(t, (v) => v / T));
      const target = tf.tensor2d(eps, [batch, pixels]);
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

export function buildModel(config: FcUnetConfig, rng: Rng): Denoiser {
  if (config?.kind !== 'fc-unet') throw new UserError(`unknown model kind "${(config as { kind?: string })?.kind}" in checkpoint`);
  return new FcUnet(config, rng);
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

export interface TrainOptions {
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
  /** Options the user gave explicitly (for resume: they override or must agree with the checkpoint). */
  explicit: Set<string>;
}

export interface TrainHooks {
  log(message: string): void;
  shouldStop(): boolean;
  progress?(): Progress;
}

/** The record of a run that has not started: the seed recipe, with the given choices. */
export function newRunMeta(
  o: Pick<TrainOptions, 'width' | 'timesteps' | 'limit' | 'batchSize' | 'lr' | 'seed'> & Partial<Pick<TrainOptions, 'ema' | 'lrSchedule' | 'warmupSteps' | 'clipDenoised'>>,
): CheckpointMeta {
  validateFcUnetWidth(o.width);
  return {
    model: fcUnetConfig(o.width),
    schedule: linearSchedule(o.timesteps),
    data: { dataset: 'mnist', limit: o.limit, count: 0 },
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
  if (o.explicit.has('width') && o.width !== saved.model.width) {
    throw new UserError(`the checkpoint in ${o.out} has width ${saved.model.width}; --width ${o.width} would need a new model (use another --out)`);
  }
  if (o.explicit.has('timesteps') && o.timesteps !== saved.schedule.timesteps) {
    throw new UserError(`the checkpoint in ${o.out} uses ${saved.schedule.timesteps} timesteps, not ${o.timesteps}`);
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
    meta = newRunMeta(o);
  }
  const data = loadMnist('train', meta.data.limit);
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
    `training fc-unet width ${meta.model.width} on ${data.count} MNIST images, batch ${batchSize}, ` +
      `lr ${meta.training.optimizer.lr} ${meta.training.lrSchedule?.kind ?? 'constant'}` +
      `${meta.training.lrSchedule?.warmupSteps ? ` (warm-up ${meta.training.lrSchedule.warmupSteps})` : ''}` +
      `${meta.training.ema ? `, ema ${meta.training.ema}` : ''}, epochs ${trainer.epoch + 1}..${o.epochs}, checkpoints in ${o.out}`,
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
        await writeImageGrid(file, images, 64, meta.model.height, meta.model.imageWidth);
        hooks.log(`wrote ${file}`);
      }
    }
  } finally {
    trainer.dispose();
  }
  return { epoch: trainer.epoch, interrupted, lastLoss, samplesPerSecond };
}
