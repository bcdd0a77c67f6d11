/**
 * Data-parallel gradients over the machine's cores: each batch is cut into equal shares, worker
 * threads compute the gradient of theirs while this thread computes its own, and the shares' gradients
 * are averaged (weighted by share size, so the result is the whole batch's mean-loss gradient). Each
 * thread runs its kernels single-threaded. Why: most of a U-net step is small kernels and tfjs's
 * per-op JavaScript, which one thread pays serially and which the kernels' own threads cannot split
 * (docs/backends.md has the measurements).
 *
 * The threads meet through shared memory and Atomics, so a training step stays synchronous: this
 * thread writes the weights and each worker's inputs, wakes the workers, computes its share, then
 * waits for theirs. Only the blas backend runs here (the workers start it too).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { MessageChannel, MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { loadNativeAddon } from '../backend/addon';
import { ModelConfig } from '../models/denoiser';

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
} as const;

/** What a worker thread is started with (see gradientWorker.ts). */
export interface WorkerSetup {
  model: ModelConfig;
  control: Int32Array;
  /** All weights, in the model's variable order. */
  weights: Float32Array;
  /** The share's noisy images, then its targets, then its t/T. */
  inputs: Float32Array;
  /** The share's gradients in variable order, then its mean loss. */
  grads: Float32Array;
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
  grads: Float32Array;
  port: MessagePort;
}

/** Cuts `batch` into `parts` contiguous shares as equal as possible; returns their [start, end). */
export function shares(batch: number, parts: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < parts; i++) out.push([Math.floor((i * batch) / parts), Math.floor(((i + 1) * batch) / parts)]);
  return out;
}

export class GradientWorkers {
  private readonly shares: Share[] = [];
  private readonly weights: Float32Array;
  private request = 0;
  /** The largest batch it takes. */
  readonly capacity: number;

  /** Starts `workers` threads for a model of `config` with `pixels` numbers per image, for batches of at most `maxBatch`. */
  constructor(
    config: ModelConfig,
    private readonly variables: tf.Variable[],
    private readonly pixels: number,
    maxBatch: number,
    workers: number,
  ) {
    const size = variables.reduce((n, v) => n + v.size, 0);
    this.weights = new Float32Array(new SharedArrayBuffer(size * 4));
    const perShare = Math.ceil(maxBatch / (workers + 1));
    this.capacity = perShare * (workers + 1);
    for (let i = 0; i < workers; i++) {
      const control = new Int32Array(new SharedArrayBuffer(16));
      control[Slot.Done] = -1;
      const inputs = new Float32Array(new SharedArrayBuffer(perShare * (2 * pixels + 1) * 4));
      const grads = new Float32Array(new SharedArrayBuffer((size + 1) * 4));
      const { port1, port2 } = new MessageChannel();
      const setup: WorkerSetup = { model: config, control, weights: this.weights, inputs, grads, pixels, port: port2 };
      const worker = new Worker(path.join(__dirname, 'gradientWorker.js'), { workerData: setup, transferList: [port2] });
      worker.unref(); // a trainer left undisposed must not keep the process alive
      this.shares.push({ worker, control, inputs, grads, port: port1 });
    }
    for (const s of this.shares) {
      // Blocking here is fine: the workers start on their own threads.
      if (Atomics.wait(s.control, Slot.Done, -1, STARTUP_MS) === 'timed-out') throw new Error('a gradient worker did not start');
      this.check(s);
    }
  }

  /** Threads computing shares, this one included. */
  get parts(): number {
    return this.shares.length + 1;
  }

  /**
   * The mean loss of the batch and its gradients (in variable order), with `own` computing this
   * thread's share: own(start, end) returns that share's mean loss and gradients.
   */
  gradients(
    xt: Float32Array,
    target: Float32Array,
    tFrac: Float32Array,
    own: (start: number, end: number) => { loss: tf.Scalar; grads: tf.Tensor[] },
  ): { loss: number; grads: tf.Tensor[] } {
    const batch = tFrac.length;
    const P = this.pixels;
    const cuts = shares(batch, this.parts);
    let offset = 0;
    for (const v of this.variables) {
      this.weights.set(v.dataSync() as Float32Array, offset);
      offset += v.size;
    }
    this.request += 1;
    this.shares.forEach((s, i) => {
      const [start, end] = cuts[i + 1];
      const n = end - start;
      s.inputs.set(xt.subarray(start * P, end * P), 0);
      s.inputs.set(target.subarray(start * P, end * P), n * P);
      s.inputs.set(tFrac.subarray(start, end), 2 * n * P);
      s.control[Slot.Count] = n;
      Atomics.store(s.control, Slot.Request, this.request);
      Atomics.notify(s.control, Slot.Request);
    });
    const threads = loadNativeAddon()!.setThreads(1);
    let mine: { loss: tf.Scalar; grads: tf.Tensor[] };
    try {
      mine = own(cuts[0][0], cuts[0][1]);
    } finally {
      loadNativeAddon()!.setThreads(threads);
      for (const s of this.shares) this.wait(s);
    }
    // The shares' means, weighted by their sizes (a running weighted mean): the batch's mean.
    const native = loadNativeAddon()!;
    const size = this.weights.length;
    const sum = new Float32Array(size + 1);
    offset = 0;
    mine.grads.forEach((g, k) => {
      sum.set(g.dataSync() as Float32Array, offset);
      offset += this.variables[k].size;
    });
    sum[size] = mine.loss.dataSync()[0];
    let seen = cuts[0][1] - cuts[0][0];
    this.shares.forEach((s, i) => {
      const n = cuts[i + 1][1] - cuts[i + 1][0];
      native.lerp(sum, s.grads, seen / (seen + n));
      seen += n;
    });
    offset = 0;
    const grads = this.variables.map((v) => {
      const g = tf.tensor(sum.subarray(offset, offset + v.size), v.shape, 'float32');
      offset += v.size;
      return g;
    });
    const loss = sum[size];
    return { loss, grads };
  }

  private wait(s: Share): void {
    while (Atomics.load(s.control, Slot.Done) !== this.request) Atomics.wait(s.control, Slot.Done, Atomics.load(s.control, Slot.Done), 1000);
    this.check(s);
  }

  private check(s: Share): void {
    if (Atomics.load(s.control, Slot.Status) === 0) return;
    const message = receiveMessageOnPort(s.port)?.message as { error?: string } | undefined;
    throw new Error(`gradient worker: ${message?.error ?? 'failed'}`);
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
