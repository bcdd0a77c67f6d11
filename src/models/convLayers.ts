/**
 * Layers of the convolutional U-net on NHWC tensors. Convolutions use the backend's Conv2D kernels
 * where it has their gradients too (cpu, blas, tensorflow); elsewhere (wasm lacks Conv2DBackpropFilter)
 * they are written as im2col — shifted copies side by side — and one matrix product, which every
 * backend can differentiate.
 */
import * as tf from '@tensorflow/tfjs-core';
import { GROUP_NORM, SCALED_SOFTMAX, SILU, backendHasKernel, fusedGroupNorm } from '../ops/fusedOps';

/**
 * Whether the backend's fused convolution adds a bias of [b, 1, 1, out] (one per image) or of the
 * output's shape as it stores its outputs, and its 1x1 product one of the output's shape: blas does.
 * (Others would run such a bias as a second pass anyway, or reject it: wasm's fused product.)
 */
export function fusesAddends(): boolean {
  return tf.getBackend() === 'blas';
}

/**
 * A stride-1 'same' convolution with a k×k filter [k, k, in, out] and a bias [out]; where fusesAddends(),
 * the bias may also be [b, 1, 1, out] (3x3 filters) or of the output's shape.
 */
export function conv2d(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const [k, , cin, cout] = filter.shape;
    // The bias goes in with the product (tfjs's fused ops; one native kernel each on blas).
    if (k === 1) {
      const [b, h, w] = x.shape;
      const rows = bias.rank === 4 ? tf.reshape(bias, [b * h * w, cout]) : bias; // of the output's shape: one per row
      return tf.reshape(pointwise(tf.reshape(x, [b * h * w, cin]), tf.reshape(filter, [cin, cout]), rows), [b, h, w, cout]);
    }
    if (backendHasKernel('Conv2DBackpropFilter')) return tf.fused.conv2d({ x, filter, strides: 1, pad: 'same', bias });
    return tf.add(conv2dByIm2col(x, filter), bias);
  });
}

/**
 * rows·W + b for a 1×1 convolution on pixels as rows [pixels, in] (W is [in, out]), the bias added in the
 * product's kernel. (Unlike layers.ts's dense(), whose first-layer input needs no gradient, these
 * inputs always need theirs, which the fused product's gradient computes anyway.)
 */
export function pointwise(rows: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor): tf.Tensor2D {
  return tf.fused.matMul({ a: rows, b: w, bias }) as tf.Tensor2D;
}

/** The same convolution as patches × filter: the copies of x shifted by each filter offset, concatenated on channels. */
export function conv2dByIm2col(x: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, cin] = x.shape;
    const [k, , , cout] = filter.shape;
    const before = Math.floor((k - 1) / 2); // TensorFlow's 'same' padding for stride 1
    const padded = tf.pad(x, [[0, 0], [before, k - 1 - before], [before, k - 1 - before], [0, 0]]);
    const shifted: tf.Tensor4D[] = [];
    for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) shifted.push(tf.slice(padded, [0, dy, dx, 0], [b, h, w, cin]));
    const patches = tf.reshape(tf.concat(shifted, 3), [b * h * w, k * k * cin]);
    return tf.reshape(tf.matMul(patches, tf.reshape(filter, [k * k * cin, cout])), [b, h, w, cout]);
  });
}

export const GROUP_NORM_EPSILON = 1e-5;

/**
 * GroupNorm: each image's channels in `groups` groups, each normalized over its pixels and channels;
 * then SiLU where `thenSilu` (one kernel for both on blas).
 */
export function groupNorm(x: tf.Tensor4D, groups: number, gamma: tf.Tensor1D, beta: tf.Tensor1D, thenSilu = false): tf.Tensor4D {
  if (backendHasKernel(GROUP_NORM)) {
    return fusedGroupNorm(x, gamma, beta, groups, thenSilu) as tf.Tensor4D; // one native kernel (blas)
  }
  if (thenSilu) return tf.tidy(() => silu(groupNorm(x, groups, gamma, beta)));
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const grouped = tf.reshape(x, [b, h * w, groups, c / groups]);
    const { mean, variance } = tf.moments(grouped, [1, 3], true);
    const normalized = tf.reshape(tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, GROUP_NORM_EPSILON))), [b, h, w, c]);
    return tf.add(tf.mul(normalized, gamma), beta);
  });
}

/** softmax(scale · x) over the last axis; one native kernel (and one for its gradient) where the backend has it. */
export function scaledSoftmax<T extends tf.Tensor>(x: T, scale: number): T {
  if (backendHasKernel(SCALED_SOFTMAX)) return tf.engine().runKernel(SCALED_SOFTMAX, { x }, { scale }) as T;
  return tf.tidy(() => tf.softmax(tf.mul(x, scale)) as T);
}

/** SiLU (swish): x · σ(x); one native kernel where the backend has it. */
export function silu<T extends tf.Tensor>(x: T): T {
  if (backendHasKernel(SILU)) return tf.engine().runKernel(SILU, { x }) as T;
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/** Ho et al.'s sinusoidal embedding of timesteps t (not t/T) in `dim` numbers: sines, then cosines. */
export function timestepEmbedding(t: tf.Tensor1D, dim: number): tf.Tensor2D {
  return tf.tidy((): tf.Tensor2D => {
    const half = dim / 2;
    const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / Math.max(1, half - 1)));
    const angles = tf.matMul(tf.reshape(t, [-1, 1]), tf.tensor2d(freqs, [1, half]));
    return tf.concat([tf.sin(angles), tf.cos(angles)], 1) as tf.Tensor2D;
  });
}

/**
 * Backends whose ResizeNearestNeighborGrad is right. tfjs-backend-cpu 4.22's sends the gradient of
 * every image after the first to the wrong place; blas has its own (tested in test/unet.test.ts).
 */
const RESIZE_GRAD_BACKENDS = new Set(['wasm', 'tensorflow', 'blas']);

/**
 * Nearest-neighbour 2× upsampling: tfjs's resize where its gradient is right, else by tiling columns
 * then rows (tfjs differentiates tile up to rank 4).
 */
export function upsampleNearest(x: tf.Tensor4D): tf.Tensor4D {
  if (RESIZE_GRAD_BACKENDS.has(tf.getBackend())) return tf.image.resizeNearestNeighbor(x, [2 * x.shape[1], 2 * x.shape[2]]);
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const columns = tf.tile(tf.reshape(x, [b * h, w, 1, c]), [1, 1, 2, 1]); // each pixel twice along the row
    const rows = tf.tile(tf.reshape(columns, [b * h, 1, 2 * w * c]), [1, 2, 1]); // each row twice
    return tf.reshape(rows, [b, 2 * h, 2 * w, c]);
  });
}

/** Space-to-depth: each block × block square of pixels becomes one pixel with block² × the channels, ordered (dy, dx, c). */
export function spaceToDepth(x: tf.Tensor4D, block = 2): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const blocks = tf.transpose(tf.reshape(x, [b, h / block, block, w / block, block, c]), [0, 1, 3, 2, 4, 5]);
    return tf.reshape(blocks, [b, h / block, w / block, block * block * c]);
  });
}

/** The inverse of spaceToDepth: each pixel's channels, read as (dy, dx, c), become a block × block square. */
export function depthToSpace(x: tf.Tensor4D, block: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const out = c / (block * block);
    const pixels = tf.transpose(tf.reshape(x, [b, h, w, block, block, out]), [0, 1, 3, 2, 4, 5]);
    return tf.reshape(pixels, [b, h * block, w * block, out]);
  });
}

/**
 * Multi-head self-attention over the pixels: q, k, v by 1×1 projections [c, c], softmax(q·kᵀ/√d)·v per
 * head, an output projection [c, c] with bias, op by op. The caller normalizes before and adds the
 * residual after. (The blas backend runs the whole block as one kernel for all heads: unetBlocks.ts.)
 */
export function selfAttention(x: tf.Tensor4D, heads: number, w: { q: tf.Tensor2D; k: tf.Tensor2D; v: tf.Tensor2D; out: tf.Tensor2D; outBias: tf.Tensor1D }): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, wd, c] = x.shape;
    const n = h * wd;
    const d = c / heads;
    const rows = tf.reshape(x, [b * n, c]);
    const project = (kernel: tf.Tensor2D) => tf.reshape(tf.transpose(tf.reshape(tf.matMul(rows, kernel), [b, n, heads, d]), [0, 2, 1, 3]), [b * heads, n, d]);
    const [q, k, v] = [project(w.q), project(w.k), project(w.v)];
    const weights = scaledSoftmax(tf.matMul(q, k, false, true), 1 / Math.sqrt(d));
    const mixed = tf.reshape<tf.Rank.R2>(tf.transpose(tf.reshape(tf.matMul(weights, v), [b, heads, n, d]), [0, 2, 1, 3]), [b * n, c]);
    return tf.reshape(pointwise(mixed, w.out, w.outBias), [b, h, wd, c]);
  });
}
