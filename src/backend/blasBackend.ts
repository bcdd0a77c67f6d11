/**
 * The `blas` backend: tfjs's own CPU backend with its matrix products (OpenBLAS sgemm), bias-gradient
 * sums and simple broadcasts replaced by the native addon's kernels, plus a fused GELU + LayerNorm.
 * All other kernels are the cpu backend's, registered again under this name, so the plain `cpu`
 * backend stays untouched as the reference the fast kernels are tested against.
 */
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { NativeAddon, loadNativeAddon } from './addon';
import { installInPlaceUpdates } from '../tensors';
import {
  ATTENTION,
  ATTENTION_GRAD,
  GELU_LAYER_NORM,
  GELU_LAYER_NORM_GRAD,
  GROUP_NORM,
  GROUP_NORM_GRAD,
  SCALED_SOFTMAX,
  SCALED_SOFTMAX_GRAD,
  SILU,
  SILU_GRAD,
  registerFusedGradients,
} from '../ops/fusedOps';

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
  /**
   * The pool keeps what one training step frees, so the next step finds every buffer again: a 64-px
   * step of 32 images frees ~1 GB (with a 512 MB cap it allocated 500 MB afresh every step, 33% slower).
   * An eighth of the machine's memory per thread (3 GB of 24 here), at most 4 GB.
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

/**
 * Products of many rows into few columns (the U-net's 1x1 convolutions, attention's projections: 2k-131k
 * rows, 16-128 columns, 16-128 inner): the direct convolution loops as a 1x1 filter reach 82-93 GFLOP/s
 * on a Zen 3 core there, sgemm 37-78 (its blocking wants more columns). Its transposed-a products (the
 * weights' gradients) stay on sgemm, which is faster for them.
 */
function isSkinny(m: number, k: number, n: number): boolean {
  return m >= 256 && n % 16 === 0 && n <= 128 && k <= 128;
}

/**
 * BatchMatMul over sgemm, with tfjs's broadcasting of the leading (batch) dimensions; also
 * _FusedMatMul when its only extra is a bias added to every row, or an addend of the output's shape (a
 * residual: the native product adds it as it stores), with no activation.
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
    const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
    const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
    const batches = batchShape.reduce((x, y) => x * y, 1);
    // (tfjs's op hands the kernel a and b as rank 3, the bias as it came: [m, n] for [1, m, n])
    const biasRow = bias && bias.shape.length <= 1 && tf.util.sizeFromShape(bias.shape) === n;
    const biasFull = bias && tf.util.sizeFromShape(bias.shape) === batches * m * n && tf.util.arraysEqual(bias.shape.slice(-2), [m, n]);
    if (bias && (bias.dtype !== 'float32' || !(biasRow || biasFull))) return fallback(args);
    const sizeA = batchA.reduce((x, y) => x * y, 1), sizeB = batchB.reduce((x, y) => x * y, 1);
    if ((sizeA !== batches && sizeA !== 1) || (sizeB !== batches && sizeB !== 1)) return fallback(args); // partial broadcasting
    const av = cpuValues(backend, a), bv = cpuValues(backend, b);
    const biasValues = bias ? cpuValues(backend, bias) : undefined;
    const out = backend.allocate(batches * m * n);
    if (batches === 1 && !transposeA && isSkinny(m, k, n) && !(transposeB && biasValues)) {
      // a·b is a 1x1 convolution of m pixels from k to n channels; a·bᵀ that convolution's input gradient
      const geometry = transposeB ? [1, 1, m, n, 1, m, k] : [1, 1, m, k, 1, m, n];
      native.conv(transposeB ? 1 : 0, Int32Array.from([...geometry, 1, 1, 1, 1, 0, 0, 1, 1]), av, bv, out, ...(biasValues ? [biasValues] : []));
    } else if (batches > 0 && m > 0 && n > 0) native.sgemm(transposeA, transposeB, m, n, k, av, bv, out, biasValues ?? null, batches, sizeA === 1 ? 0 : m * k, sizeB === 1 ? 0 : k * n);
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
    const sorted = [...axes].sort((p, q) => p - q);
    const leading = axes.length === rank - 1 && sorted.every((ax, i) => ax === i);
    const contiguous = sorted.length > 0 && sorted.every((ax, i) => ax === sorted[0] + i);
    if (x.dtype !== 'float32' || rank < 2) return fallback(args);
    const cpu = args.backend as BlasBackend;
    if (!leading && contiguous) {
      // x as [outer, middle, inner], summed over the middle: a per-image channel sum, or a row sum.
      const size = (from: number, to: number) => x.shape.slice(from, to).reduce((p, q) => p * q, 1);
      const outer = size(0, sorted[0]), middle = size(sorted[0], sorted[sorted.length - 1] + 1), inner = size(sorted[sorted.length - 1] + 1, rank);
      const src = cpuValues(cpu, x);
      const out = cpu.allocate(outer * inner); // middleSums writes every value
      native.middleSums(src, outer, middle, inner, out);
      const shape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
      return cpu.makeTensorInfo(shape, 'float32', out);
    }
    if (!leading) return fallback(args);
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
    if (!full(big)) return fallback(args);
    const cpu = args.backend as BlasBackend;
    if (!broadcastable(small)) {
      const blocks = middleBroadcast(small.shape, outShape);
      if (!blocks) return fallback(args);
      const out = cpu.allocate(tf.util.sizeFromShape(outShape));
      native.binary(op, cpuValues(cpu, big), cpuValues(cpu, small), out, swap, blocks.outer);
      return cpu.makeTensorInfo(outShape, 'float32', out);
    }
    const out = cpu.allocate(tf.util.sizeFromShape(outShape));
    native.binary(op, cpuValues(cpu, big), cpuValues(cpu, small), out, swap);
    return cpu.makeTensorInfo(outShape, 'float32', out);
  };
}

/**
 * tfjs's computeConv2DInfo, kept by its arguments: ~15 µs of JavaScript a call, twice for a fused
 * convolution, and a model runs the same few shapes at every step.
 */
const convInfos = new Map<string, tf.backend_util.Conv2DInfo>();
function conv2DInfo(inShape: [number, number, number, number], filterShape: [number, number, number, number], attrs: ConvAttrs): tf.backend_util.Conv2DInfo {
  const key = JSON.stringify([inShape, filterShape, attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode ?? null]);
  let info = convInfos.get(key);
  if (!info) {
    info = tf.backend_util.computeConv2DInfo(inShape, filterShape, attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
    if (convInfos.size >= 1024) convInfos.clear();
    convInfos.set(key, info);
  }
  return info;
}

/** The geometry the native conv takes, from tfjs's own computation of it. */
function convGeometry(info: tf.backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left,
    info.dilationHeight, info.dilationWidth,
  ]);
}

interface ConvAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape?: number[];
  filterShape?: number[];
}

/**
 * Conv2D and its two gradients (which wasm lacks and the cpu backend runs as plain loops) in the addon:
 * direct loops for stride 1, else im2col + sgemm; NCHW goes to the cpu kernels.
 */
function convKernel(native: NativeAddon, mode: 0 | 1 | 2, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const attrs = args.attrs as unknown as ConvAttrs;
    const inputs = args.inputs as Record<string, tf.TensorInfo>;
    if (attrs.dataFormat === 'NCHW' || Object.values(inputs).some((t) => t.dtype !== 'float32')) return fallback(args);
    const cpu = args.backend as BlasBackend;
    const [first, second] = mode === 0 ? [inputs.x, inputs.filter] : mode === 1 ? [inputs.dy, inputs.filter] : [inputs.x, inputs.dy];
    const inShape = (mode === 1 ? attrs.inputShape! : inputs.x.shape) as [number, number, number, number];
    const filterShape = (mode === 2 ? attrs.filterShape! : inputs.filter.shape) as [number, number, number, number];
    const info = conv2DInfo(inShape, filterShape, attrs);
    const outShape = mode === 0 ? info.outShape : mode === 1 ? inShape : filterShape;
    const out = cpu.allocate(tf.util.sizeFromShape(outShape));
    const bias = mode === 0 && inputs.bias ? [cpuValues(cpu, inputs.bias)] : []; // FusedConv2D's (below)
    native.conv(mode, convGeometry(info), cpuValues(cpu, first), cpuValues(cpu, second), out, ...bias);
    return cpu.makeTensorInfo(outShape, 'float32', out);
  };
}

/**
 * A convolution with its bias (tfjs's FusedConv2D without an activation): the native convolution adds
 * the bias as the Winograd tiles store their outputs (other paths: one pass after), instead of a second
 * kernel with an output of its own. The bias may be one per channel [c], per image and channel
 * [b, 1, 1, c] (the U-net's time embedding), or of the output's shape (a residual); tfjs's gradient of a
 * fused bias sums over its broadcast axes, so all three differentiate. Else the cpu kernel.
 */
function fusedConvKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  const conv = convKernel(native, 0, fallback);
  return (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { activation, dataFormat } = args.attrs as unknown as { activation?: string; dataFormat?: string };
    const plain = !preluActivationWeights && (activation === undefined || activation === 'linear') && dataFormat !== 'NCHW';
    if (!plain || !x || !filter || !bias || bias.dtype !== 'float32' || x.dtype !== 'float32' || filter.dtype !== 'float32') return fallback(args);
    const attrs = args.attrs as unknown as ConvAttrs;
    const { outShape } = conv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number], attrs);
    const [batch, , , channels] = outShape;
    const perChannel = bias.shape.length === 1 && bias.shape[0] === channels;
    const perImage = tf.util.arraysEqual(bias.shape, [batch, 1, 1, channels]);
    if (!perChannel && !perImage && !tf.util.arraysEqual(bias.shape, outShape)) return fallback(args);
    return conv({ ...args, inputs: { x, filter, bias } }) as tf.TensorInfo;
  };
}

/**
 * For every index i of the `outer` shape (row-major), copies `run` contiguous values from
 * srcFirst + Σ i[a]·srcStrides[a] to outFirst + Σ i[a]·outStrides[a]: slices, concatenations and
 * transposes that keep the last axis. Native, because a JS loop of typed-array views costs ~100 ns a run
 * (tens of milliseconds for the U-net's channel splits).
 */
function copyRuns(native: NativeAddon, src: Float32Array, srcFirst: number, srcStrides: number[], out: Float32Array, outFirst: number, outStrides: number[], outer: number[], run: number): void {
  native.copyRuns(src, srcFirst, Int32Array.from(srcStrides), out, outFirst, Int32Array.from(outStrides), Int32Array.from(outer), run);
}

/** Row-major strides of `shape` without the last axis (whose stride is 1). */
function outerStrides(shape: number[]): number[] {
  return tf.util.computeStrides(shape).slice(0, shape.length - 1);
}

/**
 * Slice as copies of contiguous runs along the last axis (the cpu kernel indexes element by element
 * unless the slice is one contiguous block: seconds for the U-net's channel splits).
 */
function sliceKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32' || x.shape.length === 0) return fallback(args);
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
    const [starts, sizes] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
    const rank = x.shape.length;
    const cpu = args.backend as BlasBackend;
    const src = cpuValues(cpu, x);
    const out = cpu.allocate(tf.util.sizeFromShape(sizes));
    const strides = tf.util.computeStrides(x.shape); // rank − 1 strides, the last axis has stride 1
    const first = starts.reduce((sum, start, a) => sum + start * (a < rank - 1 ? strides[a] : 1), 0);
    copyRuns(native, src, first, strides, out, 0, outerStrides(sizes), sizes.slice(0, -1), sizes[rank - 1]);
    return cpu.makeTensorInfo(sizes, 'float32', out);
  };
}

/** SplitV as slices of the kernel above (the cpu SplitV calls its own slice directly). */
function splitKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  const slice = sliceKernel(native, fallback);
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32') return fallback(args);
    const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
    const begin = new Array(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[ax] = s;
      const out = slice({ ...args, attrs: { begin: [...begin], size } }) as tf.TensorInfo;
      begin[ax] += s;
      return out;
    });
  };
}

/** A kernel whose one output has the shape of its first input. */
function elementwiseKernel(run: (cpu: BlasBackend, inputs: tf.TensorInfo[], out: Float32Array) => void, ...names: string[]): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const cpu = backend as BlasBackend;
    const ins = names.map((n) => (inputs as Record<string, tf.TensorInfo>)[n]);
    const out = cpu.allocate(tf.util.sizeFromShape(ins[0].shape));
    run(cpu, ins, out);
    return cpu.makeTensorInfo(ins[0].shape, 'float32', out);
  };
}

/** GroupNorm on NHWC as one native kernel; outputs y, and x̂ and 1/σ per (image, group) for the gradient. */
function groupNormKernel(native: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo>;
    const { groups, silu, keep } = attrs as unknown as { groups: number; silu?: boolean; keep?: boolean };
    const cpu = backend as BlasBackend;
    const [b, h, w, c] = x.shape;
    // x̂ only where a gradient will need it (keep: false when no gradient is being recorded)
    const y = cpu.allocate(b * h * w * c), xhat = cpu.allocate(keep === false ? 0 : b * h * w * c), rstd = cpu.allocate(b * groups);
    native.groupNorm(cpuValues(cpu, x), cpuValues(cpu, gamma), cpuValues(cpu, beta), b, h * w, c, groups, y, xhat, rstd, silu === true);
    return [cpu.makeTensorInfo(x.shape, 'float32', y), cpu.makeTensorInfo(keep === false ? [0] : x.shape, 'float32', xhat), cpu.makeTensorInfo([b * groups], 'float32', rstd)];
  };
}

function groupNormGradKernel(native: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { dy, xhat, gamma, beta, rstd } = inputs as Record<string, tf.TensorInfo>;
    const { groups, silu } = attrs as unknown as { groups: number; silu?: boolean };
    const cpu = backend as BlasBackend;
    const [b, h, w, c] = xhat.shape;
    const dx = cpu.allocate(b * h * w * c), dgamma = cpu.allocate(c), dbeta = cpu.allocate(c);
    native.groupNormGrad(cpuValues(cpu, dy), cpuValues(cpu, xhat), cpuValues(cpu, gamma), cpuValues(cpu, rstd), b, h * w, c, groups, dx, dgamma, dbeta, silu ? cpuValues(cpu, beta) : null, silu === true);
    return [cpu.makeTensorInfo(xhat.shape, 'float32', dx), cpu.makeTensorInfo([c], 'float32', dgamma), cpu.makeTensorInfo([c], 'float32', dbeta)];
  };
}

/**
 * Where `small` is `out` with a run of middle axes set to 1 (a per-image channel shift [b, 1, 1, c] on
 * [b, h, w, c], or a row statistic [r, 1] on [r, n]): out as [outer, middle, inner], small as [outer, inner].
 */
function middleBroadcast(small: number[], out: number[]): { outer: number; middle: number; inner: number } | null {
  const padded = [...new Array(out.length - small.length).fill(1), ...small];
  let first = padded.findIndex((d, i) => d !== out[i]);
  if (first < 0) return null;
  let last = first;
  while (last + 1 < out.length && padded[last + 1] !== out[last + 1]) last++;
  for (let i = first; i <= last; i++) if (padded[i] !== 1) return null;
  for (let i = last + 1; i < out.length; i++) if (padded[i] !== out[i]) return null;
  const product = (xs: number[]) => xs.reduce((p, q) => p * q, 1);
  return { outer: product(out.slice(0, first)), middle: product(out.slice(first, last + 1)), inner: product(out.slice(last + 1)) };
}

/** Transposes that keep the last axis in place, as copies of whole last-axis runs; others go to the cpu kernel. */
function transposeKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { perm } = args.attrs as unknown as { perm: number[] };
    const rank = x.shape.length;
    if (x.dtype !== 'float32' || rank < 2 || perm[rank - 1] !== rank - 1) return fallback(args);
    const cpu = args.backend as BlasBackend;
    const src = cpuValues(cpu, x);
    const outShape = perm.map((p) => x.shape[p]);
    const out = cpu.allocate(src.length);
    const strides = tf.util.computeStrides(x.shape);
    copyRuns(native, src, 0, perm.slice(0, -1).map((p) => strides[p]), out, 0, outerStrides(outShape), outShape.slice(0, -1), x.shape[rank - 1]);
    return cpu.makeTensorInfo(outShape, 'float32', out);
  };
}

/** Concat as one run copy per input (the cpu kernel goes through 2-D reshapes and slices). */
function concatKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const xs = args.inputs as unknown as tf.TensorInfo[];
    if (xs.length < 2 || xs.some((x) => x.dtype !== 'float32')) return fallback(args);
    const { axis } = args.attrs as unknown as { axis: number };
    const ax = tf.util.parseAxisParam(axis, xs[0].shape)[0];
    const outShape = tf.backend_util.computeOutShape(xs.map((x) => x.shape), ax);
    const outer = tf.util.sizeFromShape(outShape.slice(0, ax));
    const width = tf.util.sizeFromShape(outShape.slice(ax)); // values per outer index in the output
    const cpu = args.backend as BlasBackend;
    const out = cpu.allocate(tf.util.sizeFromShape(outShape));
    let offset = 0;
    for (const x of xs) {
      const run = tf.util.sizeFromShape(x.shape.slice(ax));
      if (run > 0) copyRuns(native, cpuValues(cpu, x), 0, [run], out, offset, [width], [outer], run);
      offset += run;
    }
    return cpu.makeTensorInfo(outShape, 'float32', out);
  };
}

/** Where a nearest-neighbour resize is an exact doubling (tfjs's source pixel ⌊out/2⌋): the U-net's upsampling. */
function isDoubling(inShape: number[], outH: number, outW: number, alignCorners: boolean): boolean {
  return !alignCorners && outH === 2 * inShape[1] && outW === 2 * inShape[2];
}

/** Nearest-neighbour resizing, natively where it doubles the size (the cpu kernel computes each source pixel in JavaScript). */
function resizeNearestKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { images } = args.inputs as { images: tf.TensorInfo };
    const { alignCorners, size } = args.attrs as unknown as { alignCorners: boolean; size: [number, number] };
    if (images.dtype !== 'float32' || !isDoubling(images.shape, size[0], size[1], alignCorners)) return fallback(args);
    const [batch, h, w, channels] = images.shape;
    const cpu = args.backend as BlasBackend;
    const out = cpu.allocate(4 * tf.util.sizeFromShape(images.shape));
    native.upsample2x(cpuValues(cpu, images), Int32Array.from(images.shape), out);
    return cpu.makeTensorInfo([batch, 2 * h, 2 * w, channels], 'float32', out);
  };
}

/**
 * The gradient of nearest-neighbour resizing: each dy pixel added to the input pixel the forward pass
 * read (tfjs's own source-pixel rule); natively for a doubling. Replaces the cpu kernel, which
 * misplaces every image after the first.
 */
function resizeNearestGradKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { images, dy } = args.inputs as { images: tf.TensorInfo; dy: tf.TensorInfo };
    const { alignCorners, halfPixelCenters } = args.attrs as unknown as { alignCorners: boolean; halfPixelCenters: boolean };
    if (dy.dtype !== 'float32') return fallback(args);
    const [batch, inH, inW, channels] = images.shape;
    const [, outH, outW] = dy.shape;
    const cpu = args.backend as BlasBackend;
    const g = cpuValues(cpu, dy);
    if (isDoubling(images.shape, outH, outW, alignCorners)) {
      const out = cpu.allocate(tf.util.sizeFromShape(images.shape));
      native.upsample2xGrad(g, Int32Array.from(images.shape), out);
      return cpu.makeTensorInfo(images.shape, 'float32', out);
    }
    const source = (out: number, inSize: number, outSize: number) => {
      const ratio = (alignCorners && outSize > 1 ? inSize - 1 : inSize) / (alignCorners && outSize > 1 ? outSize - 1 : outSize);
      const frac = halfPixelCenters ? ratio * (out + 0.5) : ratio * out;
      const nearest = Math.min(inSize - 1, alignCorners ? Math.round(frac) : Math.floor(frac));
      return halfPixelCenters ? Math.max(0, nearest) : nearest;
    };
    const rows = Array.from({ length: outH }, (_, y) => source(y, inH, outH));
    const cols = Array.from({ length: outW }, (_, x) => source(x, inW, outW));
    const out = cpu.allocate(batch * inH * inW * channels).fill(0);
    for (let b = 0; b < batch; b++) {
      for (let y = 0; y < outH; y++) {
        for (let x = 0; x < outW; x++) {
          const from = ((b * outH + y) * outW + x) * channels;
          const to = ((b * inH + rows[y]) * inW + cols[x]) * channels;
          for (let c = 0; c < channels; c++) out[to + c] += g[from + c];
        }
      }
    }
    return cpu.makeTensorInfo(images.shape, 'float32', out);
  };
}

/** Softmax over the last axis, one row at a time (the cpu kernel runs five broadcasting ops). */
function softmaxKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { logits } = args.inputs as { logits: tf.TensorInfo };
    const { dim } = args.attrs as unknown as { dim: number };
    const rank = logits.shape.length;
    if (logits.dtype !== 'float32' || (dim !== -1 && dim !== rank - 1)) return fallback(args);
    const cpu = args.backend as BlasBackend;
    const x = cpuValues(cpu, logits);
    const out = cpu.allocate(x.length);
    const n = logits.shape[rank - 1];
    native.softmaxRows(x, n, out);
    return cpu.makeTensorInfo(logits.shape, 'float32', out);
  };
}

/** softmax(scale·x) over the last axis (inputs x), or its gradient (inputs dy and the saved y). */
function scaledSoftmaxKernel(native: NativeAddon, gradient: boolean): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { scale } = attrs as unknown as { scale: number };
    const cpu = backend as BlasBackend;
    const ins = inputs as Record<string, tf.TensorInfo>;
    const shape = (gradient ? ins.y : ins.x).shape;
    const cols = shape[shape.length - 1];
    const out = cpu.allocate(tf.util.sizeFromShape(shape));
    if (gradient) native.softmaxRowsGrad(cpuValues(cpu, ins.dy), cpuValues(cpu, ins.y), cols, scale, out);
    else native.softmaxRows(cpuValues(cpu, ins.x), cols, out, scale);
    return cpu.makeTensorInfo(shape, 'float32', out);
  };
}

/** Multi-head attention (inputs q, k, v [batch, tokens, channels]; outputs o and the rows' log-sum-exp), or its gradient. */
function attentionKernel(native: NativeAddon, gradient: boolean): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { heads, scale } = attrs as unknown as { heads: number; scale: number };
    const cpu = backend as BlasBackend;
    const ins = inputs as Record<string, tf.TensorInfo>;
    const [b, n, c] = ins.q.shape;
    const geometry = Int32Array.from([b, n, c, heads]);
    const [q, k, v] = [ins.q, ins.k, ins.v].map((t) => cpuValues(cpu, t));
    const empty = b * n === 0; // a thread's share of a batch can be empty
    if (!gradient) {
      const o = cpu.allocate(b * n * c), lse = cpu.allocate(b * heads * n);
      if (!empty) native.attention(q, k, v, geometry, scale, o, lse);
      return [cpu.makeTensorInfo([b, n, c], 'float32', o), cpu.makeTensorInfo([b, heads, n], 'float32', lse)];
    }
    const [dq, dk, dv] = [0, 1, 2].map(() => cpu.allocate(b * n * c));
    if (!empty) native.attentionGrad(cpuValues(cpu, ins.dy), q, k, v, cpuValues(cpu, ins.o), cpuValues(cpu, ins.lse), geometry, scale, dq, dk, dv);
    return [dq, dk, dv].map((values) => cpu.makeTensorInfo([b, n, c], 'float32', values));
  };
}

/** The addon the backend was registered with (null before registration). */
let registered: NativeAddon | null = null;

/** Registers the `blas` backend once; false where the native addon is missing. */
export function registerBlasBackend(native: NativeAddon | null = loadNativeAddon()): boolean {
  if (registered) return true;
  if (!native) return false;
  tf.registerBackend(BLAS_BACKEND, () => new BlasBackend(), 0);
  installInPlaceUpdates({ adam: nativeAdamUpdate, average: nativeAverageUpdate, copy: nativeCopy });
  const replacements: Record<string, (fallback: tf.KernelFunc) => tf.KernelFunc> = {
    [tf.BatchMatMul]: (f) => batchMatMulKernel(native, f),
    [tf._FusedMatMul]: (f) => batchMatMulKernel(native, f),
    [tf.Sum]: (f) => sumKernel(native, f),
    [tf.Add]: (f) => binaryKernel(native, 0, f),
    [tf.Sub]: (f) => binaryKernel(native, 1, f),
    [tf.Multiply]: (f) => binaryKernel(native, 2, f),
    [tf.Slice]: (f) => sliceKernel(native, f),
    [tf.SplitV]: (f) => splitKernel(native, f),
    [tf.Transpose]: (f) => transposeKernel(native, f),
    [tf.Concat]: (f) => concatKernel(native, f),
    [tf.Softmax]: (f) => softmaxKernel(native, f),
    [tf.ResizeNearestNeighbor]: (f) => resizeNearestKernel(native, f),
    [tf.ResizeNearestNeighborGrad]: (f) => resizeNearestGradKernel(native, f),
    [tf.Conv2D]: (f) => convKernel(native, 0, f),
    [tf.FusedConv2D]: (f) => fusedConvKernel(native, f),
    [tf.Conv2DBackpropInput]: (f) => convKernel(native, 1, f),
    [tf.Conv2DBackpropFilter]: (f) => convKernel(native, 2, f),
  };
  for (const config of tf.getKernelsForBackend('cpu')) {
    const replace = replacements[config.kernelName];
    tf.registerKernel({ ...config, backendName: BLAS_BACKEND, kernelFunc: replace ? replace(config.kernelFunc) : config.kernelFunc });
  }
  tf.registerKernel({ kernelName: GELU_LAYER_NORM, backendName: BLAS_BACKEND, kernelFunc: geluLayerNormKernel(native) });
  tf.registerKernel({ kernelName: GELU_LAYER_NORM_GRAD, backendName: BLAS_BACKEND, kernelFunc: geluLayerNormGradKernel(native) });
  registerFusedGradients();
  tf.registerKernel({ kernelName: SILU, backendName: BLAS_BACKEND, kernelFunc: elementwiseKernel((cpu, [x], out) => native.silu(cpuValues(cpu, x), out), 'x') });
  tf.registerKernel({ kernelName: SILU_GRAD, backendName: BLAS_BACKEND, kernelFunc: elementwiseKernel((cpu, [dy, x], out) => native.siluGrad(cpuValues(cpu, dy), cpuValues(cpu, x), out), 'dy', 'x') });
  tf.registerKernel({ kernelName: GROUP_NORM, backendName: BLAS_BACKEND, kernelFunc: groupNormKernel(native) });
  tf.registerKernel({ kernelName: SCALED_SOFTMAX, backendName: BLAS_BACKEND, kernelFunc: scaledSoftmaxKernel(native, false) });
  tf.registerKernel({ kernelName: SCALED_SOFTMAX_GRAD, backendName: BLAS_BACKEND, kernelFunc: scaledSoftmaxKernel(native, true) });
  tf.registerKernel({ kernelName: GROUP_NORM_GRAD, backendName: BLAS_BACKEND, kernelFunc: groupNormGradKernel(native) });
  tf.registerKernel({ kernelName: ATTENTION, backendName: BLAS_BACKEND, kernelFunc: attentionKernel(native, false) });
  tf.registerKernel({ kernelName: ATTENTION_GRAD, backendName: BLAS_BACKEND, kernelFunc: attentionKernel(native, true) });
  registered = native;
  return true;
}

/** The registered addon and the backend's storage while `blas` is the active backend; else null. */
function activeBlas(): { native: NativeAddon; backend: BlasBackend } | null {
  return registered && tf.getBackend() === BLAS_BACKEND ? { native: registered, backend: tf.backend() as BlasBackend } : null;
}

/**
 * A tensor's values for reading at once, where the active backend is `blas`: its own array, which
 * stays the backend's (dataSync() hands the array out, so it never returns to the buffer pool: the
 * data-parallel workers' gradients, 2.1 MB a step for the 32-px U-net, were allocated afresh every
 * step and their garbage collected). Elsewhere dataSync()'s.
 */
export function peekValues(t: tf.Tensor): Float32Array {
  const active = activeBlas();
  return active && t.dtype === 'float32' ? cpuValues(active.backend, t) : (t.dataSync() as Float32Array);
}

/**
 * Adam's update as one native call over all parameters (the cores share it), in place, where the active backend is `blas`;
 * false elsewhere (the caller then uses tfjs ops). In place is safe: a variable's storage is its own.
 */
export function nativeAdamUpdate(
  updates: { p: tf.Variable; g: tf.Tensor | Float32Array; m: tf.Variable; v: tf.Variable }[],
  config: { lr: number; beta1: number; beta2: number; epsilon: number },
  correction1: number,
  correction2: number,
): boolean {
  const active = activeBlas();
  if (!active) return false;
  const { native, backend } = active;
  const values = (t: tf.Tensor | Float32Array) => (t instanceof Float32Array ? t : cpuValues(backend, t));
  native.adam(updates.map((u) => values(u.p)), updates.map((u) => values(u.g)), updates.map((u) => values(u.m)), updates.map((u) => values(u.v)), config.lr, config.beta1, config.beta2, config.epsilon, correction1, correction2);
  return true;
}

/**
 * A moving-average step (shadow ← d·shadow + (1 − d)·weights) as one native pass per parameter, in
 * place, where the active backend is `blas`; false elsewhere (the caller then uses tfjs ops).
 */
export function nativeAverageUpdate(pairs: { shadow: tf.Variable; p: tf.Variable }[], d: number): boolean {
  const active = activeBlas();
  if (!active) return false;
  for (const { shadow, p } of pairs) active.native.lerp(cpuValues(active.backend, shadow), cpuValues(active.backend, p), d);
  return true;
}

/** A variable's values overwritten in place where the active backend is `blas` (one copy; assign() made a tensor, then swapped storage: 1.9 ms for the U-net's 139 variables, 0.2 in place). */
export function nativeCopy(variable: tf.Variable, values: Float32Array): boolean {
  const active = activeBlas();
  if (!active) return false;
  cpuValues(active.backend, variable).set(values);
  return true;
}
