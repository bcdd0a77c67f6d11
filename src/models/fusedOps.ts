/**
 * Fused operations with their own kernel names, so a backend can run them as one native kernel (the
 * `blas` backend does) while every other backend composes them from standard tfjs ops.
 */
import * as tf from '@tensorflow/tfjs-core';

export const GELU_LAYER_NORM = 'DiffuseGeluLayerNorm';
export const GELU_LAYER_NORM_GRAD = 'DiffuseGeluLayerNormGrad';
export const SILU = 'DiffuseSilu';
export const SILU_GRAD = 'DiffuseSiluGrad';
export const GROUP_NORM = 'DiffuseGroupNorm';
export const GROUP_NORM_GRAD = 'DiffuseGroupNormGrad';
/** softmax(scale·x) over the last axis (attention's weights), and its gradient, each one pass. */
export const SCALED_SOFTMAX = 'DiffuseScaledSoftmax';
export const SCALED_SOFTMAX_GRAD = 'DiffuseScaledSoftmaxGrad';
/** Multi-head attention softmax(scale·q kᵀ) v over [batch, tokens, channels] without the attention matrices, and its gradient. */
export const ATTENTION = 'DiffuseAttention';
export const ATTENTION_GRAD = 'DiffuseAttentionGrad';

export function backendHasKernel(kernelName: string): boolean {
  return tf.getKernel(kernelName, tf.getBackend()) !== undefined;
}

/**
 * Gradients of the fused kernels, registered once (the registry is global; a gradient only runs where
 * its kernel did). The norms' backward kernels give dx, dγ and dβ at once; they run here, not inside
 * the closures, because tfjs runs each closure in its own tidy, which would free the other two outputs.
 */
let gradientsRegistered = false;
export function registerFusedGradients(): void {
  if (gradientsRegistered) return;
  gradientsRegistered = true;
  const first = (dy: tf.Tensor | tf.Tensor[]) => (Array.isArray(dy) ? dy[0] : dy);
  tf.registerGradient({
    kernelName: GELU_LAYER_NORM,
    inputsToSave: ['x', 'gamma'],
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved) => {
      const [x, gamma, xhat, rstd] = saved;
      const [dx, dgamma, dbeta] = tf.engine().runKernel(GELU_LAYER_NORM_GRAD, { dy: first(dy), x, xhat, gamma, rstd }) as tf.Tensor[];
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
  tf.registerGradient({
    kernelName: GROUP_NORM,
    inputsToSave: ['gamma', 'beta'], // β: where a SiLU follows (attribute silu), its input is recomputed from x̂
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [gamma, beta, xhat, rstd] = saved;
      // x̂ is written only when isTapeOn() said a gradient was being recorded (convLayers.groupNorm)
      if (xhat.size === 0) throw new Error('GroupNorm gradient: the forward pass ran without a gradient recorded, so x̂ was not kept');
      const [dx, dgamma, dbeta] = tf.engine().runKernel(GROUP_NORM_GRAD, { dy: first(dy), xhat, gamma, beta, rstd }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
  tf.registerGradient({
    kernelName: SCALED_SOFTMAX,
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => ({ x: () => tf.engine().runKernel(SCALED_SOFTMAX_GRAD, { dy: first(dy), y: saved[0] }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor }),
  });
  tf.registerGradient({
    kernelName: ATTENTION,
    inputsToSave: ['q', 'k', 'v'],
    outputsToSave: [true, true],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v, o, lse] = saved;
      const [dq, dk, dv] = tf.engine().runKernel(ATTENTION_GRAD, { dy: first(dy), q, k, v, o, lse }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      return { q: () => dq, k: () => dk, v: () => dv };
    },
  });
  tf.registerGradient({
    kernelName: SILU,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => tf.engine().runKernel(SILU_GRAD, { dy: first(dy), x: saved[0] }) as tf.Tensor }),
  });
}
