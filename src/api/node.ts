/**
 * The API in Node: `loadModel` reads a checkpoint folder (or a .safetensors file from `diffuse export`)
 * onto the backend the command line would choose, or the one named; its images encode to PNG. The
 * command line's `sample` and `denoise` are built on these calls.
 */
import { BACKENDS, BackendChoice, defaultBackendEnv, selectBackend } from '../backend/select';
import { decodeImage } from '../data/folder';
import { OptionError, UserError } from '../errors';
import { ImageFormat } from '../files';
import { encodeImage } from '../io/images';
import { guideFrom, loadPipeline } from '../pipeline/load';
import { samplingProgress } from '../progress';
import { DiffusionModel, Images } from './model';

export interface LoadOptions {
  /** auto (the default: native TensorFlow, the native kernels, wasm, cpu: the first that works), tensorflow, blas, wasm or cpu. */
  backend?: BackendChoice;
  /** Autoguidance: a weaker checkpoint of the same run (an early epoch) that guides the model. */
  guide?: string;
  /** Its weight w (2; 1 is none). */
  guidance?: number;
  /** Receives the line saying which backend runs and how to get a faster one (not printed otherwise). */
  onNotice?: (line: string) => void;
}

/** Images that also encode as image files. */
export class NodeImages extends Images {
  /** The grid (as `diffuse sample` writes it), or image `index` alone, as PNG bytes (or WebP, lossless, or JPEG). */
  toPNG(options: { index?: number; columns?: number; format?: ImageFormat } = {}): Promise<Buffer> {
    const format = options.format ?? 'png';
    if (options.index !== undefined) return encodeImage(this.pixels(options.index), this.width, this.height, this.channels, format);
    const grid = this.toGrid(options.columns ?? this.columns);
    return encodeImage(grid.pixels, grid.width, grid.height, grid.channels, format);
  }
}

export class NodeModel extends DiffusionModel<NodeImages> {
  /** An image file (PNG, JPEG, WebP, SVG, ...) resized and centre-cropped to the model's size, as `denoise` takes it. */
  async readImage(file: string): Promise<Float32Array> {
    const { height, channels } = this.record.model;
    try {
      const bytes = await decodeImage(file, { size: height, channels: channels as 1 | 3, background: this.record.data.background ?? '#000000' }); // MNIST: digits on black
      return Float32Array.from(bytes, (v) => v / 127.5 - 1);
    } catch (e) {
      throw new UserError(`cannot read image ${file}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
}

/** The model in a checkpoint folder or .safetensors file, ready to sample; dispose() it when done. */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<NodeModel> {
  if (typeof path !== 'string' || path === '') throw new OptionError('checkpoint', 'expects a checkpoint folder or a .safetensors file');
  const backend = options.backend ?? 'auto';
  if (!BACKENDS.includes(backend)) throw new OptionError('backend', `${String(backend)}: one of ${BACKENDS.join(', ')}`);
  if (options.guidance !== undefined && !(typeof options.guidance === 'number' && options.guidance > 0)) throw new OptionError('guidance', `${String(options.guidance)}: expected a positive number`);
  const guide = guideFrom(options);
  await selectBackend(backend, { ...defaultBackendEnv, log: options.onNotice ?? (() => {}) });
  const pipeline = loadPipeline(path, guide);
  return new NodeModel(pipeline, (...args) => new NodeImages(...args), samplingProgress);
}
