/**
 * One training step of a diffusion model (Ho et al.): noise each image to a uniform random timestep,
 * regress the model's output on the schedule's target (the noise ε, or the velocity v) by mean squared
 * error, take an Adam step and update the weights' average. The trainer holds what a checkpoint saves.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs'; // registers the gradients, which tfjs-core's CommonJS build leaves out
import { RunRecord } from '../config/runRecord';
import { gatherBatch, mirrorImages } from '../data/batches';
import { ImageSet } from '../data/mnist';
import { UserError } from '../errors';
import { NamedArray, restoreVariables } from '../io/checkpoint';
import { buildModel } from '../models/build';
import { Denoiser } from '../models/denoiser';
import { DDPMScheduler } from '../diffusion/schedule';
import { Rng } from '../rng';
import { TraceCache } from '../ops/kernelTrace';
import { lossGradients, noisedShare } from '../diffusion/loss';
import { TimestepSampler } from '../diffusion/weighting';
import { assignCopy } from '../tensors';
import { WeightAverage } from '../optim/ema';
import { learningRateAt } from '../optim/lrSchedule';
import { ParallelDenoiser, WorkerPool } from '../parallel/dataParallel';
import { Adam, Gradients } from '../optim/adam';

/** A loss that stops training: not finite, or diverged. The last good checkpoint stays. */
export class NonFiniteLossError extends UserError {}

/**
 * The targets (ε or v) have unit variance, so predicting zeros scores 1: a mean squared error a
 * thousand times that is a run that has diverged, whose weights would only be saved as garbage.
 */
const DIVERGED_LOSS = 1e3;

export interface TrainerOptions {
  /**
   * Threads sharing each batch's gradient (data parallel, blas backend only; see dataParallel.ts);
   * 1 computes it on this thread alone. Results agree to float rounding, so it is not in the run record.
   */
  workers?: number;
}

/** The model, its optimizer, the schedule and the random stream, and how far training has come. */
export class Trainer {
  readonly model: Denoiser;
  readonly optimizer: Adam;
  readonly scheduler: DDPMScheduler;
  /** Draws each batch's timesteps: uniformly, or at the run's noise levels. */
  private readonly timesteps: TimestepSampler;
  readonly rng: Rng;
  /** The weights' moving average, where the run keeps one. */
  readonly ema: WeightAverage | null;
  epoch = 0;
  readonly meta: RunRecord;
  private readonly workers: number;
  /** Started at the first step that uses them. */
  private pool: WorkerPool | null = null;
  /** This thread's loss and gradients, replayed (lossGradients). */
  private readonly gradientTraces = new TraceCache();

  /** A trainer at the state the record describes, with the saved arrays where resuming. */
  constructor(meta: RunRecord, saved?: Map<string, NamedArray>, options: TrainerOptions = {}) {
    this.meta = meta;
    this.workers = Math.max(1, Math.floor(options.workers ?? 1));
    this.scheduler = new DDPMScheduler(meta.schedule);
    this.timesteps = new TimestepSampler(this.scheduler, meta.training.levels);
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

  /** Optimizer updates taken. */
  get step(): number {
    return this.optimizer.step;
  }

  /** One optimizer update on the examples `indices` of `data`; returns the loss before the update. */
  trainStep(data: ImageSet, indices: ArrayLike<number>): number {
    const batch = indices.length;
    const pixels = data.height * data.width * data.channels;
    const x0 = gatherBatch(data.data, pixels, indices);
    // Drawn only where the run flips, so runs without it keep the random stream they always had.
    if (this.meta.data.flip) mirrorImages(x0, data, Array.from({ length: batch }, () => this.rng.uniform() < 0.5));
    const t = this.timesteps.draw(this.rng, batch);
    // The noise is the stream's next batch x pixels normals; each thread draws its share of them
    // (the transcendental functions are most of a step's serial time), this one steps past them all.
    const noiseAt = this.rng.state();
    this.rng.skipNormals(batch * pixels);
    const labels = this.batchLabels(data, indices);
    return tf.tidy(() => {
      // The loss and gradients of images [start, end) of the batch.
      const share = (start: number, end: number) => {
        const inputs = noisedShare(this.scheduler, this.meta.training.weighting, x0.subarray(start * pixels, end * pixels), t.subarray(start, end), noiseAt, start * pixels);
        if (labels) inputs.labels = tf.tensor1d(labels.subarray(start, end));
        return lossGradients(this.model, this.gradientTraces, inputs);
      };
      let loss: number;
      let grads: (tf.Tensor | Float32Array)[];
      const pool = this.workersFor(batch);
      if (pool) ({ loss, grads } = pool.gradients([...this.model.variables.values()], x0, t, noiseAt, share, labels));
      else {
        const r = share(0, batch);
        loss = r.loss.dataSync()[0];
        grads = r.grads;
      }
      if (!Number.isFinite(loss)) throw new NonFiniteLossError(`training stopped: the loss became ${loss} at step ${this.optimizer.step + 1}`);
      if (loss > DIVERGED_LOSS) throw new NonFiniteLossError(`training stopped: the loss reached ${loss.toPrecision(3)} at step ${this.optimizer.step + 1}: the run diverged (a smaller --lr?)`);
      const named: Gradients = Object.fromEntries([...this.model.variables.keys()].map((name, i) => [name, grads[i]]));
      this.optimizer.apply(named, learningRateAt(this.meta.training.optimizer.lr, this.meta.training.lrSchedule, this.optimizer.step + 1));
      this.ema?.update(this.model.variables, this.optimizer.step);
      return loss;
    });
  }

  /**
   * A conditional model's labels for the batch's images, each dropped to "no class" (the index
   * `classes`) with the run's label dropout, drawn from the run's generator after the noise; null for an
   * unconditional model.
   */
  private batchLabels(data: ImageSet, indices: ArrayLike<number>): Float32Array | null {
    const classes = this.meta.model.classes;
    if (classes === 0) return null;
    if (!data.labels) throw new Error('a conditional model needs labelled data');
    const dropout = this.meta.training.labelDropout;
    return Float32Array.from(indices, (i) => (this.rng.uniform() < dropout ? classes : data.labels![i]));
  }

  /** The worker threads for a batch of `batch` images, or null where this thread computes it alone. */
  private workersFor(batch: number): WorkerPool | null {
    if (this.workers < 2 || batch < this.workers || tf.getBackend() !== 'blas') return null;
    if (this.pool && this.pool.capacity < batch) {
      this.pool.dispose();
      this.pool = null;
    }
    this.pool ??= new WorkerPool(this.model, Math.max(batch, this.meta.training.batchSize), this.workers - 1, this.meta.schedule, this.meta.training.weighting);
    return this.pool;
  }

  /**
   * `model` (this trainer's, or a copy such as averagedModel()'s) predicting on the training threads.
   * The result holds nothing of its own: dispose `model` as before, not it.
   */
  onWorkers(model: Denoiser): Denoiser {
    const pool = this.workersFor(this.meta.training.batchSize);
    return pool ? new ParallelDenoiser(model, this.workers, this.meta.training.batchSize, pool) : model;
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
    restoreVariables(saved, 'model/', this.model.variables, true);
    restoreVariables(saved, 'adam/m/', this.optimizer.m, false);
    restoreVariables(saved, 'adam/v/', this.optimizer.v, false);
    if (this.ema) {
      if ([...saved.keys()].some((k) => k.startsWith('ema/'))) restoreVariables(saved, 'ema/', this.ema.shadow, true);
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

  checkpointMeta(loss: number | null): RunRecord {
    return {
      ...this.meta,
      training: { ...this.meta.training, epoch: this.epoch, step: this.optimizer.step, rng: this.rng.state(), loss },
    };
  }

  dispose(): void {
    this.pool?.dispose();
    this.pool = null;
    this.gradientTraces.dispose();
    this.model.dispose();
    this.optimizer.dispose();
    this.ema?.dispose();
  }
}

