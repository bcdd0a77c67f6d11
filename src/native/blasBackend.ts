/**
 * The `blas` backend: tfjs's own CPU backend with its matrix products (OpenBLAS sgemm), bias-gradient
 * sums and simple broadcasts replaced by the native addon's kernels, plus a fused GELU + LayerNorm.
 * All other kernels are the cpu backend's, registered again under this name, so the plain `cpu`
 * backend stays untouched as the reference the fast kernels are tested against.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { NativeAddon, loadNativeAddon } from './addon';
import { GELU_LAYER_NORM, GELU_LAYER_NORM_GRAD, registerGeluLayerNormGradient } from '../models/fusedOps';

export const BLAS_BACKEND = 'blas';

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
  static readonly MAX_POOLED_BYTES = 512 << 20;

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

/**
 * BatchMatMul over sgemm, with tfjs's broadcasting of the leading (batch) dimensions; also
 * _FusedMatMul when its only extra is a bias added to every row (no activation).
 */
function batchMatMulKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined> & { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB, activation } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean; activation?: string };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    if (preluActivationWeights || (activation !== undefined && activation !== 'linear')) return fallback(args);
    const backend = args.backend as BlasBackend;
    const ra = a.shape.length, rb = b.shape.length;
    const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
    const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    if (k !== kb) throw new Error(`matMul: inner dimensions ${k} and ${kb} differ`);
    if (bias && (bias.dtype !== 'float32' || tf.util.sizeFromShape(bias.shape) !== n || bias.shape.length > 1)) return fallback(args);
    const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
    const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
    const batches = batchShape.reduce((x, y) => x * y, 1);
    const sizeA = batchA.reduce((x, y) => x * y, 1), sizeB = batchB.reduce((x, y) => x * y, 1);
    if ((sizeA !== batches && sizeA !== 1) || (sizeB !== batches && sizeB !== 1)) return fallback(args); // partial broadcasting
    const av = cpuValues(backend, a), bv = cpuValues(backend, b);
    const biasValues = bias ? cpuValues(backend, bias) : undefined;
    const out = backend.allocate(batches * m * n);
    for (let i = 0; i < batches; i++) {
      const ai = sizeA === 1 ? 0 : i, bi = sizeB === 1 ? 0 : i;
      native.sgemm(transposeA, transposeB, m, n, k, av.subarray(ai * m * k, (ai + 1) * m * k), bv.subarray(bi * k * n, (bi + 1) * k * n), out.subarray(i * m * n, (i + 1) * m * n), biasValues);
    }
    return backend.makeTensorInfo([...batchShape, m, n], 'float32', out);
  };
}

/** LayerNorm(GELU(x)) as one native kernel; outputs y, and x̂ and 1/σ saved for the gradient. */
function geluLayerNormKernel(native: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
    const cpu = backend as BlasBackend;
    const cols = x.shape[x.shape.length - 1];
    const rows = tf.util.sizeFromShape(x.shape) / cols;
    const y = cpu.allocate(rows * cols), xhat = cpu.allocate(rows * cols), rstd = cpu.allocate(rows);
    native.geluLayerNorm(cpuValues(cpu, x), cpuValues(cpu, gamma), cpuValues(cpu, beta), rows, cols, y, xhat, rstd);
    return [cpu.makeTensorInfo(x.shape, 'float32', y), cpu.makeTensorInfo(x.shape, 'float32', xhat), cpu.makeTensorInfo([rows], 'float32', rstd)];
  };
}

function geluLayerNormGradKernel(native: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { dy, x, xhat, gamma, rstd } = inputs as Record<string, tf.TensorInfo>;
    const cpu = backend as BlasBackend;
    const cols = x.shape[x.shape.length - 1];
    const rows = tf.util.sizeFromShape(x.shape) / cols;
    const dx = cpu.allocate(rows * cols), dgamma = cpu.allocate(cols), dbeta = cpu.allocate(cols);
    native.geluLayerNormGrad(cpuValues(cpu, dy), cpuValues(cpu, x), cpuValues(cpu, xhat), cpuValues(cpu, gamma), cpuValues(cpu, rstd), rows, cols, dx, dgamma, dbeta);
    return [cpu.makeTensorInfo(x.shape, 'float32', dx), cpu.makeTensorInfo([cols], 'float32', dgamma), cpu.makeTensorInfo([cols], 'float32', dbeta)];
  };
}

/**
 * Sum over all axes but the last (the gradient of a bias added to every row) through native column
 * sums; other reductions go to the cpu kernel.
 */
function sumKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape);
    const rank = x.shape.length;
    const leading = axes.length === rank - 1 && [...axes].sort((p, q) => p - q).every((ax, i) => ax === i);
    if (x.dtype !== 'float32' || rank < 2 || !leading) return fallback(args);
    const cpu = args.backend as BlasBackend;
    const cols = x.shape[rank - 1];
    const out = cpu.allocate(cols);
    native.columnSums(cpuValues(cpu, x), tf.util.sizeFromShape(x.shape) / cols, cols, out);
    return cpu.makeTensorInfo(keepDims ? [...x.shape.slice(0, -1).map(() => 1), cols] : [cols], 'float32', out);
  };
}

/**
 * Add, Sub and Mul where one operand has the output's shape and the other the same shape, a single
 * value, or the output's trailing dimensions (a bias row); other broadcasts go to the cpu kernel.
 */
function binaryKernel(native: NativeAddon, op: 0 | 1 | 2, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    const outShape = tf.broadcast_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const full = (t: tf.TensorInfo) => t.shape.length === outShape.length && t.shape.every((d, i) => d === outShape[i]);
    const broadcastable = (t: tf.TensorInfo) => {
      const size = tf.util.sizeFromShape(t.shape);
      if (size === 1) return true;
      const trailing = t.shape.slice(t.shape.findIndex((d) => d !== 1)); // leading 1s broadcast too
      return trailing.length <= outShape.length && trailing.every((d, i) => d === outShape[outShape.length - trailing.length + i]);
    };
    const swap = !full(a);
    const [big, small] = swap ? [b, a] : [a, b];
    if (!full(big) || !broadcastable(small)) return fallback(args);
    const cpu = args.backend as BlasBackend;
    const out = cpu.allocate(tf.util.sizeFromShape(outShape));
    native.binary(op, cpuValues(cpu, big), cpuValues(cpu, small), out, swap);
    return cpu.makeTensorInfo(outShape, 'float32', out);
  };
}

/** The addon the backend was registered with (null before registration). */
let registered: NativeAddon | null = null;

/** Registers the `blas` backend once; false where the native addon is missing. */
export function registerBlasBackend(native: NativeAddon | null = loadNativeAddon()): boolean {
  if (registered) return true;
  if (!native) return false;
  tf.registerBackend(BLAS_BACKEND, () => new BlasBackend(), 0);
  const replacements: Record<string, (fallback: tf.KernelFunc) => tf.KernelFunc> = {
    [tf.BatchMatMul]: (f) => batchMatMulKernel(native, f),
    [tf._FusedMatMul]: (f) => batchMatMulKernel(native, f),
    [tf.Sum]: (f) => sumKernel(native, f),
    [tf.Add]: (f) => binaryKernel(native, 0, f),
    [tf.Sub]: (f) => binaryKernel(native, 1, f),
    [tf.Multiply]: (f) => binaryKernel(native, 2, f),
  };
  for (const config of tf.getKernelsForBackend('cpu')) {
    const replace = replacements[config.kernelName];
    tf.registerKernel({ ...config, backendName: BLAS_BACKEND, kernelFunc: replace ? replace(config.kernelFunc) : config.kernelFunc });
  }
  tf.registerKernel({ kernelName: GELU_LAYER_NORM, backendName: BLAS_BACKEND, kernelFunc: geluLayerNormKernel(native) });
  tf.registerKernel({ kernelName: GELU_LAYER_NORM_GRAD, backendName: BLAS_BACKEND, kernelFunc: geluLayerNormGradKernel(native) });
  registerGeluLayerNormGradient();
  registered = native;
  return true;
}

/** The registered addon and the backend's storage while `blas` is the active backend; else null. */
function activeBlas(): { native: NativeAddon; backend: BlasBackend } | null {
  return registered && tf.getBackend() === BLAS_BACKEND ? { native: registered, backend: tf.backend() as BlasBackend } : null;
}

/**
 * Adam's update as one native pass over each parameter, in place, where the active backend is `blas`;
 * false elsewhere (the caller then uses tfjs ops). In place is safe: a variable's storage is its own.
 */
export function nativeAdamUpdate(
  updates: { p: tf.Variable; g: tf.Tensor; m: tf.Variable; v: tf.Variable }[],
  config: { lr: number; beta1: number; beta2: number; epsilon: number },
  correction1: number,
  correction2: number,
): boolean {
  const active = activeBlas();
  if (!active) return false;
  const { native, backend } = active;
  for (const { p, g, m, v } of updates) {
    native.adam(cpuValues(backend, p), cpuValues(backend, g), cpuValues(backend, m), cpuValues(backend, v), config.lr, config.beta1, config.beta2, config.epsilon, correction1, correction2);
  }
  return true;
}

/**
 * A moving-average step (shadow ← d·shadow + (1 − d)·weights) as one native pass per parameter, in
 * place, where the active backend is `blas`; false elsewhere (the caller then uses tfjs ops).
 */
export function nativeAverageUpdate(pairs: { shadow: tf.Variable; p: tf.Variable }[], d: number): boolean {
  const active = activeBlas();
  if (!active || typeof active.native.lerp !== 'function') return false; // an addon built before lerp existed
  for (const { shadow, p } of pairs) active.native.lerp(cpuValues(active.backend, shadow), cpuValues(active.backend, p), d);
  return true;
}
