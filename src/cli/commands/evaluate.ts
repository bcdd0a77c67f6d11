/** `diffuse evaluate`: FD, confidence and coverage of samples, judged by the project's digit classifier. */
import { Command } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { OptionError, UserError } from '../../errors';
import { getClassifier } from '../../eval/classifier';
import { asDigits, floorScores, mnistFrame, score, testReference } from '../../eval/evaluate';
import { readSamples } from '../../eval/sampleFiles';
import { Guide, checkGuide, guideFrom, sampleCheckpoint } from '../../pipeline';
import { createProgress, samplingProgress } from '../../progress';
import { backendOption, guidedBy, integer, samplerOptions } from '../options';
import { SamplerChoices, samplerSettings } from '../../config/sampling';
import { RunRecord } from '../../config/runRecord';
import { loadTrainingData } from '../../data/dataset';
import { scoreAgainstData, toUnit } from '../../eval/imageSet';
import { checkOutputFile, imageFormatOf } from '../../files';
import { writeImageGrid } from '../../io/images';
import { loadCheckpointRecord } from '../../io/checkpoint';

export function evaluateCommand(): Command {
  const command = new Command('evaluate')
    .description("score samples (from a checkpoint, a PNG grid or a .npy file) with the project's digit classifier: FD, KID, precision, recall, confidence, coverage; a model trained on a folder against its images: copies of training images, diversity, colour")
    .option('--checkpoint <dir>', 'checkpoint to sample from', 'checkpoints')
    .option('--samples <file>', 'score these instead: a PNG grid from `diffuse sample` or a .npy uint8 [n, 28, 28]')
    .option('--n <count>', 'images to generate, and real test images to compare with', integer(2), 1000)
    .option('--seed <s>', 'random seed of the starting noise', integer(0, 'a non-negative integer'), 0)
    .option('--batch-size <n>', 'images denoised together', integer(1), 250)
    .option('--data <dir>', "a folder model's training images to compare with (default: the folder it trained on, read as it was)")
    .option('--nearest <file>', 'folder models: also write the first 32 samples, each beside its nearest training image (.png, .jpg, .webp)');
  for (const o of samplerOptions()) command.addOption(o);
  return command
    .option('--json', 'print the figures as one JSON object', false)
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse evaluate --checkpoint runs/small --n 1000\n  $ diffuse evaluate --samples grid.png\n  $ diffuse evaluate --samples ref.npy --json')
    .action(async (opts) => {
      if (opts.nearest) {
        // The same checks as sample --out: a format diffuse writes, in a folder that takes files.
        imageFormatOf(opts.nearest);
        checkOutputFile(opts.nearest);
      }
      if (opts.samples && (opts.data || opts.nearest)) throw new UserError('--data and --nearest compare a checkpoint\'s samples with its training folder; --samples scores digits');
      await selectBackend(opts.backend as BackendChoice);
      if (!opts.samples) {
        const record = loadCheckpointRecord(opts.checkpoint);
        if (record.data.dataset === 'folder') return evaluateFolderModel(opts, record);
      }
      if (opts.data || opts.nearest) throw new UserError('--data and --nearest are for models trained on a folder of images; this checkpoint trained on MNIST');
      let images: Float32Array;
      let n: number;
      let sampling: SamplingRecord | null = null;
      if (opts.samples) {
        ({ images, n } = await readSamples(opts.samples));
        if (n < 2) throw new UserError(`${opts.samples} holds ${n} image(s); at least 2 are needed for a covariance`);
      } else {
        n = opts.n;
        const started = Date.now();
        const { images: sampled, record, settings } = sampleCheckpoint(opts.checkpoint, n, { ...opts, progress: samplingProgress() }, mnistFrame);
        sampling = samplingRecord(settings, (Date.now() - started) / 1000);
        images = asDigits(record, sampled, n);
      }
      const classifier = getClassifier(undefined, createProgress('training the digit classifier (first use) |{bar}| {value}/{total} | ETA {eta_formatted}'));
      const reference = testReference(classifier, n);
      const samples = score(classifier, images, n, reference);
      const floor = floorScores(classifier, n, reference);
      const result = { samples, floor, classifierTestAccuracy: classifier.testAccuracy, ...(sampling ? { sampling } : {}) };
      classifier.dispose();
      if (opts.json) {
        process.stdout.write(JSON.stringify(result) + '\n');
        return;
      }
      const lines = (prefix: string, s: typeof samples) =>
        [
          `${prefix}fd ${s.fd.toFixed(3)}`,
          `${prefix}kid ${s.kid.toFixed(5)} ± ${s.kidStd.toFixed(5)}`,
          `${prefix}precision ${s.precision.toFixed(4)}`,
          `${prefix}recall ${s.recall.toFixed(4)}`,
          `${prefix}confidence ${s.confidence.toFixed(4)}`,
          `${prefix}coverage ${s.coverage.toFixed(4)}`,
          `${prefix}histogram ${s.histogram.join(',')}`,
          `${prefix}max_brightness ${s.maxBrightness.toFixed(4)}`,
        ];
      const how = sampling ? [samplingLine(sampling)] : [];
      process.stdout.write([`n ${n}`, ...how, ...lines('', samples), ...lines('floor_', floor), `classifier_test_accuracy ${classifier.testAccuracy.toFixed(4)}`].join('\n') + '\n');
    });
}

/** How the scored samples were drawn, as the JSON output records it. */
interface SamplingRecord {
  sampler: string;
  steps: number | null;
  guide?: Guide;
  seconds: number;
}

function samplingRecord(settings: { sampler: string; steps?: number; guide?: Guide }, seconds: number): SamplingRecord {
  return { sampler: settings.sampler, steps: settings.steps ?? null, ...(settings.guide ? { guide: settings.guide } : {}), seconds };
}

function samplingLine(s: SamplingRecord): string {
  return `sampler ${s.sampler}${s.steps ? ` ${s.steps} steps` : ''}${guidedBy(s)}, ${s.seconds.toFixed(1)} s`;
}

/**
 * The scores of a folder model's samples against its training images (src/eval/imageSet.ts). The
 * options and the images to compare with are checked before sampling, so a bad --data fails at once.
 */
async function evaluateFolderModel(opts: SamplerChoices & { checkpoint: string; n: number; data?: string; nearest?: string; json: boolean }, checkpoint: RunRecord): Promise<void> {
  samplerSettings(checkpoint, opts);
  const guide = guideFrom(opts);
  if (guide) checkGuide(checkpoint, loadCheckpointRecord(guide.checkpoint), guide.checkpoint);
  const dir = opts.data ?? checkpoint.data.path!;
  const data = await comparisonImages(checkpoint, dir, opts.data !== undefined);
  const started = Date.now();
  const { height, imageWidth, channels } = checkpoint.model;
  const { images, settings } = sampleCheckpoint(opts.checkpoint, opts.n, { ...opts, progress: samplingProgress() }, (record) => {
    // The checkpoint read again to sample (it may have been replaced meanwhile) must make the images the data was loaded for.
    const m = record.model;
    if (m.height !== height || m.imageWidth !== imageWidth || m.channels !== channels) throw new UserError(`${opts.checkpoint} changed while it was being evaluated: it now makes ${m.height}x${m.imageWidth}x${m.channels} images, not ${height}x${imageWidth}x${channels}`);
  });
  const seconds = (Date.now() - started) / 1000;
  const dims = height * imageWidth * channels;
  const samples = toUnit(images, opts.n, dims);
  const train = toUnit(data.data, data.count, dims);
  const s = scoreAgainstData(samples, train, channels);
  if (opts.nearest) {
    // Pairs across: sample, its nearest training image; 8 pairs a row.
    const pairs = Math.min(32, opts.n);
    const tiles = new Float32Array(2 * pairs * dims);
    for (let i = 0; i < pairs; i++) {
      tiles.set(images.subarray(i * dims, (i + 1) * dims), 2 * i * dims);
      tiles.set(data.data.subarray(s.nearestIndex[i] * dims, (s.nearestIndex[i] + 1) * dims), (2 * i + 1) * dims);
    }
    await writeImageGrid(opts.nearest, tiles, 2 * pairs, height, imageWidth, channels, 16);
  }
  const result = {
    n: s.n,
    trainingImages: data.count,
    copies: s.copies,
    copyThreshold: s.threshold,
    sampleToNearestTrain: s.sampleToTrain,
    trainToNearestTrain: s.trainToTrain,
    diversity: s.diversity,
    samplesPairDistance: s.samplesPairDistance,
    trainPairDistance: s.trainPairDistance,
    colour: s.colour,
    sampling: samplingRecord(settings, seconds),
  };
  if (opts.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  const list = (v: number[]) => v.map((x) => x.toFixed(3)).join(',');
  process.stdout.write(
    [
      `n ${s.n} (against ${data.count} training images in ${dir})`,
      samplingLine(samplingRecord(settings, seconds)),
      `copies ${s.copies.toFixed(4)} (samples within ${s.threshold.toFixed(4)} of a training image: nearer than 99% of training images are to their nearest other one)`,
      `nearest_train_distance ${s.sampleToTrain.toFixed(4)} (training images to their nearest other one: ${s.trainToTrain.toFixed(4)}; RMS per pixel, 0..1)`,
      `diversity ${s.diversity.toFixed(4)} (mean distance between samples ${s.samplesPairDistance.toFixed(4)} / between training images ${s.trainPairDistance.toFixed(4)})`,
      `colour_mean ${list(s.colour.samples.mean)} (data ${list(s.colour.data.mean)})`,
      `colour_std ${list(s.colour.samples.std)} (data ${list(s.colour.data.std)})`,
      ...(opts.nearest ? [`wrote ${opts.nearest} (each sample, then its nearest training image)`] : []),
    ].join('\n') + '\n',
  );
}

/** The images a folder model's samples are compared with: `dir` read as the run read its folder; none readable is one clear error. */
async function comparisonImages(record: RunRecord, dir: string, given: boolean) {
  let data: Awaited<ReturnType<typeof loadTrainingData>>;
  try {
    data = await loadTrainingData({ ...record.data, path: dir, limit: 0 }, (m) => process.stderr.write(`diffuse: ${m}\n`));
  } catch (e) {
    if (!(e instanceof OptionError && e.option === 'data')) throw e;
    const why = e.detail.startsWith(`${dir}: `) ? e.detail.slice(dir.length + 2) : e.detail;
    throw new UserError(`no readable images in ${dir} (${why})${given ? '' : '; the checkpoint trained on this folder: name its images with --data DIR'}`);
  }
  const { height, imageWidth, channels } = record.model;
  if (data.height !== height || data.channels !== channels) throw new UserError(`${dir} loads as ${data.height}x${data.width}x${data.channels}; the model makes ${height}x${imageWidth}x${channels}`);
  return data;
}
