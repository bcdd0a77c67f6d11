/** The `blas` backend's kernels over native/norms.c: GroupNorm (with its SiLU), softmax, SiLU, and their gradients. */
import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon } from '../addon';
import { BlasBackend, cpuValues } from '../bufferPool';

/** A kernel whose one output has the shape of its first input. */
function elementwiseKernel(run: (cpu: BlasBackend, inputs: tf.TensorInfo[], out: Float32Array) => void, ...names: string[]): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const cpu = backend as BlasBackend;
    const ins = names.map((n) => (inputs as Record<string, tf.TensorInfo>)[n]);
    const out = cpu.allocate(tf.util.sizeFromShape(ins[0].shape));
    run(cpu, ins, out);
    return cpu.makeTensorInfo(ins[0].shape, 'float32', out);
  };
}

/** y = x·σ(x). */
export function siluKernel(native: NativeAddon): tf.KernelFunc {
  return elementwiseKernel((cpu, [x], out) => native.silu(cpuValues(cpu, x), out), 'x');
}

/** The gradient of SiLU, from dy and x. */
export function siluGradKernel(native: NativeAddon): tf.KernelFunc {
  return elementwiseKernel((cpu, [dy, x], out) => native.siluGrad(cpuValues(cpu, dy), cpuValues(cpu, x), out), 'dy', 'x');
}

/** GroupNorm on NHWC as one native kernel; outputs y, and x̂ and 1/σ per (image, group) for the gradient. */
export function groupNormKernel(native: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo>;
    const { groups, silu, keep } = attrs as unknown as { groups: number; silu?: boolean; keep?: boolean };
    const cpu = backend as BlasBackend;
    const [b, h, w, c] = x.shape;
    // x̂ only where a gradient will need it (keep: false when no gradient is being recorded)
    const y = cpu.allocate(b * h * w * c), xhat = cpu.allocate(keep === false ? 0 : b * h * w * c), rstd = cpu.allocate(b * groups);
    native.groupNorm(cpuValues(cpu, x), cpuValues(cpu, gamma), cpuValues(cpu, beta), b, h * w, c, groups, y, xhat, rstd, silu === true);
    return [cpu.makeTensorInfo(x.shape, 'float32', y), cpu.makeTensorInfo(keep === false ? [0] : x.shape, 'float32', xhat), cpu.makeTensorInfo([b * groups], 'float32', rstd)];
  };
}

export function groupNormGradKernel(native: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { dy, xhat, gamma, beta, rstd } = inputs as Record<string, tf.TensorInfo>;
    const { groups, silu } = attrs as unknown as { groups: number; silu?: boolean };
    const cpu = backend as BlasBackend;
    const [b, h, w, c] = xhat.shape;
    const dx = cpu.allocate(b * h * w * c), dgamma = cpu.allocate(c), dbeta = cpu.allocate(c);
    native.groupNormGrad(cpuValues(cpu, dy), cpuValues(cpu, xhat), cpuValues(cpu, gamma), cpuValues(cpu, rstd), b, h * w, c, groups, dx, dgamma, dbeta, silu ? cpuValues(cpu, beta) : null, silu === true);
    return [cpu.makeTensorInfo(xhat.shape, 'float32', dx), cpu.makeTensorInfo([c], 'float32', dgamma), cpu.makeTensorInfo([c], 'float32', dbeta)];
  };
}

/** Softmax over the last axis, one row at a time (the cpu kernel runs five broadcasting ops). */
export function softmaxKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { logits } = args.inputs as { logits: tf.TensorInfo };
    const { dim } = args.attrs as unknown as { dim: number };
    const rank = logits.shape.length;
    if (logits.dtype !== 'float32' || (dim !== -1 && dim !== rank - 1)) return fallback(args);
    const cpu = args.backend as BlasBackend;
    const x = cpuValues(cpu, logits);
    const out = cpu.allocate(x.length);
    const n = logits.shape[rank - 1];
    native.softmaxRows(x, n, out);
    return cpu.makeTensorInfo(logits.shape, 'float32', out);
  };
}

/** softmax(scale·x) over the last axis (inputs x), or its gradient (inputs dy and the saved y). */
export function scaledSoftmaxKernel(native: NativeAddon, gradient: boolean): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { scale } = attrs as unknown as { scale: number };
    const cpu = backend as BlasBackend;
    const ins = inputs as Record<string, tf.TensorInfo>;
    const shape = (gradient ? ins.y : ins.x).shape;
    const cols = shape[shape.length - 1];
    const out = cpu.allocate(tf.util.sizeFromShape(shape));
    if (gradient) native.softmaxRowsGrad(cpuValues(cpu, ins.dy), cpuValues(cpu, ins.y), cols, scale, out);
    else native.softmaxRows(cpuValues(cpu, ins.x), cols, out, scale);
    return cpu.makeTensorInfo(shape, 'float32', out);
  };
}
