/**
 * The API in a web page: `diffuse export --web DIR` writes this module as DIR/diffuse.mjs (with tfjs
 * bundled), and a page of one's own imports it:
 *
 *   import { loadModel } from './diffuse.mjs';
 *   const model = await loadModel('./');            // the folder holding model.json
 *   const images = await model.sample({ n: 16, seed: 1 });
 *   const { data, width, height } = images.toRGBA();
 *   canvas.getContext('2d').putImageData(new ImageData(data, width, height), 0, 0);
 *
 * The same model, scheduler and sampler code as `diffuse sample`, so the same seed and options draw
 * the same images (on the cpu backend exactly; WebGL's float arithmetic differs slightly).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { DEFAULTS } from '../config/defaults';
import type { RunRecord } from '../config/runRecord';
import { CheckpointError, OptionError, UnsupportedModelError } from '../errors';
import { AutoGuided } from '../models/autoguidance';
import { buildModel } from '../models/build';
import { Denoiser, ModelConfig } from '../models/denoiser';
import { checkGuide } from '../pipeline/draw';
import { DDPMScheduler } from '../diffusion/schedule';
import { Rng } from '../rng';
import { assignCopy } from '../tensors';
import { WEB_GUIDE_WEIGHTS_FILE, WEB_MODEL_FILE, WEB_WEIGHTS_FILE, WebModel, WebWeights } from '../io/webModel';
import { DiffusionModel, Images, maskFromPixels } from './model';

export { DiffusionModel, Images } from './model';
export type { SampleOptions, DenoiseOptions, DrawSettings, SamplingStep, SamplerName, Spacing } from './model';
export { UserError, OptionError, CheckpointError, UnsupportedModelError } from '../errors';
export { SAMPLERS } from '../diffusion/sampler';
/** The sampler's defaults (batch size, DDIM's eta, the guidance weights), as `diffuse sample` takes them. */
export const SAMPLING_DEFAULTS = DEFAULTS.sampling;
export type { WebModel } from '../io/webModel';

export const BROWSER_BACKENDS = ['auto', 'webgl', 'wasm', 'cpu'] as const;

export interface BrowserLoadOptions {
  /** auto (the default: WebGL where the browser has it, else wasm, else cpu), webgl, wasm or cpu. */
  backend?: (typeof BROWSER_BACKENDS)[number];
  /** Autoguidance's weight where the model was exported with a guide (the exported one; 1 turns it off). */
  guidance?: number;
  /** Where tfjs's .wasm files are (the folder of this module, where `export --web` puts them). */
  wasmPaths?: string;
}

/** A model exported by `diffuse export --web`, with the description its page shows. */
export class BrowserModel extends DiffusionModel<Images> {
  constructor(
    pipeline: ConstructorParameters<typeof DiffusionModel>[0],
    /** The exported model's index: its record, weights' names and shapes, guide. */
    readonly web: WebModel,
    /** The tfjs backend it runs on. */
    readonly backend: string,
  ) {
    super(pipeline, (...args) => new Images(...args));
  }

  /**
   * An image (a file, a bitmap, an <img> or a canvas) at the model's size, as `diffuse`'s --image reads
   * one: scaled to cover and centre-cropped, transparency over the run's background, grey where the
   * model is (Rec. 709 luma); values in [−1, 1]. (The browser's scaling differs from the command line's
   * slightly; an image already at the model's size reads the same.)
   */
  async readImage(source: Blob | ImageBitmap | HTMLImageElement | HTMLCanvasElement): Promise<Float32Array> {
    const { height, imageWidth, channels } = this.record.model;
    const rgba = await drawAt(source, imageWidth, height, this.record.data.background ?? '#000000', true);
    const out = new Float32Array(height * imageWidth * channels);
    for (let p = 0; p < height * imageWidth; p++) {
      const [r, g, b] = [rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2]];
      if (channels === 1) out[p] = Math.round(0.2126 * r + 0.7152 * g + 0.0722 * b) / 127.5 - 1;
      else for (let c = 0; c < 3; c++) out[p * 3 + c] = rgba[4 * p + c] / 127.5 - 1;
    }
    return out;
  }

  /** A mask image at the model's size, grey (≥ 128 regenerates), as `diffuse inpaint --mask` takes one; refused otherwise. */
  async readMask(source: Blob | ImageBitmap | HTMLImageElement | HTMLCanvasElement): Promise<Float32Array> {
    const { height, imageWidth } = this.record.model;
    const bitmap = source instanceof Blob ? await createImageBitmap(source) : source;
    // (drawn at the bitmap's own size: a mask of another size is refused, not scaled)
    const rgba = await drawAt(bitmap, bitmap.width, bitmap.height, '#000000', false);
    return maskFromPixels(rgba, { width: bitmap.width, height: bitmap.height, stride: 4, colours: 3 }, { width: imageWidth, height });
  }
}

/** RGBA bytes of `source` drawn at width × height over `background` (scaled to cover and centred where `cover`). */
async function drawAt(source: Blob | ImageBitmap | HTMLImageElement | HTMLCanvasElement, width: number, height: number, background: string, cover: boolean): Promise<Uint8ClampedArray> {
  const bitmap = source instanceof Blob ? await createImageBitmap(source) : source;
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, width, height);
  const scale = cover ? Math.max(width / bitmap.width, height / bitmap.height) : 1;
  const [w, h] = [bitmap.width * scale, bitmap.height * scale];
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, (width - w) / 2, (height - h) / 2, w, h);
  return ctx.getImageData(0, 0, width, height).data;
}

/** The model exported into the folder at `url` (or model.json's own URL), on the backend asked for. */
export async function loadModel(url = './', options: BrowserLoadOptions = {}): Promise<BrowserModel> {
  const backendWanted = options.backend ?? 'auto';
  if (!BROWSER_BACKENDS.includes(backendWanted)) throw new OptionError('backend', `${String(backendWanted)}: one of ${BROWSER_BACKENDS.join(', ')}`);
  if (options.guidance !== undefined && !(typeof options.guidance === 'number' && options.guidance > 0)) throw new OptionError('guidance', `${String(options.guidance)}: expected a positive number`);
  const base = new URL(url.endsWith('.json') ? url : url.replace(/\/?$/, '/'), document.baseURI);
  const at = (file: string) => new URL(file, base).href;
  const modelUrl = url.endsWith('.json') ? base.href : at(WEB_MODEL_FILE);
  const web = (await fetchOk(modelUrl).then((r) =>
    r.json().catch(() => {
      throw new CheckpointError(`${modelUrl} is not JSON`);
    }),
  )) as WebModel;
  if (web?.format !== 'diffuse-web-model') throw new CheckpointError(`${modelUrl} is not a model written by diffuse export --web`);
  if (web.version !== 1) throw new UnsupportedModelError(`${modelUrl} has format version ${web.version}; this module reads version 1 (a newer diffuse wrote it)`);
  const backend = await startBackend(backendWanted, options.wasmPaths ?? new URL('./', import.meta.url).href);
  const weights = await fetchOk(at(WEB_WEIGHTS_FILE)).then((r) => r.arrayBuffer());
  let model = loadedModel(web.record.model, web, weights, at(WEB_WEIGHTS_FILE));
  let guide;
  if (web.guide) {
    try {
      checkGuide(web.record, web.guide.record, WEB_GUIDE_WEIGHTS_FILE);
      const guideWeights = await fetchOk(at(WEB_GUIDE_WEIGHTS_FILE)).then((r) => r.arrayBuffer());
      const weight = options.guidance ?? web.guide.weight;
      model = new AutoGuided(model, loadedModel(web.guide.record.model, web.guide, guideWeights, at(WEB_GUIDE_WEIGHTS_FILE)), weight); // as `diffuse sample --guide`
      guide = { checkpoint: WEB_GUIDE_WEIGHTS_FILE, weight };
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  const record: RunRecord = web.record;
  return new BrowserModel({ model, scheduler: new DDPMScheduler(record.schedule), record, averaged: web.averaged, guide }, web, backend);
}

async function fetchOk(url: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new CheckpointError(`cannot fetch ${url}: ${(e as Error).message}`);
  }
  if (!response.ok) throw new CheckpointError(`cannot fetch ${url}: HTTP ${response.status}`);
  return response;
}

async function startBackend(wanted: string, wasmPaths: string): Promise<string> {
  setWasmPaths(wasmPaths);
  for (const name of wanted === 'auto' ? ['webgl', 'wasm', 'cpu'] : [wanted]) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
    } catch {
      /* the next one */
    }
  }
  throw new OptionError('backend', `${wanted}: no tfjs backend could start`);
}

/** A model of `config` holding the weights `index` describes in `buffer`. */
function loadedModel(config: ModelConfig, index: WebWeights, buffer: ArrayBuffer, url: string): Denoiser {
  if (buffer.byteLength !== index.parameters * 4) throw new CheckpointError(`${url} has ${buffer.byteLength} bytes, expected ${index.parameters * 4}`);
  const model = buildModel(config, new Rng(0));
  const floats = new Float32Array(buffer);
  let offset = 0;
  for (const t of index.tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    const v = model.variables.get(t.name);
    if (!v || v.shape.join('x') !== t.shape.join('x')) {
      model.dispose();
      throw new CheckpointError(`${url} does not match its model: ${t.name} [${t.shape}]`);
    }
    assignCopy(v, floats.subarray(offset, offset + size));
    offset += size;
  }
  return model;
}
