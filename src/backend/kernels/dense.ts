/**
 * The `blas` backend's kernels over native/dense.c: matrix products (sgemm, or the 1x1 convolution
 * loops for skinny ones), the fused GELU + LayerNorm and its gradient, sums and simple broadcasts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon } from '../addon';
import { BlasBackend, cpuValues } from '../bufferPool';

/**
 * Products of many rows into few columns (the U-net's 1x1 convolutions, attention's projections): the
 * direct convolution loops as a 1x1 filter beat sgemm there, whose blocking wants more columns (bounds
 * measured on Zen 3). Transposed-a products (the weights' gradients) stay on sgemm, faster for them.
 */
function isSkinny(m: number, k: number, n: number): boolean {
  return m >= 256 && n % 16 === 0 && n <= 128 && k <= 128;
}

/**
 * BatchMatMul over sgemm, with tfjs's broadcasting of the leading (batch) dimensions; also
 * _FusedMatMul when its only extra is a bias added to every row, or an addend of the output's shape (a
 * residual: the native product adds it as it stores), with no activation.
 */
export function batchMatMulKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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
export function geluLayerNormKernel(native: NativeAddon): tf.KernelFunc {
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

export function geluLayerNormGradKernel(native: NativeAddon): tf.KernelFunc {
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
export function sumKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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
export function binaryKernel(native: NativeAddon, op: 0 | 1 | 2, fallback: tf.KernelFunc): tf.KernelFunc {
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
