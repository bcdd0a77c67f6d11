/** The few layer functions the denoisers are built from, on tfjs tensors. */
import * as tf from '@tensorflow/tfjs-core';
import { GELU_LAYER_NORM, backendHasKernel, fusedGeluLayerNorm } from '../ops/fusedOps';

/** y = x·W + b (W is [in, out]). Not tf.fused.matMul: its gradient also computes the input gradient, wasted on the first layer. */
export function dense(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor2D {
  return tf.add(tf.matMul(x, w), b);
}

/** Exact GELU, x·Φ(x) = ½x(1 + erf(x/√2)), as PyTorch's nn.GELU. */
export function gelu(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

export const LAYER_NORM_EPSILON = 1e-5;

/** Layer normalization over the last axis with a learned scale γ and offset β. */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    const normalized = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LAYER_NORM_EPSILON)));
    return tf.add(tf.mul(normalized, gamma), beta);
  });
}

/**
 * LayerNorm(GELU(x))·γ + β, the FC U-net's activation: one fused kernel where the backend has it
 * (`blas`), else the two functions above.
 */
export function geluLayerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D): tf.Tensor2D {
  if (backendHasKernel(GELU_LAYER_NORM)) {
    return fusedGeluLayerNorm(x, gamma, beta) as tf.Tensor2D;
  }
  return layerNorm(gelu(x), gamma, beta);
}
