/**
 * The U-net's residual and attention blocks where the backend has the kernels they fuse (blas: the
 * convolutions add their addends as they store outputs, one attention kernel for all heads), each
 * recorded on the gradient tape as one operation with its gradient written out, as a PyTorch autograd
 * Function would be. Recorded op by op, a residual block was ~40 tape nodes (reshapes, adds, the fused
 * ops' own reshapes), each cloning what it saves and differentiated by a call of its own: most of a
 * step's fixed JavaScript cost and garbage, paid by every thread of a data-parallel step
 * (docs/backends.md). The same kernels compute the same sums; only where a gradient meets another
 * (x's, from outside the block) is the order of additions another.
 *
 *   residual: h = conv1(GroupNorm-SiLU(x)) with bias b1 + time·Wt + bt (one shift per image)
 *             y = conv2(GroupNorm-SiLU(h)) + b2, plus x, or plus the 1x1 skip convolution of x (bias bs)
 *   attention: y = x + (softmax(q·kᵀ/√d)·v per head)·Wout + bout, with q, k, v = GroupNorm(x)·Wq, ·Wk, ·Wv
 */
import * as tf from '@tensorflow/tfjs-core';
import { conv2d, pointwise } from './convLayers';
import { dense } from './layers';
import { ATTENTION, ATTENTION_GRAD, GROUP_NORM, GROUP_NORM_GRAD } from '../ops/fusedOps';

interface NormWeights {
  gamma: tf.Tensor1D;
  beta: tf.Tensor1D;
}

export interface ResidualBlockWeights {
  norm1: NormWeights;
  conv1: { kernel: tf.Tensor4D; bias: tf.Tensor1D };
  time: { kernel: tf.Tensor2D; bias: tf.Tensor1D };
  norm2: NormWeights;
  conv2: { kernel: tf.Tensor4D; bias: tf.Tensor1D };
  /** The 1x1 convolution on the skip path where the block changes the channel count. */
  skip?: { kernel: tf.Tensor4D; bias: tf.Tensor1D };
}

const STRIDE_1_SAME = { strides: [1, 1] as [number, number], pad: 'same' as const, dataFormat: 'NHWC' as const };

/** GroupNorm, then SiLU where `silu` (the blas kernel): the value, and where `keep`, x̂ and 1/σ for its gradient. */
function groupNorm(x: tf.Tensor4D, norm: NormWeights, groups: number, silu: boolean, keep: boolean): tf.Tensor[] {
  const out = tf.engine().runKernel(GROUP_NORM, { x, gamma: norm.gamma, beta: norm.beta }, { groups, silu, keep }) as tf.Tensor[];
  if (keep) return out;
  tf.dispose(out.slice(1));
  return [out[0]];
}

/** dx, dγ, dβ of groupNorm() from its output's gradient and what it kept. */
function groupNormGrads(dy: tf.Tensor, xhat: tf.Tensor, rstd: tf.Tensor, norm: NormWeights, groups: number, silu: boolean): tf.Tensor[] {
  return tf.engine().runKernel(GROUP_NORM_GRAD, { dy, xhat, gamma: norm.gamma, beta: norm.beta, rstd }, { groups, silu, keep: true }) as tf.Tensor[];
}

/** The block's output, and where `keep` the intermediates its gradient reads: [n1, x̂1, 1/σ1, n2, x̂2, 1/σ2]. */
function forward(x: tf.Tensor4D, time: tf.Tensor2D, w: ResidualBlockWeights, groups: number, keep: boolean): { y: tf.Tensor4D; kept: tf.Tensor[] } {
  const cout = w.conv1.kernel.shape[3];
  const [n1, ...stats1] = groupNorm(x, w.norm1, groups, true, keep);
  const shift = tf.reshape(dense(time, w.time.kernel, w.time.bias), [-1, 1, 1, cout]);
  const h1 = conv2d(n1 as tf.Tensor4D, w.conv1.kernel, tf.add(w.conv1.bias, shift));
  const [n2, ...stats2] = groupNorm(h1, w.norm2, groups, true, keep);
  const kept = [n1, ...stats1, n2, ...stats2];
  if (!w.skip) return { y: tf.add<tf.Tensor4D>(conv2d(n2 as tf.Tensor4D, w.conv2.kernel, w.conv2.bias), x), kept };
  // conv2's output is the skip convolution's bias (one pass fewer); conv2 takes both biases
  const c2 = conv2d(n2 as tf.Tensor4D, w.conv2.kernel, tf.add(w.conv2.bias, w.skip.bias));
  return { y: conv2d(x, w.skip.kernel, c2), kept };
}

/** The block's output; recorded as one operation where a gradient is being recorded. */
export function residualBlock(x: tf.Tensor4D, time: tf.Tensor2D, w: ResidualBlockWeights, groups: number): tf.Tensor4D {
  if (!tf.engine().isTapeOn()) return tf.tidy(() => forward(x, time, w, groups, false).y);
  const weights = [w.norm1.gamma, w.norm1.beta, w.conv1.kernel, w.conv1.bias, w.time.kernel, w.time.bias, w.norm2.gamma, w.norm2.beta, w.conv2.kernel, w.conv2.bias, ...(w.skip ? [w.skip.kernel, w.skip.bias] : [])];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const { y, kept } = forward(x, time, w, groups, true);
    save([x, time, ...kept]);
    return { value: y, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => residualGradients(dy as tf.Tensor4D, saved, w, groups) };
  });
  return op(x, time, ...weights) as tf.Tensor4D;
}

/** Gradients in the order residualBlock's operation takes its inputs: x, time, then the weights. */
function residualGradients(dy: tf.Tensor4D, saved: tf.Tensor[], w: ResidualBlockWeights, groups: number): tf.Tensor[] {
  const [x, time, n1, xhat1, rstd1, n2, xhat2, rstd2] = saved as [tf.Tensor4D, tf.Tensor2D, tf.Tensor4D, tf.Tensor, tf.Tensor, tf.Tensor4D, tf.Tensor, tf.Tensor];
  const [b, h, wd, cin] = x.shape;
  const cout = dy.shape[3];
  // The output: conv2's (its bias's gradient is the output's, summed over images and pixels), and the skip path's.
  let dxSkip: tf.Tensor = dy;
  const skipGrads: tf.Tensor[] = [];
  const dBias2 = tf.sum(dy, [0, 1, 2]);
  if (w.skip) {
    const rows = tf.reshape(dy, [b * h * wd, cout]);
    const kernel = tf.reshape(w.skip.kernel, [cin, cout]);
    dxSkip = tf.reshape(tf.matMul(rows, kernel, false, true), x.shape);
    skipGrads.push(tf.reshape(tf.matMul(tf.reshape(x, [b * h * wd, cin]), rows, true, false), w.skip.kernel.shape), dBias2);
  }
  const convGrads = (dOut: tf.Tensor4D, input: tf.Tensor4D, kernel: tf.Tensor4D) => [
    tf.engine().runKernel(tf.Conv2DBackpropInput, { dy: dOut, filter: kernel }, { ...STRIDE_1_SAME, inputShape: input.shape }) as tf.Tensor4D,
    tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: input, dy: dOut }, { ...STRIDE_1_SAME, filterShape: kernel.shape }) as tf.Tensor4D,
  ];
  const [dn2, dKernel2] = convGrads(dy, n2, w.conv2.kernel);
  const [dh1, dGamma2, dBeta2] = groupNormGrads(dn2, xhat2, rstd2, w.norm2, groups, true);
  // conv1's bias is b1 + the time shift, one per image: its gradient per image, then over images for b1
  const dShift = tf.sum(dh1, [1, 2]);
  const [dn1, dKernel1] = convGrads(dh1 as tf.Tensor4D, n1, w.conv1.kernel);
  const [dxNorm, dGamma1, dBeta1] = groupNormGrads(dn1, xhat1, rstd1, w.norm1, groups, true);
  return [
    tf.add(dxNorm, dxSkip),
    tf.matMul(dShift, w.time.kernel, false, true),
    dGamma1,
    dBeta1,
    dKernel1,
    tf.sum(dShift, 0),
    tf.matMul(time, dShift, true, false),
    tf.sum(dShift, 0),
    dGamma2,
    dBeta2,
    dKernel2,
    dBias2,
    ...skipGrads,
  ];
}

export interface AttentionBlockWeights {
  norm: NormWeights;
  q: tf.Tensor2D;
  k: tf.Tensor2D;
  v: tf.Tensor2D;
  out: { kernel: tf.Tensor2D; bias: tf.Tensor1D };
}

/** The attention block's output, and where `keep` what its gradient reads: [normed rows, q, k, v, o, lse, x̂, 1/σ]. */
function attentionForward(x: tf.Tensor4D, w: AttentionBlockWeights, groups: number, heads: number, keep: boolean): { y: tf.Tensor4D; kept: tf.Tensor[] } {
  const [b, h, wd, c] = x.shape;
  const n = h * wd;
  const [normed, ...stats] = groupNorm(x, w.norm, groups, false, keep);
  const rows = tf.reshape(normed, [b * n, c]);
  // One kernel for all heads, on the projections as they come (no per-head transposes, no attention matrices).
  const [q, k, v] = [w.q, w.k, w.v].map((kernel) => tf.reshape(tf.matMul(rows, kernel), [b, n, c]));
  const [o, lse] = tf.engine().runKernel(ATTENTION, { q, k, v }, { heads, scale: 1 / Math.sqrt(c / heads) }) as tf.Tensor[];
  const mixed = pointwise(tf.reshape(o, [b * n, c]), w.out.kernel, w.out.bias);
  return { y: tf.add(x, tf.reshape(mixed, x.shape)), kept: keep ? [rows, q, k, v, o, lse, ...stats] : [] };
}

/** Multi-head self-attention over the pixels with its residual; recorded as one operation where a gradient is being recorded. */
export function attentionBlock(x: tf.Tensor4D, w: AttentionBlockWeights, groups: number, heads: number): tf.Tensor4D {
  if (!tf.engine().isTapeOn()) return tf.tidy(() => attentionForward(x, w, groups, heads, false).y);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const { y, kept } = attentionForward(x, w, groups, heads, true);
    save(kept);
    return { value: y, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => attentionGradients(dy as tf.Tensor4D, saved, w, groups, heads) };
  });
  return op(x, w.norm.gamma, w.norm.beta, w.q, w.k, w.v, w.out.kernel, w.out.bias) as tf.Tensor4D;
}

/** Gradients in the order attentionBlock's operation takes its inputs: x, then the weights. */
function attentionGradients(dy: tf.Tensor4D, saved: tf.Tensor[], w: AttentionBlockWeights, groups: number, heads: number): tf.Tensor[] {
  const [rows, q, k, v, o, lse, xhat, rstd] = saved as [tf.Tensor2D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor, tf.Tensor, tf.Tensor];
  const [b, n, c] = q.shape;
  const dMixed = tf.reshape(dy, [b * n, c]);
  const dO = tf.reshape(tf.matMul(dMixed, w.out.kernel, false, true), [b, n, c]);
  const [dq, dk, dv] = (tf.engine().runKernel(ATTENTION_GRAD, { dy: dO, q, k, v, o, lse }, { heads, scale: 1 / Math.sqrt(c / heads) }) as tf.Tensor[]).map((d) => tf.reshape(d, [b * n, c]));
  // the normalized rows feed three products: their gradients summed
  const [fromQ, fromK, fromV] = [dq, dk, dv].map((d, i) => tf.matMul(d, [w.q, w.k, w.v][i], false, true));
  const dRows = tf.add(tf.add(fromQ, fromK), fromV);
  const [dxNorm, dGamma, dBeta] = groupNormGrads(tf.reshape(dRows, dy.shape), xhat, rstd, w.norm, groups, false);
  return [
    tf.add(dy, dxNorm),
    dGamma,
    dBeta,
    ...[dq, dk, dv].map((d) => tf.matMul(rows, d, true, false)),
    tf.matMul(tf.reshape(o, [b * n, c]), dMixed, true, false),
    tf.sum(dMixed, 0),
  ];
}
