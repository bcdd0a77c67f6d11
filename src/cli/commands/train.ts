/** `diffuse train`: options → one resolved run (src/config/resolve.ts) → the training loop. */
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { DEFAULTS, RECIPE_NAMES, RecipeName, recipeDefaultText as recipeDefault, unetDefaultText } from '../../config/defaults';
import { TrainChoices, resolveRun } from '../../config/resolve';
import { loadCheckpointRecord } from '../../io/checkpoint';
import { UserError } from '../../errors';
import { parseColour } from '../../data/folder';
import { PREDICTIONS } from '../../diffusion/schedule';
import { NOISE_LEVELS, WEIGHTINGS } from '../../diffusion/weighting';
import { LR_SCHEDULES } from '../../optim/lrSchedule';
import { CheckpointExistsError, EVAL_SAMPLES, RunStart, checkScorable, runTraining } from '../../training/loop';
import { EXIT, backendOption, fcWidth, fieldOf, integer, integerList, positiveNumber, unitInterval } from '../options';

/** Options that steer the run rather than describe it (not in the run record). */
const CONTROLS = new Set(['epochs', 'recipe', 'out', 'resume', 'overwrite', 'sampleEvery', 'keepEvery', 'logEvery', 'evalEvery', 'backend', 'workers']);

function channelCount(value: string): 1 | 3 {
  if (value !== '1' && value !== '3') throw new InvalidArgumentError('expected 1 or 3.');
  return Number(value) as 1 | 3;
}

function colour(value: string): string {
  const c = parseColour(value);
  if (!c) throw new InvalidArgumentError('expected #rrggbb, #rgb, white, black or grey.');
  return c;
}

export function trainCommand(log: (m: string) => void): Command {
  return new Command('train')
    .description('train a DDPM (the fully connected U-net on MNIST, or a convolutional U-net) with a checkpoint after every epoch, and its history (history.csv) and report (report.html) in --out')
    .option('--epochs <n>', 'total epochs to train (with --resume: the total to reach)', integer(1), DEFAULTS.epochs)
    .addOption(new Option('--recipe <name>', "training recipe: default (better samples per minute) or seed (the blog post's exact one); the options below override its parts").choices(RECIPE_NAMES).default('default'))
    .option('--batch-size <n>', `images per optimizer step ${recipeDefault('batchSize')}`, integer(1))
    .option('--lr <rate>', `Adam's (peak) learning rate ${recipeDefault('lr')}`, positiveNumber)
    .addOption(new Option('--lr-schedule <kind>', `learning rate over the run: constant, or cosine decay to 0 at --epochs ${recipeDefault('lrSchedule')}`).choices(LR_SCHEDULES))
    .option('--warmup <steps>', `updates of linear learning-rate warm-up ${recipeDefault('warmupSteps')}`, integer(0, 'a non-negative integer'))
    .option('--ema <decay>', `keep a moving average of the weights with this decay and sample from it; 0 = none ${recipeDefault('ema')}`, unitInterval())
    .addOption(new Option('--prediction <kind>', `what the model learns to predict: epsilon (the noise, as Ho et al.) or v (the velocity √ᾱ·ε − √(1 − ᾱ)·x0, Salimans & Ho) ${recipeDefault('prediction')}`).choices(PREDICTIONS))
    .addOption(new Option('--weighting <kind>', `how much each timestep's error counts: uniform (Ho et al.) or min-snr (min(SNR, ${DEFAULTS.weighting.minSnrGamma}), Hang et al.) ${recipeDefault('weighting')}`).choices(WEIGHTINGS))
    .addOption(new Option('--levels <kind>', `which timesteps training draws: uniform, or log-normal (EDM's ln σ ~ N(${DEFAULTS.weighting.logNormalMean}, ${DEFAULTS.weighting.logNormalStd}²), Karras et al.) ${recipeDefault('levels')}`).choices(NOISE_LEVELS))
    .addOption(new Option('--model <kind>', `denoiser: fc (the seed's fully connected U-net) or unet (convolutional, with attention) (default: ${DEFAULTS.model})`).choices(['fc', 'unet']))
    .option('--data <name>', `training images: mnist, mnist32 (MNIST padded to 32 px) or a folder of PNG/JPEG/WebP/SVG files (default: ${DEFAULTS.data.fc} for fc, ${DEFAULTS.data.unet} for unet)`)
    .option('--image-size <px>', `side a folder's images are resized and centre-cropped to (default: ${DEFAULTS.folder.imageSize})`, integer(8))
    .addOption(new Option('--channels <n>', `a folder's images as RGB (3) or grayscale (1) (default: ${DEFAULTS.folder.channels})`).argParser(channelCount))
    .option('--background <colour>', `the colour a folder's transparent pixels are composited onto: #rrggbb, #rgb, white, black or grey (default: ${DEFAULTS.folder.background})`, colour)
    .option('--flip', 'mirror each training image left-right with probability 1/2 (for data that is symmetric so; default: off)')
    .option('--no-flip', 'do not mirror (on --resume: turn mirroring off)')
    .option('--conditional', "train on the data's labels, to sample by class (sample --class): MNIST's digits, or a folder's first-level subfolders as classes (default: off)")
    .option('--label-dropout <p>', `with --conditional: the chance of training an image as "no class", so one model is also unconditional, for classifier-free guidance (default: ${DEFAULTS.labelDropout})`, unitInterval())
    .option('--width <w>', `fc: U-net width w (layers w, w/2, w/4); a multiple of 4 (default: ${DEFAULTS.width})`, fcWidth)
    .option('--base-channels <n>', `unet: channels of the first stage (default: ${unetDefaultText('baseChannels')})`, integer(2))
    .option('--channel-mults <list>', `unet: channel multiplier per stage, e.g. 1,2,4 (default: ${unetDefaultText('channelMults')})`, (v: string) => integerList(v))
    .option('--patch-size <p>', `unet: fold p x p pixel patches into channels before the first convolution (default: ${unetDefaultText('patchSize')})`, integer(1))
    .option('--blocks <n>', `unet: residual blocks per stage (default: ${unetDefaultText('blocksPerStage')})`, integer(1))
    .option('--attention <list>', `unet: feature-map sides (px, after patches and halvings) with self-attention, e.g. 8 or 16,8 (default: ${unetDefaultText('attentionResolutions')})`, (v: string) => integerList(v))
    .option('--timesteps <T>', `diffusion steps T, linear beta ${DEFAULTS.schedule.betaStart}..${DEFAULTS.schedule.betaEnd} (default: ${DEFAULTS.schedule.timesteps})`, integer(2))
    .option('--limit <n>', `train on the first n images (0 = all) (default: ${DEFAULTS.limit})`, integer(0, 'a non-negative integer'))
    .option('--seed <s>', `random seed: weights, shuffling, timesteps, noise (default: ${DEFAULTS.seed})`, integer(0, 'a non-negative integer'))
    .option('--out <dir>', 'run folder: checkpoint, lock, kept copies and grids', 'checkpoints')
    .option('--resume', 'continue the checkpoint in --out up to --epochs', false)
    .option('--overwrite', 'start afresh even if --out already holds a checkpoint', false)
    .option('--sample-every <k>', 'write a 64-image grid into --out every k epochs (0 = never)', integer(0, 'a non-negative integer'), 0)
    .option('--keep-every <k>', 'also keep a copy of the checkpoint in --out/epoch-NNNN every k epochs (0 = never)', integer(0, 'a non-negative integer'), 0)
    .option('--log-every <n>', 'add the mean loss of every n updates to --out/history.csv and the report (0 = per epoch only)', integer(0, 'a non-negative integer'), 50)
    .option('--eval-every <k>', `score ${EVAL_SAMPLES} samples with the digit classifier every k epochs and at the end (FD, KID, confidence, coverage in the history and report; MNIST runs; 0 = never)`, integer(0, 'a non-negative integer'), 0)
    .addOption(backendOption())
    .option('--workers <n>', 'threads that each compute the gradient of a share of every batch, on the blas backend (default: the number of cores for unet, 1 for fc)', integer(1))
    .addHelpText('after', '\nExamples:\n  $ diffuse train --epochs 1000\n  $ diffuse train --epochs 3 --width 1024 --out runs/small --sample-every 1\n  $ diffuse train --epochs 20 --out runs/small --resume')
    .action(async (opts, cmd: Command) => {
      const given: Partial<TrainChoices> = {};
      for (const key of Object.keys(opts)) {
        if (cmd.getOptionValueSource(key) === 'cli' && !CONTROLS.has(key)) (given as Record<string, unknown>)[fieldOf(key)] = opts[key];
      }
      if (opts.resume && opts.overwrite) throw new UserError('--resume and --overwrite contradict each other');
      if (opts.resume && cmd.getOptionValueSource('recipe') === 'cli') throw new UserError('--recipe chooses how a new run starts; on --resume give the options to change instead');
      // A new run's configuration is complete (and checked) before the backend starts or data loads.
      const record = resolveRun({ recipe: opts.recipe as RecipeName, given }, opts.resume ? loadCheckpointRecord(opts.out) : null);
      if (opts.evalEvery > 0) checkScorable(record);
      const start: RunStart = { record, resume: opts.resume, overwrite: opts.overwrite };
      const backend = await selectBackend(opts.backend as BackendChoice);
      if (opts.workers > 1 && backend.name !== 'blas') throw new UserError(`--workers ${opts.workers} needs the blas backend (this run has ${backend.name})`);
      let stopRequested = false;
      // Ctrl-C, or a SIGTERM from a process manager: finish the step and save.
      const onSignal = () => {
        if (stopRequested) process.exit(EXIT.interrupted); // a second one does not wait
        stopRequested = true;
        log('\nstopping after this step (Ctrl-C again to quit at once)');
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const result = await runTraining(
          { start, out: opts.out, epochs: opts.epochs, sampleEvery: opts.sampleEvery, keepEvery: opts.keepEvery, logEvery: opts.logEvery, evalEvery: opts.evalEvery, workers: opts.workers },
          { log, shouldStop: () => stopRequested },
        ).catch((e: unknown) => {
          if (e instanceof CheckpointExistsError) throw new UserError(`${e.message}; pass --resume to continue it, --overwrite to start afresh, or choose another --out`);
          throw e;
        });
        log(`${result.interrupted ? 'interrupted; ' : ''}checkpoint (epoch ${result.epoch}) in ${path.resolve(opts.out)}${result.interrupted ? ' (--resume continues it)' : ''}`);
        if (result.interrupted) process.exitCode = EXIT.stopped;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
