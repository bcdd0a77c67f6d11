/**
 * Editing given images with a trained model: `invert` (image → the noise DDIM draws it from),
 * `interpolate` (a strip between two images or seeds through their noises), `inpaint` (RePaint: masked
 * pixels regenerated to fit the rest) and `edit` (SDEdit: image-to-image at a strength). All are built
 * on the API's calls (src/api/model.ts).
 */
import * as path from 'node:path';
import { Command } from 'commander';
import { NodeModel, loadModel } from '../../api/node';
import { maskFromPixels } from '../../api/model';
import { imageSize } from '../../models/denoiser';
import { DEFAULTS } from '../../config/defaults';
import { OptionError } from '../../errors';
import { checkOutputFile, imageFormatOf, sharp } from '../../files';
import { writeImageGrid } from '../../io/images';
import { readNpyFloat32, writeNpy } from '../../io/npy';
import { notice } from '../../progress';
import { backendOption, integer, nonNegativeNumber, unitInterval } from '../options';
import { concatImages, imageInput, inputImage, mnistTestImage, requireImage } from '../inputs';

/** The halves --mask names instead of a file: which pixels (x, y of width × height) to regenerate. */
const HALVES: Record<string, (x: number, y: number, w: number, h: number) => boolean> = {
  top: (_, y, __, h) => y < h / 2,
  bottom: (_, y, __, h) => y >= h / 2,
  left: (x, _, w) => x < w / 2,
  right: (x, _, w) => x >= w / 2,
};

/**
 * --mask: top, bottom, left or right (that half regenerated), or a mask image at the model's size, grey
 * (white or any level ≥ 128: regenerate; darker: keep), as one value per pixel; refused when of another
 * size, in colour, or marking nothing.
 */
export async function readMask(file: string, model: NodeModel): Promise<Float32Array> {
  const { height, imageWidth } = model.record.model;
  const half = HALVES[file];
  if (half) return Float32Array.from({ length: height * imageWidth }, (_, p) => (half(p % imageWidth, Math.floor(p / imageWidth), imageWidth, height) ? 1 : 0));
  let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    raw = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new OptionError('mask', `${file}: cannot read it as an image (${(e as Error).message.split('\n')[0]})`);
  }
  const { width, height: h, channels } = raw.info;
  return maskFromPixels(raw.data, { width, height: h, stride: channels, colours: channels }, { width: imageWidth, height }, `${file} `);
}

/** A noise or an image for interpolate: seed:S, mnist:I, a .npy noise from invert, or an image file (inverted). */
async function endpoint(model: NodeModel, spec: string, flag: string, common: { steps: number; class?: string; cfg?: number }): Promise<{ noise: Float32Array; what: string }> {
  const seed = /^seed:(\d+)$/.exec(spec);
  if (seed) return { noise: model.noise(Number(seed[1])), what: spec };
  if (/\.npy$/i.test(spec)) {
    const { values } = readNpyFloat32(spec);
    const size = imageSize(model.record.model);
    if (values.length !== size) throw new OptionError(flag, `${spec} holds ${values.length} values; the model's noise has ${size}`);
    return { noise: values, what: spec };
  }
  const mnist = /^mnist:(\d+)$/.exec(spec);
  const image = mnist ? mnistTestImage(model, Number(mnist[1])) : await model.readImage(spec);
  const { noise, error } = await model.invert({ image, ...common });
  return { noise, what: `${spec} (inverted, reconstructed to ${error.toFixed(2)} grey levels)` };
}

const stepsOption = (what: string) => [`--steps <K>`, `DDIM steps ${what}`, integer(1), DEFAULTS.editing.steps] as const;

/** --strength: numbers in [0, 1] separated by commas. */
function strengths(value: string): number[] {
  const list = value.split(',').map((v) => v.trim());
  const parse = unitInterval(true);
  return list.map((v) => parse(v));
}

function common(command: Command, conditional = true): Command {
  command.option('--checkpoint <dir>', 'checkpoint directory (or a .safetensors file)', 'checkpoints');
  if (conditional) command.option('--class <name>', 'a conditional model: work as this class (name or index), with classifier-free guidance').option('--cfg <w>', `with --class: the guidance weight (default: ${DEFAULTS.sampling.cfg})`, nonNegativeNumber);
  return command.addOption(backendOption());
}

function classOf(opts: { class?: string; cfg?: number }) {
  return { ...(opts.class !== undefined ? { class: opts.class } : {}), ...(opts.cfg !== undefined ? { cfg: opts.cfg } : {}) };
}

async function withModel<T>(opts: { checkpoint: string; backend: string }, f: (model: NodeModel) => Promise<T>): Promise<T> {
  const model = await loadModel(opts.checkpoint, { backend: opts.backend as 'auto', onNotice: notice });
  try {
    return await f(model);
  } finally {
    model.dispose();
  }
}

export function invertCommand(log: (m: string) => void): Command {
  return imageInput(common(new Command('invert')))
    .description('DDIM inversion: find the noise from which K deterministic DDIM steps draw the image; writes it as .npy and reports the reconstruction error')
    .option(...stepsOption('up and back down'))
    .option('--refine <r>', `fixed-point refinements of each step up (0: plain DDIM inversion; default ${DEFAULTS.editing.refine})`, integer(0, 'a non-negative integer'), DEFAULTS.editing.refine)
    .option('--out <file>', 'the noise, float32 .npy [1, height, width, channels]', 'noise.npy')
    .option('--reconstruction <file>', 'also write the image | its reconstruction from the noise')
    .addHelpText('after', '\nExamples:\n  $ diffuse invert --checkpoint runs/unet32 --mnist-test 0 --steps 100 --out zero.npy\n  $ diffuse interpolate --checkpoint runs/unet32 --from zero.npy --to mnist:1 --out strip.png')
    .action(async (opts) => {
      requireImage('invert', opts);
      if (!/\.npy$/i.test(opts.out)) throw new OptionError('out', `${opts.out}: the noise is written as .npy`);
      checkOutputFile(opts.out);
      if (opts.reconstruction) {
        imageFormatOf(opts.reconstruction);
        checkOutputFile(opts.reconstruction);
      }
      await withModel(opts, async (model) => {
        const image = await inputImage(model, opts);
        const { noise, reconstruction, error } = await model.invert({ image, steps: opts.steps, refine: opts.refine, ...classOf(opts) });
        const { height, imageWidth, channels } = model.record.model;
        writeNpy(opts.out, noise, [1, height, imageWidth, channels]);
        if (opts.reconstruction) {
          await writeImageGrid(opts.reconstruction, concatImages([image, reconstruction.data]), 2, height, imageWidth, channels, 2);
        }
        log(`wrote ${path.resolve(opts.out)} (the noise; ${opts.steps} DDIM steps draw the image back to a mean error of ${error.toFixed(2)} grey levels of 255)`);
      });
    });
}

export function interpolateCommand(log: (m: string) => void): Command {
  return common(new Command('interpolate'))
    .description('a strip of images between two: each end an image (inverted to its noise), a noise from invert (.npy), or a seed; the noises interpolated spherically, each decoded with DDIM')
    .requiredOption('--from <spec>', 'an image file, mnist:I (a test digit), noise.npy, or seed:S')
    .requiredOption('--to <spec>', 'the other end, the same kinds')
    .option('--n <count>', 'images in the strip, both ends included', integer(2), 8)
    .option(...stepsOption('of inversion and of decoding'))
    .option('--out <file>', 'the strip', 'interpolation.png')
    .addHelpText('after', '\nExamples:\n  $ diffuse interpolate --checkpoint runs/unet32 --from mnist:0 --to mnist:1 --n 8 --out strip.png\n  $ diffuse interpolate --checkpoint runs/digits --from seed:1 --to seed:2 --class 7 --out sevens.png')
    .action(async (opts) => {
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      await withModel(opts, async (model) => {
        const shared = { steps: opts.steps, ...classOf(opts) };
        const from = await endpoint(model, opts.from, 'from', shared);
        const to = await endpoint(model, opts.to, 'to', shared);
        const images = await model.interpolate({ from: from.noise, to: to.noise, n: opts.n, ...shared });
        const { width, height } = await writeImageGrid(opts.out, images.data, images.count, images.height, images.width, images.channels, images.count);
        log(`wrote ${path.resolve(opts.out)} (${images.count} images from ${from.what} to ${to.what}, ${width}x${height} px)`);
      });
    });
}

export function inpaintCommand(log: (m: string) => void): Command {
  return imageInput(common(new Command('inpaint')))
    .description("RePaint: regenerate an image's masked pixels (white in --mask) to fit the rest; writes original | masked | the inpaintings")
    .requiredOption('--mask <file>', "a grey image of the model's size (white where to regenerate, black where to keep), or a half: top, bottom, left, right")
    .option('--n <count>', 'inpaintings, each from its own noise', integer(1), 4)
    .option(...stepsOption('down'))
    .option('--jump <j>', `RePaint: after every j steps down, go back up j steps and down again (default ${DEFAULTS.editing.jump})`, integer(1), DEFAULTS.editing.jump)
    .option('--resample <r>', `RePaint: go down each stretch of j steps r times (1: no resampling; default ${DEFAULTS.editing.resample})`, integer(1), DEFAULTS.editing.resample)
    .option('--seed <s>', 'random seed', integer(0, 'a non-negative integer'), 0)
    .option('--out <file>', 'image file to write', 'inpaint.png')
    .addHelpText('after', '\nExamples:\n  $ diffuse inpaint --checkpoint runs/unet32 --mnist-test 0 --mask bottom --out inpaint.png')
    .action(async (opts) => {
      requireImage('inpaint', opts);
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      await withModel(opts, async (model) => {
        const image = await inputImage(model, opts);
        const mask = await readMask(opts.mask, model);
        const images = await model.inpaint({ image, mask, n: opts.n, steps: opts.steps, jump: opts.jump, resample: opts.resample, seed: opts.seed, ...classOf(opts) });
        const channels = images.channels;
        const masked = image.map((v, i) => (mask[Math.floor(i / channels)] > 0.5 ? 0 : v)); // the regenerated part shown grey
        const { width, height } = await writeImageGrid(opts.out, concatImages([image, masked, images.data]), 2 + images.count, images.height, images.width, channels, 2 + images.count);
        log(`wrote ${path.resolve(opts.out)} (original | masked | ${images.count} inpaintings; ${opts.steps} steps, jump ${opts.jump}, resample ${opts.resample}; ${width}x${height} px)`);
      });
    });
}

export function editCommand(log: (m: string) => void): Command {
  return imageInput(common(new Command('edit')))
    .description('SDEdit, image-to-image: noise the image to t = strength·T and sample it back; writes original | the edits')
    .requiredOption('--strength <list>', '0 keeps the image, 1 draws afresh; around 0.5 keeps its layout and redraws its detail; several (0.3,0.5,0.7): a row each', strengths)
    .option('--n <count>', 'edits, each from its own noise', integer(1), 4)
    .option(...stepsOption('back (at most strength·T)'))
    .option('--eta <eta>', `DDIM noise on the way back (default ${DEFAULTS.sampling.eta})`, unitInterval(true), DEFAULTS.sampling.eta)
    .option('--seed <s>', 'random seed', integer(0, 'a non-negative integer'), 0)
    .option('--out <file>', 'image file to write', 'edit.png')
    .addHelpText('after', '\nExamples:\n  $ diffuse edit --checkpoint runs/unet32 --image sketch.png --strength 0.5 --out edits.png')
    .action(async (opts) => {
      requireImage('edit', opts);
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      await withModel(opts, async (model) => {
        const image = await inputImage(model, opts);
        const rows: Float32Array[] = [];
        for (const strength of opts.strength as number[]) {
          const images = await model.edit({ image, strength, n: opts.n, steps: opts.steps, eta: opts.eta, seed: opts.seed, ...classOf(opts) });
          rows.push(image, images.data);
        }
        const { height: h, imageWidth: w, channels } = model.record.model;
        const { width, height } = await writeImageGrid(opts.out, concatImages(rows), (1 + opts.n) * opts.strength.length, h, w, channels, 1 + opts.n);
        log(`wrote ${path.resolve(opts.out)} (original | ${opts.n} edits, a row for each strength: ${opts.strength.join(', ')}; ${width}x${height} px)`);
      });
    });
}
