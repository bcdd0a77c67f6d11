/**
 * The `blas` backend: tfjs's own CPU backend with its matrix products (OpenBLAS sgemm), bias-gradient
 * sums and simple broadcasts replaced by the native addon's kernels, plus a fused GELU + LayerNorm.
 * All other kernels are the cpu backend's, registered again under this name, so the plain `cpu`
 * backend stays untouched as the reference the fast kernels are tested against.
 *
 * This file registers the backend and its kernels and installs the in-place updates; the backend
 * class and its buffer pool are in bufferPool.ts, the kernels in kernels/, one file per native file.
 */
import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon, loadNativeAddon } from './addon';
import { BlasBackend, cpuValues } from './bufferPool';
import { attentionKernel } from './kernels/attention';
import { convKernel, fusedConvKernel } from './kernels/conv';
import { concatKernel, resizeNearestGradKernel, resizeNearestKernel, sliceKernel, splitKernel, transposeKernel } from './kernels/copy';
import { batchMatMulKernel, binaryKernel, geluLayerNormGradKernel, geluLayerNormKernel, sumKernel } from './kernels/dense';
import { groupNormGradKernel, groupNormKernel, scaledSoftmaxKernel, siluGradKernel, siluKernel, softmaxKernel } from './kernels/norms';
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
  tf.registerKernel({ kernelName: SILU, backendName: BLAS_BACKEND, kernelFunc: siluKernel(native) });
  tf.registerKernel({ kernelName: SILU_GRAD, backendName: BLAS_BACKEND, kernelFunc: siluGradKernel(native) });
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
 * stays the backend's (dataSync() hands the array out, so it would never return to the buffer pool,
 * and what is read at every step, such as the data-parallel workers' gradients, would be allocated
 * afresh every step). Elsewhere dataSync()'s.
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

/** A variable's values overwritten in place where the active backend is `blas` (one copy, where assign() makes a new tensor and swaps its storage in). */
export function nativeCopy(variable: tf.Variable, values: Float32Array): boolean {
  const active = activeBlas();
  if (!active) return false;
  cpuValues(active.backend, variable).set(values);
  return true;
}
