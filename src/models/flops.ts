/**
 * FLOPs of a denoiser's forward pass for one image, counted from the kernels tfjs's profiler records:
 * 2 per multiply-add of the convolutions (at their direct count, whatever algorithm runs them), the
 * matrix products and diffuse's fused attention. The bench divides measured speed by it (GFLOP/s).
 */
import * as tf from '@tensorflow/tfjs-core';
import { buildModel } from './build';
import { ModelConfig, imageSize } from './denoiser';
import { ATTENTION } from '../ops/fusedOps';
import { Rng } from '../rng';

export async function forwardFlops(config: ModelConfig): Promise<number> {
  const model = buildModel(config, new Rng(0));
  const profile = await tf.profile(() => {
    tf.tidy(() => void model.predict(tf.zeros([1, imageSize(config)]), tf.zeros([1])));
  });
  model.dispose();
  let flops = 0;
  for (const k of profile.kernels) {
    const out = k.outputShapes[0] as number[];
    // with or without the bias in the same kernel (tf.fused.conv2d)
    if (k.name === 'Conv2D' || k.name === 'FusedConv2D') flops += 2 * tf.util.sizeFromShape(out) * tf.util.sizeFromShape((k.inputShapes[1] as number[]).slice(0, 3));
    // q kᵀ and the weights times v, each 2·tokens²·channels per image (all heads)
    if (k.name === ATTENTION) {
      const [b, n, c] = k.inputShapes[0] as number[];
      flops += 4 * b * n * n * c;
    }
    if (k.name === 'BatchMatMul' || k.name === '_FusedMatMul') {
      const [a, b] = k.inputShapes as number[][];
      // The shared dimension: a's last unless a is transposed (then its second to last), checked against b.
      const inner = a[a.length - 1] === b[b.length - 2] || a[a.length - 1] === b[b.length - 1] ? a[a.length - 1] : a[a.length - 2];
      flops += 2 * tf.util.sizeFromShape(out) * inner;
    }
  }
  return flops;
}
