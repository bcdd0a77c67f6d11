/**
 * The `blas` backend's class: tfjs's cpu backend with a pool of the float32 buffers its own kernels
 * allocate, and the accessor the kernels read their inputs through.
 */
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

type CpuData = { values?: unknown };

/**
 * The cpu backend, plus a pool of the float32 buffers that this backend's own kernels allocate: a
 * training step frees and allocates the same sizes again and again, and fresh buffers cost a page
 * fault per 4 KiB and garbage-collection pauses. Only buffers from `allocate` that never left the
 * backend (readSync/read hand the array itself to the caller) go back to the pool.
 */
export class BlasBackend extends MathBackendCPU {
  private readonly pool = new Map<number, Float32Array[]>();
  private readonly owned = new WeakSet<Float32Array>();
  private readonly exposed = new WeakSet<object>();
  private pooledBytes = 0;
  /**
   * The pool keeps what one training step frees, so the next step finds every buffer again (a 64-px
   * step of 32 images frees about 1 GB): an eighth of the machine's memory per thread, at most 4 GB.
   */
  static readonly MAX_POOLED_BYTES = Math.min(4 * 2 ** 30, Math.floor(os.totalmem() / 8));

  constructor() {
    super();
    // The cpu backend greets its first use in Node with advice to install tfjs-node; diffuse's own
    // backend message already says what runs and how to get the native binding.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  allocate(length: number): Float32Array {
    const buffer = this.pool.get(length)?.pop();
    if (buffer) {
      this.pooledBytes -= buffer.byteLength;
      return buffer;
    }
    const fresh = new Float32Array(length);
    this.owned.add(fresh);
    return fresh;
  }

  override readSync(dataId: object): tf.backend_util.BackendValues {
    const values = super.readSync(dataId);
    this.exposed.add(values as object);
    return values;
  }

  override async read(dataId: object): Promise<tf.backend_util.BackendValues> {
    const values = await super.read(dataId);
    this.exposed.add(values as object);
    return values;
  }

  override disposeData(dataId: object, force = false): boolean {
    const values = this.data.has(dataId) ? (this.data.get(dataId) as CpuData).values : undefined;
    const disposed = super.disposeData(dataId, force);
    if (disposed && values instanceof Float32Array && this.owned.has(values) && !this.exposed.has(values)) {
      if (this.pooledBytes + values.byteLength <= BlasBackend.MAX_POOLED_BYTES) {
        const list = this.pool.get(values.length) ?? [];
        list.push(values);
        this.pool.set(values.length, list);
        this.pooledBytes += values.byteLength;
      }
    }
    return disposed;
  }

  override dispose(): void {
    this.pool.clear();
    super.dispose();
  }
}

/** The Float32Array behind a tensor on a CPU-style backend. */
export function cpuValues(backend: MathBackendCPU, t: tf.TensorInfo): Float32Array {
  return (backend.data.get(t.dataId) as CpuData).values as Float32Array;
}
