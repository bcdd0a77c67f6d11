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
import { Denoiser, imageSize } from '../models/denoiser';
import { ddimDecode, ddimInvert, repaint, sdEdit, slerp } from '../diffusion/editing';
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

/** What the image editors share: a conditional model's class (name or index) and guidance, the DDIM steps, the seed. */
export interface EditCommon {
  /** A conditional model: work as this class, with classifier-free guidance (default: unconditional). */
  class?: string | number;
  cfg?: number;
  /** DDIM steps (50). */
  steps?: number;
  /** Seed of the noise drawn (0). */
  seed?: number;
}

/** `invert`: one image (height·width·channels values in [−1, 1]) to the noise DDIM draws it from. */
export interface InvertOptions extends EditCommon {
  image: Float32Array;
  /** Fixed-point refinements of each step (2; 0 is plain DDIM inversion): each a model call more, each far closer. */
  refine?: number;
}

/** `interpolate`: n images between two noises (from `invert`, or drawn by `noise(seed)`), spherically. */
export interface InterpolateOptions extends EditCommon {
  from: Float32Array;
  to: Float32Array;
  /** Images along the way, both ends included (8). */
  n?: number;
}

/** `edit` (SDEdit): the image noised to strength·T and sampled back, n times. */
export interface EditOptions extends EditCommon {
  image: Float32Array;
  /** 0 returns the image, 1 draws afresh. */
  strength: number;
  n?: number;
  /** DDIM's noise on the way back (1). */
  eta?: number;
}

/** `inpaint` (RePaint): the masked pixels regenerated to fit the rest, n times. */
export interface InpaintOptions extends EditCommon {
  image: Float32Array;
  /** One value per pixel (height·width): 1 where to regenerate, 0 to keep. */
  mask: Float32Array;
  n?: number;
  /** RePaint's jump length and resampling count (DEFAULTS.editing). */
  jump?: number;
  resample?: number;
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
    const image = this.checkedImage(options?.image);
    const T = this.pipeline.scheduler.timesteps;
    const t = checkedInteger('t', options.t, 0);
    if (t > T - 1) throw new OptionError('t', `${t}: the checkpoint's process has timesteps 0..${T - 1}`);
    const { model, labels } = this.guided(options, 1, 'denoise');
    const { noisy, denoised } = noiseAndDenoise(model, this.pipeline.scheduler, image, 1, t, {
      rng: new Rng(checkedInteger('seed', options.seed ?? 0, 0)),
      eta: checkedUnit('eta', options.eta ?? 0),
      steps: checkedInteger('steps', options.steps ?? 50, 1),
      labels,
    });
    return { noisy: this.imagesOf(noisy, 1), denoised: this.imagesOf(denoised, 1) };
  }

  /** The noise from which `steps` deterministic DDIM steps draw the image, with that reconstruction and its mean error in grey levels (0..255). */
  async invert(options: InvertOptions): Promise<{ noise: Float32Array; reconstruction: I; error: number }> {
    const image = this.checkedImage(options?.image);
    const { model, labels } = this.guided(options, 1, 'invert');
    const steps = checkedInteger('steps', options.steps ?? DEFAULTS.editing.steps, 1);
    this.checkSteps(steps);
    const refine = checkedInteger('refine', options.refine ?? DEFAULTS.editing.refine, 0);
    const noise = ddimInvert(model, this.pipeline.scheduler, image, 1, steps, labels, refine);
    const back = ddimDecode(model, this.pipeline.scheduler, noise, 1, steps, labels);
    let error = 0;
    for (let i = 0; i < image.length; i++) error += Math.abs(toByte(back[i]) - toByte(image[i]));
    return { noise, reconstruction: this.imagesOf(back, 1), error: error / image.length };
  }

  /** Seeded Gaussian noise of one image's size: a starting point for `decode` and `interpolate`. */
  noise(seed = 0): Float32Array {
    return new Rng(checkedInteger('seed', seed, 0)).fillNormal(new Float32Array(imageSize(this.pipeline.record.model)));
  }

  /** The image `steps` deterministic DDIM steps draw from a noise (`invert`'s inverse). */
  async decode(options: EditCommon & { noise: Float32Array }): Promise<I> {
    const noise = this.checkedImage(options?.noise, 'noise');
    const { model, labels } = this.guided(options, 1, 'decode');
    const steps = checkedInteger('steps', options.steps ?? DEFAULTS.editing.steps, 1);
    this.checkSteps(steps);
    return this.imagesOf(ddimDecode(model, this.pipeline.scheduler, noise, 1, steps, labels), 1);
  }

  /** n images decoded from noises spherically between `from` and `to` (the ends are theirs exactly). */
  async interpolate(options: InterpolateOptions): Promise<I> {
    const from = this.checkedImage(options?.from, 'from'), to = this.checkedImage(options?.to, 'to');
    const n = checkedInteger('n', options.n ?? 8, 2);
    const { model, labels } = this.guided(options, n, 'interpolate');
    const steps = checkedInteger('steps', options.steps ?? DEFAULTS.editing.steps, 1);
    this.checkSteps(steps);
    const noises = new Float32Array(n * from.length);
    for (let i = 0; i < n; i++) noises.set(slerp(from, to, i / (n - 1)), i * from.length);
    return this.imagesOf(this.batched(n, from.length, (first, batch) => ddimDecode(model, this.pipeline.scheduler, noises.subarray(first * from.length, (first + batch) * from.length), batch, steps, labels?.subarray(first, first + batch))), n);
  }

  /** SDEdit: the image noised to timestep strength·T and sampled back (n times, one noise each). */
  async edit(options: EditOptions): Promise<I> {
    const image = this.checkedImage(options?.image);
    const strength = checkedUnit('strength', options.strength);
    const n = checkedInteger('n', options.n ?? 1, 1);
    const { model, labels } = this.guided(options, n, 'edit');
    const steps = checkedInteger('steps', options.steps ?? DEFAULTS.editing.steps, 1);
    const eta = checkedUnit('eta', options.eta ?? DEFAULTS.sampling.eta);
    const rng = new Rng(checkedInteger('seed', options.seed ?? 0, 0));
    return this.imagesOf(this.batched(n, image.length, (first, batch) => sdEdit(model, this.pipeline.scheduler, repeat(image, batch), batch, strength, { rng, steps, eta, labels: labels?.subarray(first, first + batch) })), n);
  }

  /** RePaint: the pixels where mask is 1 regenerated to fit the rest (n times); the others are the image's exactly. */
  async inpaint(options: InpaintOptions): Promise<I> {
    const image = this.checkedImage(options?.image);
    const { height, imageWidth } = this.pipeline.record.model;
    const mask = options.mask;
    if (!(mask instanceof Float32Array) || mask.length !== height * imageWidth) throw new OptionError('mask', `expects ${height}x${imageWidth} = ${height * imageWidth} values (1 to regenerate, 0 to keep), got ${mask instanceof Float32Array ? mask.length : typeof mask}`);
    if (!mask.some((v) => v > 0.5)) throw new OptionError('mask', 'marks no pixel to regenerate (1 where to regenerate)');
    const n = checkedInteger('n', options.n ?? 1, 1);
    const { model, labels } = this.guided(options, n, 'inpaint');
    const steps = checkedInteger('steps', options.steps ?? DEFAULTS.editing.steps, 1);
    this.checkSteps(steps);
    const jump = checkedInteger('jump', options.jump ?? DEFAULTS.editing.jump, 1);
    const resample = checkedInteger('resample', options.resample ?? DEFAULTS.editing.resample, 1);
    const rng = new Rng(checkedInteger('seed', options.seed ?? 0, 0));
    return this.imagesOf(this.batched(n, image.length, (first, batch) => repaint(model, this.pipeline.scheduler, repeat(image, batch), mask, batch, { rng, steps, jump, resample, labels: labels?.subarray(first, first + batch) })), n);
  }

  /** Frees the model's tensors and ends its threads; the model cannot be used after. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pipeline.model.dispose();
  }

  private checkedImage(image: unknown, name = 'image'): Float32Array {
    const { height, imageWidth, channels } = this.open().record.model;
    const size = imageSize(this.pipeline.record.model);
    if (!(image instanceof Float32Array) || image.length !== size)
      throw new OptionError(name, `expects ${height}x${imageWidth}x${channels} = ${size} values in [-1, 1] (a Float32Array), got ${image instanceof Float32Array ? image.length : typeof image}`);
    return image;
  }

  private checkSteps(steps: number): void {
    const T = this.pipeline.scheduler.timesteps;
    if (steps > T) throw new OptionError('steps', `${steps}: the checkpoint's process has ${T} timesteps`);
  }

  /** The model to call for `options.class` (classifier-free guided) and n labels, or the model alone. */
  private guided(options: { class?: string | number; cfg?: number }, n: number, what: string): { model: Denoiser; labels?: Float32Array } {
    const pipeline = this.open();
    const guidance = classGuidance(pipeline.record, { classes: options.class === undefined ? undefined : String(options.class), cfg: options.cfg });
    if (!guidance) return { model: pipeline.model };
    if (guidance.classes.length !== 1) throw new OptionError('class', `${options.class}: ${what} takes one class`);
    return { model: new ClassifierFree(pipeline.model, guidance.weight), labels: new Float32Array(n).fill(guidance.classes[0]) };
  }

  /** n images of `size` values made `batchSize` (the sampler's) at a time. */
  private batched(n: number, size: number, make: (first: number, batch: number) => Float32Array): Float32Array {
    const out = new Float32Array(n * size);
    const step = DEFAULTS.sampling.batchSize;
    for (let first = 0; first < n; first += step) out.set(make(first, Math.min(step, n - first)), first * size);
    return out;
  }

  private imagesOf(data: Float32Array, n: number): I {
    const { height, imageWidth, channels } = this.pipeline.record.model;
    return this.makeImages(data, n, height, imageWidth, channels);
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

/**
 * A mask from an image's pixels, as `inpaint` takes one: it must be the model's size and grey (its `colours`
 * channels equal in every pixel), and mark something; a level of 128 or more regenerates. `name` prefixes
 * the messages (a file's name and a space, or nothing).
 */
export function maskFromPixels(pixels: ArrayLike<number>, image: { width: number; height: number; stride: number; colours: number }, model: { width: number; height: number }, name = ''): Float32Array {
  const { width, height, stride, colours } = image;
  if (width !== model.width || height !== model.height) throw new OptionError('mask', `${name}is ${width}x${height}; the model's images are ${model.width}x${model.height}`);
  const mask = new Float32Array(width * height);
  for (let p = 0; p < mask.length; p++) {
    const v = pixels[p * stride];
    for (let c = 1; c < colours; c++) if (pixels[p * stride + c] !== v) throw new OptionError('mask', `${name}is not grey (pixel ${p % width},${Math.floor(p / width)} has colour): white marks what to regenerate, black what to keep`);
    mask[p] = v >= 128 ? 1 : 0;
  }
  if (!mask.some((v) => v > 0)) throw new OptionError('mask', `${name}marks no pixel to regenerate (white marks what to regenerate)`);
  return mask;
}

/** `image` n times over. */
function repeat(image: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * image.length);
  for (let i = 0; i < n; i++) out.set(image, i * image.length);
  return out;
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
