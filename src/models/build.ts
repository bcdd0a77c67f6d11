/** A denoiser from its configuration, whichever kind it is. */
import * as tf from '@tensorflow/tfjs-core';
import { TraceCache } from '../ops/kernelTrace';
import { UnsupportedModelError } from '../errors';
import { Rng } from '../rng';
import { Denoiser, ModelConfig, parameterCount } from './denoiser';
import { FcUnet } from './fcUnet';
import { ConvUnet } from './unet';

/** The denoiser the configuration names; its predictions without a gradient replay a kernel trace where the backend allows (Replayed). */
export function buildModel(config: ModelConfig, rng: Rng): Denoiser {
  if (config?.kind === 'fc-unet') return new Replayed(new FcUnet(config, rng));
  if (config?.kind === 'unet') return new Replayed(new ConvUnet(config, rng));
  throw new UnsupportedModelError(`unknown model kind "${(config as { kind?: string })?.kind}" in checkpoint`);
}

/**
 * A denoiser whose predictions, where no gradient is recorded, replay the kernels of its first
 * prediction at that batch size (ops/kernelTrace.ts): the same results bit for bit, without tfjs's
 * per-operation work.
 */
class Replayed implements Denoiser {
  private readonly traces = new TraceCache();

  constructor(private readonly model: Denoiser) {}

  get config(): ModelConfig {
    return this.model.config;
  }

  get variables(): ReadonlyMap<string, tf.Variable> {
    return this.model.variables;
  }

  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D, labels?: tf.Tensor1D): tf.Tensor2D {
    return this.traces.run(labels ? [x, tFrac, labels] : [x, tFrac], () => [this.model.predict(x, tFrac, labels)])[0] as tf.Tensor2D;
  }

  dispose(): void {
    this.traces.dispose();
    this.model.dispose();
  }
}

export function describeModel(model: Denoiser): string {
  const c = model.config;
  const size = `${(parameterCount(model) / 1e6).toFixed(2)} M parameters`;
  if (c.kind === 'fc-unet') return `fc-unet width ${c.width} (${size})`;
  return `unet ${c.baseChannels}x[${c.channelMults}]${c.patchSize > 1 ? ` on ${c.patchSize}x${c.patchSize} patches` : ''} attention at ${c.attentionResolutions.join(',')} px (${size})`;
}
