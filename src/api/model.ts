/**
 * diffuse as a library: a trained model that samples and denoises, the same object in Node
 * (./node.ts: `loadModel(path)`) and in a web page (./browser.ts: `loadModel(url)`). Options are the
 * command line's, checked as it checks them; errors are typed (src/errors.ts) and carry the messages
 * the command line prints; nothing is printed unless asked (`progress`), and nothing exits the process.
 */
import type { RunRecord } from '../config/runRecord';
import { DEFAULTS } from '../config/defaults';
import { SamplerChoices, parseClasses } from '../config/sampling';
import { SAMPLERS, SPACINGS, SamplerName, SamplingStep, Spacing, generateAsync, noiseAndDenoise } from '../diffusion/sampler';
import { OptionError, UserError } from '../errors';
import { colourBytes, gridPixels, toByte } from '../io/grid';
import { ClassifierFree } from '../models/classifierFree';
import { imageSize } from '../models/denoiser';
import { DrawPlan, Pipeline, classGuidance, drawPlan } from '../pipeline/draw';
import type { Progress } from '../progress';
import { Rng } from '../rng';

export type { SamplerName, Spacing, SamplingStep } from '../diffusion/sampler';
export type { RunRecord } from '../config/runRecord';

/** What `sample` takes; every field is optional, defaulting as `diffuse sample` does. */
export interface SampleOptions {
  /** Images to draw (64). */
  n?: number;
  /** The starting noise's seed (0): the same seed and options give the same images as `diffuse sample`. */
  seed?: number;
  /** ancestral, ddim, dpmpp-2m or dpmpp-3m (the checkpoint's; ddim where only steps or eta are given to an ancestral one). */
  sampler?: SamplerName;
  /** Model calls of a few-step sampler (the checkpoint's, else the sampler's usual count). */
  steps?: number;
  /** DDIM's noise, 0 (deterministic) to 1. */
  eta?: number;
  /** Where DPM-Solver++ calls the model. */
  spacing?: Spacing;
  /** Clamp the predicted clean image at every step (as the checkpoint's recipe says). */
  clipDenoised?: boolean;
  /** A conditional model's classes: a name or index, a list of them, or 'all'; the images are divided among them in order. */
  class?: string | number | readonly (string | number)[];
  /** With `class`: this many of each class, one row per class (replaces n). */
  perClass?: number;
  /** Classifier-free guidance's weight with `class` (2; 1 is plain conditional sampling). */
  cfg?: number;
  /** Images denoised together (256). */
  batchSize?: number;
  /** Called before each batch's first step and after every step; sampling waits for a promise it returns. */
  onStep?: (step: SamplingStep) => void | Promise<void>;
  /** A progress bar on stderr (Node only; off by default). */
  progress?: boolean;
}

/** What `denoise` takes: one image, noised to timestep t and brought back with DDIM (the blog post's opening experiment). */
export interface DenoiseOptions {
  /** The image, height·width·channels values in [−1, 1], row-major (Images.data of one image, or readImage's). */
  image: Float32Array;
  /** The timestep to noise to, 0..T−1. */
  t: number;
  /** DDIM steps back (50; at most t + 1). */
  steps?: number;
  /** DDIM's noise (0, deterministic). */
  eta?: number;
  /** The added noise's seed (0). */
  seed?: number;
  /** A conditional model: denoise as this class (name or index), with classifier-free guidance. */
  class?: string | number;
  cfg?: number;
}

/** The sampler settings a draw used (the checkpoint's where not given). */
export type DrawSettings = DrawPlan['settings'];

/** n images of height × width × channels, values in [−1, 1] (not clamped), image after image, row-major (HWC). */
export class Images {
  constructor(
    readonly data: Float32Array,
    readonly count: number,
    readonly height: number,
    readonly width: number,
    readonly channels: number,
    /** One row per class (sample's perClass): this many across; else a square-ish grid. */
    readonly columns?: number,
    /** Each image's class name, where classes were drawn. */
    readonly labels?: readonly string[],
    /** The sampler settings that drew them. */
    readonly settings?: DrawSettings,
  ) {}

  get shape(): [number, number, number, number] {
    return [this.count, this.height, this.width, this.channels];
  }

  /** Image i as bytes (0..255, height·width·channels). */
  pixels(i: number): Uint8Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new OptionError('index', `${i}: there are ${this.count} images`);
    const size = this.height * this.width * this.channels;
    return Uint8Array.from(this.data.subarray(i * size, (i + 1) * size), toByte);
  }

  /** All images in one grid as `diffuse sample` writes it: a 2-px grey gap, square-ish or `columns` wide. */
  toGrid(columns = this.columns): { pixels: Uint8Array; width: number; height: number; channels: number } {
    const grid = gridPixels(this.data, this.count, this.height, this.width, this.channels, columns);
    return { ...grid, channels: this.channels };
  }

  /** The grid as opaque RGBA bytes, as a canvas's ImageData holds them. */
  toRGBA(columns = this.columns): { data: Uint8ClampedArray<ArrayBuffer>; width: number; height: number } {
    const grid = this.toGrid(columns);
    const rgba = colourBytes(grid.pixels, grid.channels, 4);
    return { data: new Uint8ClampedArray(rgba.buffer as ArrayBuffer, rgba.byteOffset, rgba.length), width: grid.width, height: grid.height };
  }
}

/** Makes the Images a loader hands out (Node's can encode PNGs). */
export type ImagesFactory<I extends Images> = (...args: ConstructorParameters<typeof Images>) => I;

/** A loaded model: `sample`, `denoise`, then `dispose` (its tensors and threads). */
export class DiffusionModel<I extends Images = Images> {
  private disposed = false;

  constructor(
    private readonly pipeline: Pipeline,
    private readonly makeImages: ImagesFactory<I>,
    private readonly progressBar?: () => Progress,
  ) {}

  /** The run record: model, data (with class names), schedule, training and recorded sampler. */
  get record(): RunRecord {
    return this.pipeline.record;
  }

  /** Whether the weights are the run's moving average (what sampling uses where the run kept one). */
  get averaged(): boolean {
    return this.pipeline.averaged;
  }

  /** A conditional model's class names (empty for an unconditional one). */
  get classes(): readonly string[] {
    return this.pipeline.record.model.classes > 0 ? this.pipeline.record.data.classes : [];
  }

  /** Autoguidance's weight where a guide guides the model. */
  get guidance(): number | undefined {
    return this.pipeline.guide?.weight;
  }

  /** The class indices `spec` names as `class` takes it: 'all', or names or indices separated by commas. */
  classIndices(spec: string): number[] {
    return parseClasses(this.pipeline.record, spec);
  }

  /** Draws images as `diffuse sample` does with the same options. */
  async sample(options: SampleOptions = {}): Promise<I> {
    const plan = drawPlan(this.open(), checkedInteger('n', options.n ?? DEFAULTS.sampling.n, 1), this.choices(options));
    const images = await generateAsync(plan.model, this.pipeline.scheduler, plan.options, options.onStep);
    const { height, imageWidth, channels } = this.pipeline.record.model;
    const names = plan.labels ? Array.from(plan.labels, (c) => this.pipeline.record.data.classes[c]) : undefined;
    return this.makeImages(images, plan.n, height, imageWidth, channels, plan.columns, names, plan.settings);
  }

  /** Noises one image to timestep t and runs the reverse process back with DDIM (`diffuse denoise`). */
  async denoise(options: DenoiseOptions): Promise<{ noisy: I; denoised: I }> {
    const pipeline = this.open();
    const { record, scheduler } = pipeline;
    const { height, imageWidth, channels } = record.model;
    const size = imageSize(record.model);
    if (!(options?.image instanceof Float32Array) || options.image.length !== size)
      throw new OptionError('image', `expects ${height}x${imageWidth}x${channels} = ${size} values in [-1, 1] (a Float32Array), got ${options?.image instanceof Float32Array ? options.image.length : typeof options?.image}`);
    const T = scheduler.timesteps;
    const t = checkedInteger('t', options.t, 0);
    if (t > T - 1) throw new OptionError('t', `${t}: the checkpoint's process has timesteps 0..${T - 1}`);
    const guidance = classGuidance(record, { classes: options.class === undefined ? undefined : String(options.class), cfg: options.cfg });
    if (guidance && guidance.classes.length !== 1) throw new OptionError('class', `${options.class}: denoise takes one class`);
    const model = guidance ? new ClassifierFree(pipeline.model, guidance.weight) : pipeline.model;
    const { noisy, denoised } = noiseAndDenoise(model, scheduler, options.image, 1, t, {
      rng: new Rng(checkedInteger('seed', options.seed ?? 0, 0)),
      eta: checkedUnit('eta', options.eta ?? 0),
      steps: checkedInteger('steps', options.steps ?? 50, 1),
      labels: guidance ? Float32Array.of(guidance.classes[0]) : undefined,
    });
    const one = (x: Float32Array) => this.makeImages(x, 1, height, imageWidth, channels);
    return { noisy: one(noisy), denoised: one(denoised) };
  }

  /** Frees the model's tensors and ends its threads; the model cannot be used after. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pipeline.model.dispose();
  }

  private open(): Pipeline {
    if (this.disposed) throw new UserError('the model was disposed');
    return this.pipeline;
  }

  /** The API's options as the command line's choices, each checked as its flag is. */
  private choices(o: SampleOptions): SamplerChoices {
    if (o.sampler !== undefined && !SAMPLERS.includes(o.sampler)) throw new OptionError('sampler', `${o.sampler}: one of ${SAMPLERS.join(', ')}`);
    if (o.spacing !== undefined && !SPACINGS.includes(o.spacing)) throw new OptionError('spacing', `${o.spacing}: one of ${SPACINGS.join(', ')}`);
    if (o.onStep !== undefined && typeof o.onStep !== 'function') throw new OptionError('onStep', 'must be a function');
    const classes = o.class === undefined ? undefined : Array.isArray(o.class) ? o.class.join(',') : String(o.class);
    return {
      seed: checkedInteger('seed', o.seed ?? 0, 0),
      batchSize: checkedInteger('batchSize', o.batchSize ?? DEFAULTS.sampling.batchSize, 1),
      sampler: o.sampler,
      steps: o.steps === undefined ? undefined : checkedInteger('steps', o.steps, 1),
      eta: o.eta === undefined ? undefined : checkedUnit('eta', o.eta),
      spacing: o.spacing,
      clipDenoised: o.clipDenoised,
      classes,
      perClass: o.perClass === undefined ? undefined : checkedInteger('perClass', o.perClass, 1),
      cfg: o.cfg === undefined ? undefined : checkedNumber('cfg', o.cfg),
      progress: o.progress && this.progressBar ? this.progressBar() : undefined,
    };
  }
}

function checkedInteger(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new OptionError(name, `${String(value)}: expected an integer of at least ${min}`);
  return value;
}

function checkedNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new OptionError(name, `${String(value)}: expected a number of at least 0`);
  return value;
}

function checkedUnit(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw new OptionError(name, `${String(value)}: expected a number in [0, 1]`);
  return value;
}
