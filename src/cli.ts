/** The `diffuse` command line: train, sample and evaluate. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { BACKENDS, BackendChoice, selectBackend } from './backend';
import { UserError, flagName } from './errors';
import { checkOutputFile, imageFormatOf } from './files';
import { gridLayout, quantize, writeImageGrid } from './image';
import { createProgress, samplingProgress } from './progress';
import { Rng } from './rng';
import { generate } from './sample';
import { DDPMScheduler, PREDICTIONS } from './schedule';
import { TrainOptions, loadModel, runTraining } from './train';
import { UnetConfig } from './models/denoiser';
import { CheckpointMeta } from './checkpoint';
import { cropImages } from './data/mnist';
import { LR_SCHEDULES } from './lrSchedule';
import { RECIPES, RECIPE_NAMES, RecipeName, UNET_DEFAULT, recipeFor } from './recipes';
import { getClassifier } from './eval/classifier';
import { floorScores, score, testReference } from './eval/evaluate';
import { readSamples } from './eval/sampleFiles';

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };

function integer(min: number, what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^[+-]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected ${what}.`);
    return n;
  };
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number.');
  return n;
}

function unitInterval(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError('expected a number in [0, 1).');
  return n;
}

function integerList(value: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < 1)) throw new InvalidArgumentError('expected positive integers separated by commas.');
  return parts.map(Number);
}

function fcWidth(value: string): number {
  const n = integer(4, 'an integer of at least 4')(value);
  if (n % 4 !== 0) throw new InvalidArgumentError('expected a multiple of 4 (the width is halved twice).');
  return n;
}

const backendOption = () =>
  new Option('--backend <name>', 'tfjs backend: tensorflow is the native binding (optional package)').choices(BACKENDS).default('auto');

// The checkpoint's recipe chooses; these override it.
const clipOption = () => new Option('--clip-denoised', 'clamp the predicted clean image to [-1, 1] at every step (default: as the checkpoint\'s recipe says)');
const noClipOption = () => new Option('--no-clip-denoised', 'do not clamp it');
const stepsOption = () =>
  new Option('--steps <K>', 'sample with K DDIM steps instead of all T ancestral ones (e.g. 100)').argParser(integer(1, 'an integer of at least 1'));
const etaOption = () => new Option('--eta <eta>', 'DDIM noise: 1 (the default with --steps) draws fresh noise at every step as the ancestral sampler does; 0 is deterministic').argParser(etaValue);

function etaValue(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('expected a number in [0, 1].');
  return n;
}

interface SamplerFlags {
  seed: number;
  batchSize: number;
  clipDenoised?: boolean;
  steps?: number;
  eta?: number;
}

/** n images from a checkpoint's model, sampled as the flags say, else as its recipe says. */
function sampleCheckpoint(dir: string, n: number, flags: SamplerFlags, check: (meta: CheckpointMeta) => void = () => {}) {
  const { model, meta, averaged } = loadModel(dir);
  try {
    check(meta);
    const T = meta.schedule.timesteps;
    if (flags.steps !== undefined && flags.steps > T) throw new UserError(`--steps ${flags.steps}: the checkpoint's process has ${T} timesteps`);
    const ddim = flags.steps !== undefined || flags.eta !== undefined;
    const images = generate(model, new DDPMScheduler(meta.schedule), {
      n,
      rng: new Rng(flags.seed),
      batchSize: flags.batchSize,
      progress: samplingProgress(),
      clipDenoised: flags.clipDenoised ?? meta.sampling?.clipDenoised ?? false,
      ...(ddim ? { steps: flags.steps ?? T, eta: flags.eta ?? 1 } : {}),
    });
    return { images, meta, averaged };
  } finally {
    model.dispose();
  }
}

/** The frame to crop from a checkpoint's images to get 28×28 MNIST digits (MNIST-32: 2 px); other data is refused. */
function mnistFrame(meta: CheckpointMeta): number {
  const { height, imageWidth } = meta.model;
  const channels = meta.model.channels ?? 1;
  if (meta.data.dataset === 'mnist' && height === 28 && imageWidth === 28 && channels === 1) return 0;
  if (meta.data.dataset === 'mnist32' && height === 32 && imageWidth === 32 && channels === 1) return 2;
  const source = meta.data.dataset === 'folder' ? meta.data.path : meta.data.dataset;
  throw new UserError(`evaluate scores MNIST digits; this checkpoint makes ${height}x${imageWidth}x${channels} images of ${source}`);
}

function log(message: string): void {
  process.stderr.write(message + '\n');
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('diffuse')
    .description('Train and sample denoising diffusion models (DDPM) on TensorFlow.js')
    .version(pkg.version)
    .option('--verbose', 'print stack traces on errors')
    .exitOverride() // main() sets the exit code: 2 for every usage error, as for other user errors
    .addHelpText('after', '\nExamples:\n  $ diffuse train --epochs 1000\n  $ diffuse sample --n 64 --out grid.png\n  $ diffuse evaluate --checkpoint checkpoints --n 1000');

  program
    .command('train')
    .description('train a DDPM (the fully connected U-net on MNIST, or a convolutional U-net) with a checkpoint after every epoch')
    .option('--epochs <n>', 'total epochs to train (with --resume: the total to reach)', integer(1, 'an integer of at least 1'), 1000)
    .addOption(new Option('--recipe <name>', 'training recipe: default (better samples per minute) or seed (the blog post\'s exact one); the options below override its parts').choices(RECIPE_NAMES).default('default'))
    .option('--batch-size <n>', `images per optimizer step (default recipe: ${RECIPES.default.batchSize}, ${UNET_DEFAULT.batchSize} for unet; seed: ${RECIPES.seed.batchSize})`, integer(1, 'an integer of at least 1'))
    .option('--lr <rate>', `Adam's (peak) learning rate (default recipe: ${RECIPES.default.lr}, seed: ${RECIPES.seed.lr})`, positiveNumber)
    .addOption(new Option('--lr-schedule <kind>', `learning rate over the run: constant, or cosine decay to 0 at --epochs (default recipe: ${RECIPES.default.lrSchedule}, seed: ${RECIPES.seed.lrSchedule})`).choices(LR_SCHEDULES))
    .option('--warmup <steps>', `updates of linear learning-rate warm-up (default recipe: ${RECIPES.default.warmupSteps}, seed: ${RECIPES.seed.warmupSteps})`, integer(0, 'a non-negative integer'))
    .addOption(new Option('--model <kind>', 'denoiser: fc (the seed\'s fully connected U-net) or unet (convolutional, with attention)').choices(['fc', 'unet']).default('fc'))
    .option('--data <name>', 'training images: mnist, mnist32 (MNIST padded to 32 px) or a folder of PNG/JPEG/WebP files (default: mnist for fc, mnist32 for unet)')
    .option('--image-size <px>', 'side a folder\'s images are resized and centre-cropped to', integer(8, 'an integer of at least 8'), 32)
    .addOption(new Option('--channels <n>', 'a folder\'s images as RGB (3) or grayscale (1)').choices(['1', '3']).default('3'))
    .option('--width <w>', 'fc: U-net width w (layers w, w/2, w/4); a multiple of 4', fcWidth, 2048)
    .option('--base-channels <n>', 'unet: channels of the first stage (default: 16)', integer(2, 'an integer of at least 2'))
    .option('--channel-mults <list>', 'unet: channel multiplier per stage, e.g. 1,2,4 (default: 1,2,4 up to 32 px, 1,2,2,4 above)', integerList)
    .option('--blocks <n>', 'unet: residual blocks per stage (default: 1)', integer(1, 'an integer of at least 1'))
    .option('--attention <list>', 'unet: resolutions (px) with self-attention, e.g. 8 or 16,8 (default: 8 up to 32 px, 16 above)', integerList)
    .addOption(new Option('--prediction <kind>', `what the model learns to predict: epsilon (the noise, as Ho et al.) or v (the velocity √ᾱ·ε − √(1 − ᾱ)·x0, Salimans & Ho) (default recipe: ${RECIPES.default.prediction}, ${UNET_DEFAULT.prediction} for unet; seed: ${RECIPES.seed.prediction})`).choices(PREDICTIONS))
    .option('--timesteps <T>', 'diffusion steps T (linear beta 1e-4..0.02)', integer(2, 'an integer of at least 2'), 1000)
    .option('--limit <n>', 'train on the first n MNIST images (0 = all 60000)', integer(0, 'a non-negative integer'), 0)
    .option('--seed <s>', 'random seed (weights, shuffling, timesteps, noise)', integer(0, 'a non-negative integer'), 0)
    .option('--out <dir>', 'checkpoint directory', 'checkpoints')
    .option('--resume', 'continue from the checkpoint in --out up to --epochs', false)
    .option('--overwrite', 'start afresh even if --out already holds a checkpoint', false)
    .option('--sample-every <k>', 'write a 64-image grid into --out every k epochs (0 = never)', integer(0, 'a non-negative integer'), 0)
    .option('--ema <decay>', `keep a moving average of the weights with this decay and sample from it; 0 = none (default recipe: ${RECIPES.default.ema}, ${UNET_DEFAULT.ema} for unet; seed: ${RECIPES.seed.ema})`, unitInterval)
    .option('--keep-every <k>', 'also keep a copy of the checkpoint in --out/epoch-NNNN every k epochs (0 = never)', integer(0, 'a non-negative integer'), 0)
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse train --epochs 1000\n  $ diffuse train --epochs 5 --limit 10000 --width 512 --out runs/small --sample-every 1\n  $ diffuse train --epochs 20 --out runs/small --resume')
    .action(async (opts, cmd: Command) => {
      const explicit = new Set(Object.keys(opts).filter((k) => cmd.getOptionValueSource(k) === 'cli'));
      if (opts.resume && opts.overwrite) throw new UserError('--resume and --overwrite contradict each other');
      if (opts.resume && explicit.has('recipe')) throw new UserError('--recipe chooses how a new run starts; on --resume give the options to change instead');
      const recipe = recipeFor(opts.recipe as RecipeName, opts.model);
      const unetOnly = ['baseChannels', 'channelMults', 'blocks', 'attention'].filter((k) => explicit.has(k));
      if (opts.model === 'fc' && unetOnly.length > 0) throw new UserError(`${flagName(unetOnly[0])} is an option of --model unet`);
      if (opts.model === 'unet' && explicit.has('width')) throw new UserError('--width is an option of --model fc (the U-net has --base-channels and --channel-mults)');
      await selectBackend(opts.backend as BackendChoice);
      let stopRequested = false;
      // Ctrl-C, or a SIGTERM from a process manager: finish the step and save.
      const onSignal = () => {
        if (stopRequested) process.exit(130); // a second one does not wait
        stopRequested = true;
        log('\nstopping after this step (Ctrl-C again to quit at once)');
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const unet: Partial<UnetConfig> = {};
        if (opts.baseChannels !== undefined) unet.baseChannels = opts.baseChannels;
        if (opts.channelMults !== undefined) unet.channelMults = opts.channelMults;
        if (opts.blocks !== undefined) unet.blocksPerStage = opts.blocks;
        if (opts.attention !== undefined) unet.attentionResolutions = opts.attention;
        const options: TrainOptions = {
          model: opts.model,
          data: opts.data ?? (opts.model === 'unet' ? 'mnist32' : 'mnist'),
          imageSize: opts.imageSize,
          channels: Number(opts.channels) as 1 | 3,
          unet,
          epochs: opts.epochs,
          batchSize: opts.batchSize ?? recipe.batchSize,
          lr: opts.lr ?? recipe.lr,
          lrSchedule: opts.lrSchedule ?? recipe.lrSchedule,
          warmupSteps: opts.warmup ?? recipe.warmupSteps,
          keepEvery: opts.keepEvery,
          clipDenoised: recipe.clipDenoised,
          prediction: opts.prediction ?? recipe.prediction,
          width: opts.width,
          timesteps: opts.timesteps,
          limit: opts.limit,
          seed: opts.seed,
          out: opts.out,
          resume: opts.resume,
          overwrite: opts.overwrite,
          sampleEvery: opts.sampleEvery,
          ema: opts.ema ?? recipe.ema,
          explicit: new Set([...explicit].map((k) => (k === 'warmup' ? 'warmupSteps' : k))),
        };
        const result = await runTraining(options, { log, shouldStop: () => stopRequested });
        log(`${result.interrupted ? 'interrupted; ' : ''}checkpoint (epoch ${result.epoch}) in ${path.resolve(opts.out)}`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });

  program
    .command('sample')
    .description('draw images from a trained checkpoint (all T ancestral steps, or K DDIM steps) and write a PNG grid')
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
    .option('--n <count>', 'number of images', integer(1, 'an integer of at least 1'), 64)
    .option('--out <file>', 'image file to write: .png, .jpg or .webp (lossless)', 'grid.png')
    .option('--seed <s>', 'random seed of the starting noise', integer(0, 'a non-negative integer'), 0)
    .option('--batch-size <n>', 'images denoised together', integer(1, 'an integer of at least 1'), 256)
    .addOption(clipOption())
    .addOption(noClipOption())
    .addOption(stepsOption())
    .addOption(etaOption())
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse sample --n 64 --out grid.png\n  $ diffuse sample --checkpoint runs/small --n 16 --seed 7 --out small.png\n  $ diffuse sample --n 64 --steps 50 --out fast.png')
    .action(async (opts) => {
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      await selectBackend(opts.backend as BackendChoice);
      const { images, meta, averaged } = sampleCheckpoint(opts.checkpoint, opts.n, opts);
      const { width, height } = await writeImageGrid(opts.out, images, opts.n, meta.model.height, meta.model.imageWidth, meta.model.channels ?? 1);
      const { cols, rows } = gridLayout(opts.n);
      log(`wrote ${path.resolve(opts.out)} (${cols}x${rows} grid, ${width}x${height} px) from epoch ${meta.training.epoch}${averaged ? ' (averaged weights)' : ''}`);
    });

  program
    .command('evaluate')
    .description('score samples (from a checkpoint, a PNG grid or a .npy file) with the project\'s digit classifier: FD, confidence, coverage')
    .option('--checkpoint <dir>', 'checkpoint to sample from', 'checkpoints')
    .option('--samples <file>', 'score these instead: a PNG grid from `diffuse sample` or a .npy uint8 [n, 28, 28]')
    .option('--n <count>', 'images to generate, and real test images to compare with', integer(2, 'an integer of at least 2'), 1000)
    .option('--seed <s>', 'random seed of the starting noise', integer(0, 'a non-negative integer'), 0)
    .option('--batch-size <n>', 'images denoised together', integer(1, 'an integer of at least 1'), 250)
    .addOption(clipOption())
    .addOption(noClipOption())
    .addOption(stepsOption())
    .addOption(etaOption())
    .option('--json', 'print the figures as one JSON object', false)
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse evaluate --checkpoint runs/small --n 1000\n  $ diffuse evaluate --samples grid.png\n  $ diffuse evaluate --samples ref.npy --json')
    .action(async (opts) => {
      await selectBackend(opts.backend as BackendChoice);
      let images: Float32Array;
      let n: number;
      if (opts.samples) {
        ({ images, n } = await readSamples(opts.samples));
        if (n < 2) throw new UserError(`${opts.samples} holds ${n} image(s); at least 2 are needed for a covariance`);
      } else {
        n = opts.n;
        const { images: sampled, meta } = sampleCheckpoint(opts.checkpoint, n, opts, mnistFrame);
        const frame = mnistFrame(meta);
        images = quantize(frame ? cropImages(sampled, n, { height: meta.model.height, width: meta.model.imageWidth, channels: 1 }, frame) : sampled);
      }
      const classifier = getClassifier(undefined, createProgress('training the digit classifier (first use) |{bar}| {value}/{total} | ETA {eta_formatted}'));
      const reference = testReference(classifier, n);
      const samples = score(classifier, images, n, reference);
      const floor = floorScores(classifier, n, reference);
      const result = { samples, floor, classifierTestAccuracy: classifier.testAccuracy };
      classifier.dispose();
      if (opts.json) {
        process.stdout.write(JSON.stringify(result) + '\n');
        return;
      }
      const lines = (prefix: string, s: typeof samples) =>
        [`${prefix}fd ${s.fd.toFixed(3)}`, `${prefix}confidence ${s.confidence.toFixed(4)}`, `${prefix}coverage ${s.coverage.toFixed(4)}`, `${prefix}histogram ${s.histogram.join(',')}`];
      process.stdout.write([`n ${n}`, ...lines('', samples), ...lines('floor_', floor), `classifier_test_accuracy ${classifier.testAccuracy.toFixed(4)}`].join('\n') + '\n');
    });

  return program;
}

/** Exit codes: 0 done (also after Ctrl-C's save), 1 an internal error (a bug), 2 a usage or user error, 130 a second Ctrl-C. */
export const EXIT = { ok: 0, internal: 1, user: 2, interrupted: 130 } as const;

export async function main(argv = process.argv): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander has printed its one line (or the help, or the version)
      process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.user;
      return;
    }
    const { text, code } = errorReport(e, argv.includes('--verbose'));
    process.stderr.write(text);
    process.exitCode = code;
  }
}

/** What to print for an error that ended a command, and the exit code: a user error is one line; anything else is a bug. */
export function errorReport(e: unknown, verbose: boolean): { text: string; code: number } {
  const user = e instanceof UserError;
  const code = user ? EXIT.user : EXIT.internal;
  if (verbose && e instanceof Error) return { text: (e.stack ?? String(e)) + '\n', code };
  if (user) return { text: `diffuse: error: ${e.message}\n`, code };
  return { text: `diffuse: internal error: ${e instanceof Error ? e.message : String(e)} (a bug in diffuse; --verbose prints where)\n`, code };
}
