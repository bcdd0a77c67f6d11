/**
 * The `blas` backend's copies over native/copy.c: slices, splits, transposes and concatenations as runs
 * of contiguous values, and the 2x nearest-neighbour upsampling and its gradient.
 */
import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon } from '../addon';
import { BlasBackend, cpuValues } from '../bufferPool';

/**
 * For every index i of the `outer` shape (row-major), copies `run` contiguous values from
 * srcFirst + Σ i[a]·srcStrides[a] to outFirst + Σ i[a]·outStrides[a]: slices, concatenations and
 * transposes that keep the last axis. Native, because a JavaScript loop pays per run, and the U-net's
 * channel splits are many short runs.
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
 * unless the slice is one contiguous block).
 */
export function sliceKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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
export function splitKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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

/** Transposes that keep the last axis in place, as copies of whole last-axis runs; others go to the cpu kernel. */
export function transposeKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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
export function concatKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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
export function resizeNearestKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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
export function resizeNearestGradKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
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
