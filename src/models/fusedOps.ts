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

/** Gradient of the fused GroupNorm (attribute `groups`), registered like the one above. */
let groupNormGradientRegistered = false;
export function registerGroupNormGradient(): void {
  if (groupNormGradientRegistered) return;
  groupNormGradientRegistered = true;
  tf.registerGradient({
    kernelName: GROUP_NORM,
    inputsToSave: ['gamma'],
    outputsToSave: [false, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [gamma, xhat, rstd] = saved;
      const dyOut = Array.isArray(dy) ? dy[0] : dy;
      const [dx, dgamma, dbeta] = tf.engine().runKernel(GROUP_NORM_GRAD, { dy: dyOut, xhat, gamma, rstd }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
}

let siluGradientRegistered = false;
export function registerSiluGradient(): void {
  if (siluGradientRegistered) return;
  siluGradientRegistered = true;
  tf.registerGradient({
    kernelName: SILU,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      return { x: () => tf.engine().runKernel(SILU_GRAD, { dy: dy as tf.Tensor, x }) as tf.Tensor };
    },
  });
}
