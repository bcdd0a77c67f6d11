/**
 * Data parallelism over the machine's cores: each batch is cut into equal shares, worker threads
 * compute theirs while this thread computes its own. For training, the shares' gradients are averaged
 * (weighted by share size, so the result is the whole batch's mean-loss gradient); for sampling, the
 * shares' predictions are put back in order. Each thread runs its kernels single-threaded. Why: much of
 * a U-net step is small kernels and tfjs's per-op JavaScript, which one thread pays serially and which
 * the kernels' own threads cannot split (docs/backends.md has the measurements).
 *
 * The threads meet through shared memory and Atomics, so a step stays synchronous: this thread writes
 * the weights and each worker's inputs, wakes the workers, computes its share, then waits for theirs.
 * Only the blas backend runs here (the workers start it too).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { MessageChannel, MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { loadNativeAddon } from '../backend/addon';
import { peekValues } from '../backend/blasBackend';
import { Denoiser, ModelConfig, imageSize, parameterCount } from '../models/denoiser';
import { ScheduleConfig } from '../diffusion/schedule';
import { Weighting } from '../diffusion/weighting';
import { RngState } from '../rng';

/** Slots of a worker's control array. */
export const Slot = {
  /** Request number: this thread raises it to start a step (-1: stop). */
  Request: 0,
  /** The request number the worker has finished (0 once it is ready). */
  Done: 1,
  /** 0: the finished request succeeded; 1: it failed (the message comes on the port). */
  Status: 2,
  /** Images in the request. */
  Count: 3,
  /** What to compute: Task.Gradients or Task.Predict. */
  Task: 4,
  /** Gradients: the generator's state where the batch's noise begins (four words, Rng.state()). */
  NoiseState: 5,
  /** Gradients: where the share's noise begins in the batch's (in values). */
  NoiseOffset: 9,
  /** 1: load the shared weights first; 0: the worker's copy is already this request's (predictions with fixed weights). */
  Reload: 10,
  /** 1: the inputs end with a class label per image (a conditional model). */
  Labelled: 11,
} as const;
const CONTROL_SLOTS = 12;

export const Task = { Gradients: 0, Predict: 1 } as const;

/** What a worker thread is started with (see dataParallelWorker.ts). */
export interface WorkerSetup {
  model: ModelConfig;
  control: Int32Array;
  /** All weights, in the model's variable order. */
  weights: Float32Array;
  /** The share's images (clean for gradients, as sampled for predictions), then a number per image (its timestep; t/T for predictions), then, labelled, a class per image. */
  inputs: Float32Array;
  /** The noise schedule and the loss's weighting, where the pool computes gradients (each thread noises and weighs its own share). */
  schedule?: ScheduleConfig;
  weighting?: Weighting;
  /** The share's gradients in variable order, then its mean loss; or its predictions. */
  output: Float32Array;
  pixels: number;
  port: MessagePort;
}

const STARTUP_MS = 120_000;

/**
 * Threads per batch where the user has not chosen: every core for the convolutional U-net on the blas
 * backend. The fully connected net's steps are a few large products that OpenBLAS already spreads over
 * the cores, and copying its millions of weights to the workers costs more than they save.
 */
export function defaultWorkers(model: ModelConfig): number {
  return model.kind === 'unet' && tf.getBackend() === 'blas' ? os.availableParallelism() : 1;
}

interface Share {
  worker: Worker;
  control: Int32Array;
  inputs: Float32Array;
  output: Float32Array;
  port: MessagePort;
}

/** Writes the arrays one after another into `out` from its start (the layout of the shared weights and gradients). */
export function pack(arrays: readonly Float32Array[], out: Float32Array): Float32Array {
  let offset = 0;
  for (const a of arrays) {
    out.set(a, offset);
    offset += a.length;
  }
  return out;
}

/** A share's gradients (in variable order), then its mean loss, packed into `out`: what each thread hands over. */
export function packGradients(grads: tf.Tensor[], loss: tf.Tensor, out: Float32Array): Float32Array {
  return pack([...grads, loss].map(peekValues), out); // copied at once: the backend keeps its arrays
}

/** The pieces of `flat` that pack() made from arrays of these variables' sizes, as views. */
export function unpack(flat: Float32Array, variables: readonly tf.Variable[]): Float32Array[] {
  let offset = 0;
  return variables.map((v) => flat.subarray(offset, (offset += v.size)));
}

/** Cuts `batch` into `parts` contiguous shares as equal as possible; returns their [start, end). */
export function shares(batch: number, parts: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < parts; i++) out.push([Math.floor((i * batch) / parts), Math.floor(((i + 1) * batch) / parts)]);
  return out;
}

export class WorkerPool {
  private readonly shares: Share[] = [];
  private readonly weights: Float32Array;
  private request = 0;
  /** Numbers per image, and weights in all. */
  private readonly pixels: number;
  private readonly parameters: number;
  /** The largest batch it takes. */
  readonly capacity: number;
  /** The shares' averaged gradients and loss, in pack() layout: gradients() hands out views of it. */
  private readonly sum: Float32Array;
  /** Whose fixed weights the workers hold (the key predict() was given), or null. */
  private holding: object | null = null;

  /**
   * Starts `workers` threads, each with a copy of `model`'s architecture, for batches of at most
   * `maxBatch`; `schedule` and `weighting` where it computes training gradients.
   */
  constructor(model: Denoiser, maxBatch: number, workers: number, schedule?: ScheduleConfig, weighting?: Weighting) {
    const config = model.config;
    this.pixels = imageSize(config);
    this.parameters = parameterCount(model);
    const { pixels, parameters } = this;
    this.weights = new Float32Array(new SharedArrayBuffer(parameters * 4));
    this.sum = new Float32Array(parameters + 1);
    const perShare = Math.ceil(maxBatch / (workers + 1));
    this.capacity = perShare * (workers + 1);
    for (let i = 0; i < workers; i++) {
      const control = new Int32Array(new SharedArrayBuffer(4 * CONTROL_SLOTS));
      control[Slot.Done] = -1;
      const inputs = new Float32Array(new SharedArrayBuffer(perShare * (pixels + 2) * 4));
      const output = new Float32Array(new SharedArrayBuffer(Math.max(parameters + 1, perShare * pixels) * 4));
      const { port1, port2 } = new MessageChannel();
      const setup: WorkerSetup = { model: config, control, weights: this.weights, inputs, output, pixels, port: port2, schedule, weighting };
      const worker = new Worker(path.join(__dirname, 'dataParallelWorker.js'), { workerData: setup, transferList: [port2] });
      worker.unref(); // a pool left undisposed must not keep the process alive
      this.shares.push({ worker, control, inputs, output, port: port1 });
    }
    for (const s of this.shares) {
      // Blocking here is fine: the workers start on their own threads.
      if (Atomics.wait(s.control, Slot.Done, -1, STARTUP_MS) === 'timed-out') throw new Error('a data-parallel worker thread did not start');
      this.check(s);
    }
  }

  /** Threads computing shares, this one included. */
  get parts(): number {
    return this.shares.length + 1;
  }

  /**
   * The mean loss of the batch x0 at timesteps t and its gradients (in variable order) at the weights
   * `variables`, the noise drawn from the generator state `noiseAt` (see noisedShare), with `own`
   * computing this thread's share: own(start, end) returns that share's mean loss and gradients.
   * The gradients are views of the pool's own array, valid until its next request (no copies into
   * tensors: Adam takes them as they are).
   */
  gradients(
    variables: tf.Variable[],
    x0: Float32Array,
    t: Int32Array,
    noiseAt: RngState,
    own: (start: number, end: number) => { loss: tf.Scalar; grads: tf.Tensor[] },
    labels: Float32Array | null = null,
  ): { loss: number; grads: Float32Array[] } {
    // This thread's share is copied out before waiting for the workers' (which load the weights and
    // write their gradients in their own time, so they usually finish later).
    const packed = (start: number, end: number) => {
      const mine = own(start, end);
      return packGradients(mine.grads, mine.loss, this.sum);
    };
    const { cuts, mine: sum } = this.step(Task.Gradients, variables, x0, t, labels, packed, noiseAt);
    // The shares' means, weighted by their sizes (a running weighted mean): the batch's mean.
    const native = loadNativeAddon()!;
    let seen = cuts[0][1] - cuts[0][0];
    this.shares.forEach((s, i) => {
      const n = cuts[i + 1][1] - cuts[i + 1][0];
      native.lerp(sum, s.output.subarray(0, this.parameters + 1), seen / (seen + n));
      seen += n;
    });
    return { loss: sum[this.parameters], grads: unpack(sum, variables) };
  }

  /**
   * The model's output for the images x at t/T = tFrac, with the weights `variables`; `own` predicts
   * this thread's share. `fixed`: a key for weights that do not change (a sampler's model), so the
   * workers load them once, not at every call (the copy was ~0.7 ms of a 34-ms sampling step).
   */
  predict(variables: tf.Variable[], x: Float32Array, tFrac: Float32Array, labels: Float32Array | null, own: (start: number, end: number) => Float32Array, fixed?: object): Float32Array {
    const P = this.pixels;
    const out = new Float32Array(x.length);
    const { cuts, mine } = this.step(Task.Predict, variables, x, tFrac, labels, own, undefined, fixed);
    out.set(mine, 0);
    this.shares.forEach((s, i) => {
      const [start, end] = cuts[i + 1];
      out.set(s.output.subarray(0, (end - start) * P), start * P);
    });
    return out;
  }

  /**
   * Writes the weights where `reload` (else the workers' copies are current) and the workers' shares
   * (images, a number per image, where noised the noise's start) and wakes them; returns the shares,
   * this thread's first.
   */
  private run(task: number, variables: tf.Variable[], x: Float32Array, perImage: ArrayLike<number>, labels: Float32Array | null, reload: boolean, noiseAt?: RngState): [number, number][] {
    const P = this.pixels;
    const cuts = shares(perImage.length, this.parts);
    if (reload) pack(variables.map((v) => v.dataSync() as Float32Array), this.weights);
    this.request += 1;
    this.shares.forEach((s, i) => {
      const [start, end] = cuts[i + 1];
      const n = end - start;
      s.inputs.set(x.subarray(start * P, end * P), 0);
      for (let b = 0; b < n; b++) s.inputs[n * P + b] = perImage[start + b];
      if (labels) s.inputs.set(labels.subarray(start, end), n * P + n);
      s.control[Slot.Labelled] = labels ? 1 : 0;
      if (noiseAt) {
        noiseAt.forEach((word, k) => (s.control[Slot.NoiseState + k] = word));
        s.control[Slot.NoiseOffset] = start * P;
      }
      s.control[Slot.Count] = n;
      s.control[Slot.Task] = task;
      s.control[Slot.Reload] = reload ? 1 : 0;
      Atomics.store(s.control, Slot.Request, this.request);
      Atomics.notify(s.control, Slot.Request);
    });
    return cuts;
  }

  /**
   * Wakes the workers on their shares, computes this thread's (the first) with `own`, and waits for
   * theirs (also when `own` throws). The workers load the weights unless they hold the fixed weights
   * `fixed` from an earlier step that succeeded. Every thread's kernels run single-threaded meanwhile,
   * OpenBLAS's included: its thread count is process-wide, so it is lowered before the workers wake and
   * raised only once they are done. (Raised while a worker still ran, its products ran on OpenBLAS's threads
   * in some steps and not others, and two runs from one seed ended with different weights.)
   */
  private step<T>(
    task: number,
    variables: tf.Variable[],
    x: Float32Array,
    perImage: ArrayLike<number>,
    labels: Float32Array | null,
    own: (start: number, end: number) => T,
    noiseAt?: RngState,
    fixed?: object,
  ): { cuts: [number, number][]; mine: T } {
    const threads = loadNativeAddon()!.setThreads(1);
    try {
      const reload = fixed === undefined || fixed !== this.holding;
      this.holding = null; // until this step succeeds
      const cuts = this.run(task, variables, x, perImage, labels, reload, noiseAt);
      let mine: T;
      try {
        mine = own(cuts[0][0], cuts[0][1]);
      } finally {
        for (const s of this.shares) this.wait(s);
      }
      this.holding = fixed ?? null;
      return { cuts, mine };
    } finally {
      loadNativeAddon()!.setThreads(threads);
    }
  }

  private wait(s: Share): void {
    while (Atomics.load(s.control, Slot.Done) !== this.request) Atomics.wait(s.control, Slot.Done, Atomics.load(s.control, Slot.Done), 1000);
    this.check(s);
  }

  private check(s: Share): void {
    if (Atomics.load(s.control, Slot.Status) === 0) return;
    const message = receiveMessageOnPort(s.port)?.message as { error?: string } | undefined;
    throw new Error(`data-parallel worker thread: ${message?.error ?? 'failed'}`);
  }

  dispose(): void {
    for (const s of this.shares) {
      Atomics.store(s.control, Slot.Request, -1);
      Atomics.notify(s.control, Slot.Request);
      void s.worker.terminate();
      s.port.close();
    }
    this.shares.length = 0;
  }
}

/**
 * A denoiser whose predictions are computed in shares on a pool's threads (the pool started at the
 * first call, for batches of up to `maxBatch`; larger ones go in pieces). It owns the model it wraps
 * and, where it started it, the pool. `shared` is a pool it uses but does not own; `poolOf` another
 * ParallelDenoiser of the same architecture whose pool it borrows (the workers build their copy from
 * the architecture and take the weights with a request, so one pool serves both). `fixedWeights`: the
 * model's weights do not change while it is wrapped (a sampler's), so the workers load them once and
 * again only after the pool served other weights.
 */
export class ParallelDenoiser implements Denoiser {
  private ownPool: WorkerPool | null = null;

  constructor(
    private readonly inner: Denoiser,
    private readonly workers: number,
    private readonly maxBatch: number,
    private readonly shared: WorkerPool | null = null,
    private readonly poolOf: ParallelDenoiser | null = null,
    private readonly fixedWeights = false,
  ) {}

  get config(): ModelConfig {
    return this.inner.config;
  }

  get variables(): ReadonlyMap<string, tf.Variable> {
    return this.inner.variables;
  }

  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D, labels?: tf.Tensor1D): tf.Tensor2D {
    const [batch, pixels] = x.shape;
    if (batch < 2) return this.inner.predict(x, tFrac, labels);
    const pool = this.pool();
    const xs = x.dataSync() as Float32Array, ts = tFrac.dataSync() as Float32Array;
    const ys = labels ? (labels.dataSync() as Float32Array) : null;
    const variables = [...this.inner.variables.values()];
    const out = new Float32Array(batch * pixels);
    for (let first = 0; first < batch; first += pool.capacity) {
      const last = Math.min(batch, first + pool.capacity);
      const piece = pool.predict(variables, xs.subarray(first * pixels, last * pixels), ts.subarray(first, last), ys?.subarray(first, last) ?? null, (start, end) => {
        // The tensor leaves the tidy, not its values: tidy walks what it returns, and walks a typed
        // array element by element (3.8 ms for a 32-image share, 5% of a sampling step).
        const out = tf.tidy(() => this.inner.predict(tf.tensor2d(xs.subarray((first + start) * pixels, (first + end) * pixels), [end - start, pixels]), tf.tensor1d(ts.subarray(first + start, first + end)), ys ? tf.tensor1d(ys.subarray(first + start, first + end)) : undefined));
        try {
          return peekValues(out).slice();
        } finally {
          out.dispose();
        }
      }, this.fixedWeights ? this : undefined);
      out.set(piece, first * pixels);
    }
    return tf.tensor2d(out, [batch, pixels]);
  }

  private pool(): WorkerPool {
    if (this.shared) return this.shared;
    if (this.poolOf) return this.poolOf.pool();
    this.ownPool ??= new WorkerPool(this.inner, this.maxBatch, this.workers - 1);
    return this.ownPool;
  }

  dispose(): void {
    this.ownPool?.dispose();
    this.ownPool = null;
    this.inner.dispose();
  }
}

/**
 * `model`, predicting on `workers` threads where that is more than one, for sampling: its weights must
 * not change while it is wrapped (the workers keep their copy between calls).
 */
export function withWorkers(model: Denoiser, workers = defaultWorkers(model.config), maxBatch = 64): Denoiser {
  return workers > 1 ? new ParallelDenoiser(model, workers, maxBatch, null, null, true) : model;
}

/**
 * `model` and `other` (autoguidance's pair: never predicting at once), each predicting on `workers`
 * threads, for sampling as withWorkers: on one pool where their architectures match (a guide from the
 * same run), else one each. The first owns the shared pool: the second predicts only while the first
 * is undisposed.
 */
export function withWorkersPaired(model: Denoiser, other: Denoiser, workers = defaultWorkers(model.config), maxBatch = 64): [Denoiser, Denoiser] {
  if (workers < 2 || JSON.stringify(model.config) !== JSON.stringify(other.config)) return [withWorkers(model, workers, maxBatch), withWorkers(other, workers, maxBatch)];
  const first = new ParallelDenoiser(model, workers, maxBatch, null, null, true);
  return [first, new ParallelDenoiser(other, workers, maxBatch, null, first, true)];
}
