/**
 * Fused operations with their own kernel names, so a backend can run them as one native kernel (the
 * `blas` backend does) while every other backend composes them from standard tfjs ops.
 */
import * as tf from '@tensorflow/tfjs-core';

export const GELU_LAYER_NORM = 'DiffuseGeluLayerNorm';
export const GELU_LAYER_NORM_GRAD = 'DiffuseGeluLayerNormGrad';

export function backendHasKernel(kernelName: string): boolean {
  return tf.getKernel(kernelName, tf.getBackend()) !== undefined;
}

/**
 * Gradient of the fused kernel: one backward kernel gives dx, dγ and dβ. It runs here, not inside the
 * closures, because tfjs runs each closure in its own tidy, which would free the other two outputs.
 */
let gradientRegistered = false;
export function registerGeluLayerNormGradient(): void {
  if (gradientRegistered) return;
  gradientRegistered = true;
  tf.registerGradient({
    kernelName: GELU_LAYER_NORM,
    inputsToSave: ['x', 'gamma'],
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved) => {
      const [x, gamma, xhat, rstd] = saved;
      const dyOut = Array.isArray(dy) ? dy[0] : dy;
      const [dx, dgamma, dbeta] = tf.engine().runKernel(GELU_LAYER_NORM_GRAD, { dy: dyOut, x, xhat, gamma, rstd }) as tf.Tensor[];
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
}
