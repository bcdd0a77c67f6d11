/**
 * The seed's fully connected U-net: the flattened image plus one element t/T, dense layers
 * 785 → w → w/2 → w/4 → w/2 → w → 784, GELU then LayerNorm after each hidden layer, and residual
 * links adding the pre-activation output of the down layer of equal width (the U).
 */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../errors';
import { Rng } from '../rng';
import { Denoiser, FcUnetConfig, classOneHot, imageSize } from './denoiser';
import { dense, geluLayerNorm } from './layers';
import { variableFrom } from '../tensors';

const DENSE_LAYERS = ['in', 'down1', 'down2', 'up1', 'up2', 'out'] as const;

export function fcUnetConfig(width = 2048, height = 28, imageWidth = 28, channels = 1, classes = 0): FcUnetConfig {
  return { kind: 'fc-unet', classes, width, height, imageWidth, channels };
}

export function validateFcUnetWidth(width: number): void {
  if (!Number.isInteger(width) || width < 4 || width % 4 !== 0) {
    throw new UserError(`width must be a positive multiple of 4 (it is halved twice), got ${width}`);
  }
}

/** Weights and biases of the dense layers and the norms' scales and offsets. */
export function fcUnetParameters(config: FcUnetConfig): number {
  return denseShapes(config).reduce((sum, [fanIn, fanOut]) => sum + (fanIn + 1) * fanOut, 0) + normWidths(config).reduce((sum, w) => sum + 2 * w, 0);
}

/** [fan_in, fan_out] of each dense layer. */
function denseShapes(config: FcUnetConfig): [number, number][] {
  const pixels = imageSize(config);
  const w = config.width;
  // the image, t/T, and for a conditional model the label's one-hot (the last column: no class)
  return [
    [pixels + 1 + (config.classes > 0 ? config.classes + 1 : 0), w],
    [w, w / 2],
    [w / 2, w / 4],
    [w / 4, w / 2],
    [w / 2, w],
    [w, pixels],
  ];
}

function normWidths(config: FcUnetConfig): number[] {
  const w = config.width;
  return [w, w / 2, w / 4, w / 2, w];
}

/**
 * The initial weights: PyTorch's nn.Linear default, U(−1/√fan_in, 1/√fan_in) for W and b, and
 * LayerNorm γ = 1, β = 0, drawn from `rng` so a seed fixes them on every backend.
 */
export function initialFcUnetWeights(config: FcUnetConfig, rng: Rng): Map<string, { shape: number[]; values: Float32Array }> {
  validateFcUnetWidth(config.width);
  const weights = new Map<string, { shape: number[]; values: Float32Array }>();
  denseShapes(config).forEach(([fanIn, fanOut], i) => {
    const bound = 1 / Math.sqrt(fanIn);
    const uniform = (n: number) => Float32Array.from({ length: n }, () => (2 * rng.uniform() - 1) * bound);
    weights.set(`${DENSE_LAYERS[i]}/kernel`, { shape: [fanIn, fanOut], values: uniform(fanIn * fanOut) });
    weights.set(`${DENSE_LAYERS[i]}/bias`, { shape: [fanOut], values: uniform(fanOut) });
  });
  normWidths(config).forEach((n, i) => {
    weights.set(`norm${i}/gamma`, { shape: [n], values: new Float32Array(n).fill(1) });
    weights.set(`norm${i}/beta`, { shape: [n], values: new Float32Array(n) });
  });
  return weights;
}

export class FcUnet implements Denoiser {
  readonly config: FcUnetConfig;
  readonly variables: Map<string, tf.Variable>;

  constructor(config: FcUnetConfig, rng: Rng) {
    this.config = config;
    this.variables = new Map();
    for (const [name, { shape, values }] of initialFcUnetWeights(config, rng)) {
      this.variables.set(name, variableFrom(values, shape, true));
    }
  }

  private v<R extends tf.Rank>(name: string): tf.Tensor<R> {
    return this.variables.get(name) as unknown as tf.Tensor<R>;
  }

  private dense(x: tf.Tensor2D, layer: (typeof DENSE_LAYERS)[number]): tf.Tensor2D {
    return dense(x, this.v(`${layer}/kernel`), this.v(`${layer}/bias`));
  }

  /** LayerNorm(GELU(x)) with the i-th norm's parameters. */
  private activate(x: tf.Tensor2D, i: number): tf.Tensor2D {
    return geluLayerNorm(x, this.v(`norm${i}/gamma`), this.v(`norm${i}/beta`));
  }

  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D, labels?: tf.Tensor1D): tf.Tensor2D {
    return tf.tidy(() => {
      const { classes } = this.config;
      const time = tf.reshape(tFrac, [-1, 1]) as tf.Tensor2D;
      const input = tf.concat(classes > 0 ? [x, time, classOneHot(labels, x.shape[0], classes)] : [x, time], 1);
      const o0 = this.dense(input, 'in');
      const o1 = this.dense(this.activate(o0, 0), 'down1');
      const o2 = this.dense(this.activate(o1, 1), 'down2');
      const u1 = this.dense(tf.add(this.activate(o2, 2), o2), 'up1');
      const u2 = this.dense(tf.add(this.activate(u1, 3), o1), 'up2');
      return this.dense(tf.add(this.activate(u2, 4), o0), 'out');
    });
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
  }
}
