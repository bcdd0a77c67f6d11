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
 * A norm kernel run with its gradient: the kernel's first output is the value, its others (x̂, 1/σ) are
 * saved for the gradient kernel, which gives dx, dγ, dβ at once. Over tf.customGrad, not a registered
 * gradient: for every output of a recorded kernel that gets no gradient, tfjs makes a zero tensor of its
 * size (x̂ is the size of x: 31 MB a step for the 32-px U-net, which made both threads' heaps collect
 * garbage every step). Without a gradient being recorded, the extra outputs are freed at once.
 */
function normWithGradient(kernel: string, gradKernel: string, x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, attrs: tf.NamedAttrMap, gradInputs: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.NamedTensorMap): tf.Tensor {
  if (!tf.engine().isTapeOn()) {
    const [y, ...kept] = tf.engine().runKernel(kernel, { x, gamma, beta }, attrs) as tf.Tensor[];
    tf.dispose(kept);
    return y;
  }
  const withGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [y, ...kept] = tf.engine().runKernel(kernel, { x: xi, gamma: g, beta: b }, attrs) as tf.Tensor[];
    save([xi, g, b, ...kept]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [dx, dgamma, dbeta] = tf.engine().runKernel(gradKernel, gradInputs(dy, saved), attrs) as tf.Tensor[];
        return [dx, dgamma, dbeta];
      },
    };
  });
  return withGradient(x, gamma, beta);
}

/** GroupNorm, then SiLU where `silu`, as the blas backend's kernel (x̂ written only where a gradient is recorded). */
export function fusedGroupNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, groups: number, silu: boolean): tf.Tensor {
  // β: where a SiLU follows, its input is recomputed from x̂
  return normWithGradient(GROUP_NORM, GROUP_NORM_GRAD, x, gamma, beta, { groups, silu, keep: tf.engine().isTapeOn() }, (dy, [, gamma, beta, xhat, rstd]) => ({ dy, xhat, gamma, beta, rstd }));
}

/** LayerNorm(GELU(x))·γ + β as the blas backend's kernel. */
export function fusedGeluLayerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
  return normWithGradient(GELU_LAYER_NORM, GELU_LAYER_NORM_GRAD, x, gamma, beta, {}, (dy, [x, gamma, , xhat, rstd]) => ({ dy, x, xhat, gamma, rstd }));
}

/**
 * Gradients of the other fused kernels, registered once (the registry is global; a gradient only runs
 * where its kernel did). Attention's gradient kernel runs in the attention block's own gradient
 * (unetBlocks.ts), the only place its kernel runs with a gradient recorded.
 */
let gradientsRegistered = false;
export function registerFusedGradients(): void {
  if (gradientsRegistered) return;
  gradientsRegistered = true;
  const first = (dy: tf.Tensor | tf.Tensor[]) => (Array.isArray(dy) ? dy[0] : dy);
  tf.registerGradient({
    kernelName: SCALED_SOFTMAX,
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => ({ x: () => tf.engine().runKernel(SCALED_SOFTMAX_GRAD, { dy: first(dy), y: saved[0] }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor }),
  });
  tf.registerGradient({
    kernelName: SILU,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => tf.engine().runKernel(SILU_GRAD, { dy: first(dy), x: saved[0] }) as tf.Tensor }),
  });
}
