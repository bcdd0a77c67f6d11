/** The `blas` backend's multi-head attention kernel over native/attention.c. */
import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon } from '../addon';
import { BlasBackend, cpuValues } from '../bufferPool';

/** Multi-head attention (inputs q, k, v [batch, tokens, channels]; outputs o and the rows' log-sum-exp), or its gradient. */
export function attentionKernel(native: NativeAddon, gradient: boolean): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { heads, scale } = attrs as unknown as { heads: number; scale: number };
    const cpu = backend as BlasBackend;
    const ins = inputs as Record<string, tf.TensorInfo>;
    const [b, n, c] = ins.q.shape;
    const geometry = Int32Array.from([b, n, c, heads]);
    const [q, k, v] = [ins.q, ins.k, ins.v].map((t) => cpuValues(cpu, t));
    const empty = b * n === 0; // a thread's share of a batch can be empty
    if (!gradient) {
      const o = cpu.allocate(b * n * c), lse = cpu.allocate(b * heads * n);
      if (!empty) native.attention(q, k, v, geometry, scale, o, lse);
      return [cpu.makeTensorInfo([b, n, c], 'float32', o), cpu.makeTensorInfo([b, heads, n], 'float32', lse)];
    }
    const [dq, dk, dv] = [0, 1, 2].map(() => cpu.allocate(b * n * c));
    if (!empty) native.attentionGrad(cpuValues(cpu, ins.dy), q, k, v, cpuValues(cpu, ins.o), cpuValues(cpu, ins.lse), geometry, scale, dq, dk, dv);
    return [dq, dk, dv].map((values) => cpu.makeTensorInfo([b, n, c], 'float32', values));
  };
}
