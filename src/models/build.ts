/** A denoiser from its configuration, whichever kind it is. */
import { UserError } from '../errors';
import { Rng } from '../rng';
import { Denoiser, ModelConfig, parameterCount } from './denoiser';
import { FcUnet } from './fcUnet';
import { ConvUnet } from './unet';

export function buildModel(config: ModelConfig, rng: Rng): Denoiser {
  if (config?.kind === 'fc-unet') return new FcUnet(config, rng);
  if (config?.kind === 'unet') return new ConvUnet(config, rng);
  throw new UserError(`unknown model kind "${(config as { kind?: string })?.kind}" in checkpoint`);
}

export function describeModel(model: Denoiser): string {
  const c = model.config;
  const size = `${(parameterCount(model) / 1e6).toFixed(2)} M parameters`;
  if (c.kind === 'fc-unet') return `fc-unet width ${c.width} (${size})`;
  return `unet ${c.baseChannels}x[${c.channelMults}]${c.patchSize > 1 ? ` on ${c.patchSize}x${c.patchSize} patches` : ''} attention at ${c.attentionResolutions.join(',')} px (${size})`;
}
