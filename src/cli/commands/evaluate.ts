/**
 * `diffuse evaluate`: FD, confidence and coverage of samples, judged by the project's digit classifier;
 * a folder model's against its folder: copies, diversity, colour, and FD, KID, precision and recall in
 * the features of a classifier of the folder's own images; for a conditional checkpoint, the same
 * number of samples of each class and their class accuracy.
 */
import { MNIST_CLASSES } from '../../data/mnist';
import { Command } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { OptionError, UserError } from '../../errors';
import { getClassifier } from '../../eval/classifier';
import { asDigits, floorScores, mnistFrame, score, testReference } from '../../eval/evaluate';
import { readSamples } from '../../eval/sampleFiles';
import { Guide, checkGuide, guideFrom, sampleCheckpoint } from '../../pipeline/load';
import { createProgress, samplingProgress } from '../../progress';
import { backendOption, guidedBy, integer, samplerOptions } from '../options';
import { SamplerChoices, parseClasses, samplerSettings } from '../../config/sampling';
import { PerClassSplit, classAccuracy, classAccuracyLines, predictedLabels, splitDescription, splitPerClass } from '../../eval/classAccuracy';
import { RunRecord } from '../../config/runRecord';
import { isConditional, loadTrainingData } from '../../data/dataset';
import { hasClassLayout } from '../../data/folder';
import { COPY_ALPHA, COPY_NEIGHBOURS, scoreAgainstData, spreadIndices, toUnit } from '../../eval/imageSet';
import { FolderClassifierInfo, FolderImages, getFolderClassifier } from '../../eval/folderClassifier';
import { FEWEST_REAL, folderClassAccuracy, folderFeatureScores } from '../../eval/folderFeatures';
import { FeatureScores } from '../../eval/featureSets';
import { checkOutputFile, imageFormatOf } from '../../files';
import { writeImageGrid } from '../../io/images';
import { loadCheckpointRecord } from '../../io/checkpoint';

export function evaluateCommand(): Command {
  const command = new Command('evaluate')
    .description("score samples (from a checkpoint, a PNG grid or a .npy file) with the project's digit classifier: FD, KID, precision, recall, confidence, coverage; a model trained on a folder against its images: copies of training images, diversity, colour, and FD, KID, precision, recall in the features of a classifier of the folder's classes (trained on first use, cached)")
    .option('--checkpoint <dir>', 'checkpoint to sample from', 'checkpoints')
    .option('--samples <file>', 'score these instead: a PNG grid from `diffuse sample` or a .npy uint8 [n, 28, 28]')
    .option('--n <count>', 'images to generate, and real test images to compare with', integer(4, 'an integer of at least 4 (KID compares subsets of two)'), 1000)
    .option('--seed <s>', 'random seed of the starting noise', integer(0, 'a non-negative integer'), 0)
    .option('--batch-size <n>', 'images denoised together', integer(1), 250)
    .option('--data <dir>', "a folder model's training images to compare with (default: the folder it trained on, read as it was)")
    .option('--nearest <file>', 'folder models: also write 32 of the samples (spread over the draw: every class of a conditional one), each beside its nearest training image (.png, .jpg, .webp)');
  for (const o of samplerOptions()) command.addOption(o);
  return command
    .option('--json', 'print the figures as one JSON object', false)
    .addOption(backendOption())
    .addHelpText('after', "\nA conditional checkpoint draws --n divided equally among its classes (--class: some of them) with classifier-free guidance (--cfg), and reports class accuracy: the share of samples of each class that the digit classifier (MNIST) or the folder classifier labels as that class.\n\nA folder model is judged by a small convolutional classifier of the folder's first-level subfolders (a folder without them: of which of four rotations an image had), trained on 90% of the folder on first use (a minute or two) and cached beside the decoded images until a file changes; it reports its accuracy on the 10% held out. A sample counts as a copy when its nearest training image is within 1/3 of its mean distance to its " + COPY_NEIGHBOURS + " nearest (Carlini et al. 2023).\n\nExamples:\n  $ diffuse evaluate --checkpoint runs/small --n 1000\n  $ diffuse evaluate --checkpoint runs/conditional --n 1000 --cfg 3\n  $ diffuse evaluate --samples grid.png\n  $ diffuse evaluate --samples ref.npy --json")
    .action(async (opts) => {
      if (opts.nearest) {
        // The same checks as sample --out: a format diffuse writes, in a folder that takes files.
        imageFormatOf(opts.nearest);
        checkOutputFile(opts.nearest);
      }
      if (opts.samples && (opts.data || opts.nearest)) throw new UserError('--data and --nearest compare a checkpoint\'s samples with its training folder; --samples scores digits');
      if (opts.samples && (opts.class !== undefined || opts.perClass !== undefined || opts.cfg !== undefined)) throw new UserError('--class, --per-class and --cfg choose how a conditional checkpoint is sampled; --samples scores images already drawn');
      await selectBackend(opts.backend as BackendChoice);
      let checkpoint: RunRecord | null = null;
      if (!opts.samples) {
        checkpoint = loadCheckpointRecord(opts.checkpoint);
        if (checkpoint.data.dataset === 'folder') return evaluateFolderModel(opts, checkpoint);
      }
      if (opts.data || opts.nearest) throw new UserError('--data and --nearest are for models trained on a folder of images; this checkpoint trained on MNIST');
      let images: Float32Array;
      let n: number;
      let sampling: SamplingRecord | null = null;
      // A conditional checkpoint's samples: the digit each was drawn as, and how --n was divided.
      let drawn: { digits: Int32Array; split: PerClassSplit; classes: string[] } | null = null;
      if (opts.samples) {
        ({ images, n } = await readSamples(opts.samples));
        if (n < 2) throw new UserError(`${opts.samples} holds ${n} image(s); at least 2 are needed for a covariance`);
      } else {
        const draw = classDraw(checkpoint!, opts);
        n = draw ? draw.split.n : opts.n;
        const started = Date.now();
        const { images: sampled, record, settings, labels } = sampleCheckpoint(opts.checkpoint, n, { ...opts, ...classChoices(draw, opts), progress: samplingProgress() }, (r) => {
          mnistFrame(r);
          checkClassesKept(checkpoint!, r, opts.checkpoint);
        });
        sampling = samplingRecord(settings, (Date.now() - started) / 1000);
        images = asDigits(record, sampled, n);
        if (draw) {
          // MNIST's classes are the digits by name ('0'..'9'), which the classifier's labels are.
          const names = record.data.classes;
          drawn = { digits: Int32Array.from(labels!, (k) => Number(names[k])), split: draw.split, classes: draw.classes.map((k) => names[k]) };
        }
      }
      const classifier = getClassifier(undefined, createProgress('training the digit classifier (first use) |{bar}| {value}/{total} | ETA {eta_formatted}'));
      const reference = testReference(classifier, n);
      const samples = score(classifier, images, n, reference);
      const accuracy = drawn ? classAccuracy(predictedLabels(classifier.classify(images, n).probabilities, n), drawn.digits, MNIST_CLASSES) : null;
      const floor = floorScores(classifier, n, reference);
      const result = {
        samples,
        floor,
        classifierTestAccuracy: classifier.testAccuracy,
        ...(sampling ? { sampling } : {}),
        ...(drawn ? { classDraw: classDrawRecord(drawn.split, drawn.classes), classAccuracy: accuracy } : {}),
      };
      classifier.dispose();
      if (opts.json) {
        process.stdout.write(JSON.stringify(result) + '\n');
        return;
      }
      const lines = (prefix: string, s: typeof samples) =>
        [
          ...featureLines(prefix, s),
          `${prefix}confidence ${s.confidence.toFixed(4)}`,
          `${prefix}coverage ${s.coverage.toFixed(4)}`,
          `${prefix}histogram ${s.histogram.join(',')}`,
          `${prefix}max_brightness ${s.maxBrightness.toFixed(4)}`,
        ];
      const how = sampling ? [samplingLine(sampling)] : [];
      const count = drawn ? `n ${n} (${splitDescription(drawn.split)})` : `n ${n}`;
      const classLines = accuracy ? classAccuracyLines(accuracy) : [];
      process.stdout.write([count, ...how, ...lines('', samples), ...classLines, ...lines('floor_', floor), `classifier_test_accuracy ${classifier.testAccuracy.toFixed(4)}`].join('\n') + '\n');
    });
}

/** How the scored samples were drawn, as the JSON output records it (a conditional checkpoint's: the classes drawn and classifier-free guidance's w). */
interface SamplingRecord {
  sampler: string;
  steps: number | null;
  guide?: Guide;
  classes?: string[];
  cfg?: number;
  seconds: number;
}

function samplingRecord(settings: { sampler: string; steps?: number; guide?: Guide; classes?: string[]; cfg?: number }, seconds: number): SamplingRecord {
  return {
    sampler: settings.sampler,
    steps: settings.steps ?? null,
    ...(settings.guide ? { guide: settings.guide } : {}),
    ...(settings.classes ? { classes: settings.classes, cfg: settings.cfg } : {}),
    seconds,
  };
}

function samplingLine(s: SamplingRecord): string {
  const classes = s.classes ? `, classes ${s.classes.join(',')} (cfg ${s.cfg})` : '';
  return `sampler ${s.sampler}${s.steps ? ` ${s.steps} steps` : ''}${guidedBy(s)}${classes}, ${s.seconds.toFixed(1)} s`;
}

/** The fewest samples a conditional draw may have: KID compares subsets of half of them, of at least 2. */
const FEWEST = 4;


interface ClassOptions {
  n: number;
  class?: string;
  perClass?: number;
}

/**
 * What a conditional checkpoint draws: the classes --class names (default all), the same number of
 * each (--per-class, else --n divided among them, rounded down); null for an unconditional one.
 */
function classDraw(record: RunRecord, opts: ClassOptions): { spec: string; classes: number[]; split: PerClassSplit } | null {
  if (record.model.classes === 0) return null;
  const spec = opts.class ?? 'all';
  const classes = parseClasses(record, spec);
  const twice = classes.find((k, i) => classes.indexOf(k) !== i);
  if (twice !== undefined) throw new OptionError('class', `${spec}: names class ${record.data.classes[twice]} twice; evaluate draws the same number of each class`);
  const n = opts.perClass !== undefined ? opts.perClass * classes.length : opts.n;
  if (opts.perClass !== undefined && n < FEWEST) throw new OptionError('perClass', `${opts.perClass} of ${classes.length} class${classes.length === 1 ? '' : 'es'} draws ${n} image${n === 1 ? '' : 's'}; at least ${FEWEST} are needed`);
  const split = splitPerClass(n, classes.length, FEWEST);
  return { spec, classes, split };
}

/** The sampler choices that draw `draw` (an unconditional checkpoint's: --class as given, which it refuses). */
function classChoices(draw: ReturnType<typeof classDraw>, opts: ClassOptions): Pick<SamplerChoices, 'classes' | 'perClass'> {
  return draw ? { classes: draw.spec, perClass: draw.split.perClass } : { classes: opts.class };
}

/** The checkpoint read again to sample (it may have been replaced meanwhile) must have the classes its draw was planned for. */
function checkClassesKept(planned: RunRecord, now: RunRecord, dir: string): void {
  const a = JSON.stringify(planned.data.classes), b = JSON.stringify(now.data.classes);
  if (planned.model.classes !== now.model.classes || a !== b) throw new UserError(`${dir} changed while it was being evaluated: its classes are now ${now.data.classes.join(', ') || 'none'}, not ${planned.data.classes.join(', ') || 'none'}`);
}

/** How a conditional checkpoint's samples were divided, as the JSON output records it. */
function classDrawRecord(split: PerClassSplit, classes: string[]) {
  return { classes, perClass: split.perClass, n: split.n, requestedN: split.requested };
}

/**
 * The scores of a folder model's samples against its training images: in pixels (src/eval/imageSet.ts)
 * and in the folder classifier's features (src/eval/folderFeatures.ts). The options and the images to
 * compare with are checked, and the classifier trained (first use), before sampling, so a bad --data
 * fails at once.
 */
async function evaluateFolderModel(opts: SamplerChoices & ClassOptions & { checkpoint: string; data?: string; nearest?: string; json: boolean }, checkpoint: RunRecord): Promise<void> {
  samplerSettings(checkpoint, opts);
  const draw = classDraw(checkpoint, opts);
  const n = draw ? draw.split.n : opts.n;
  const guide = guideFrom(opts);
  if (guide) checkGuide(checkpoint, loadCheckpointRecord(guide.checkpoint), guide.checkpoint);
  const dir = opts.data ?? checkpoint.data.path!;
  const log = (m: string) => process.stderr.write(`diffuse: ${m}\n`);
  const data = await comparisonImages(checkpoint, dir, opts.data !== undefined);
  if (!data.key) throw new Error(`the images of ${dir} came without their cache key`);
  const folderImages: FolderImages = { data: data.data, count: data.count, side: data.height, channels: data.channels, labels: data.labels, classNames: data.classNames };
  const judge = getFolderClassifier(folderImages, {
    key: data.key,
    flip: checkpoint.data.flip,
    progress: createProgress('training the folder classifier (first use for this folder) |{bar}| {value}/{total} steps | ETA {eta_formatted}'),
    log,
  });
  const started = Date.now();
  const { height, imageWidth, channels } = checkpoint.model;
  const { images, settings, labels } = sampleCheckpoint(opts.checkpoint, n, { ...opts, ...classChoices(draw, opts), progress: samplingProgress() }, (record) => {
    // The checkpoint read again to sample (it may have been replaced meanwhile) must make the images the data was loaded for.
    const m = record.model;
    if (m.height !== height || m.imageWidth !== imageWidth || m.channels !== channels) throw new UserError(`${opts.checkpoint} changed while it was being evaluated: it now makes ${m.height}x${m.imageWidth}x${m.channels} images, not ${height}x${imageWidth}x${channels}`);
    checkClassesKept(checkpoint, record, opts.checkpoint);
  });
  const seconds = (Date.now() - started) / 1000;
  const dims = height * imageWidth * channels;
  const samples = toUnit(images, n, dims);
  const train = toUnit(data.data, data.count, dims);
  const s = scoreAgainstData(samples, train, channels);
  const { scores: features, probabilities } = folderFeatureScores(judge.classifier, images, n, folderImages);
  const featuresMissing = features ? undefined : `needs at least ${2 * FEWEST_REAL} images in the folder (${data.count}): ${FEWEST_REAL} to compare with and ${FEWEST_REAL} for the floor`;
  const judged = draw ? folderClassAccuracy(judge.classifier, probabilities, labels!, checkpoint.data.classes) : null;
  const accuracy = judged && typeof judged !== 'string' ? judged : null;
  const info = judge.classifier.info;
  judge.classifier.dispose();
  if (opts.nearest) {
    // Pairs across: sample, its nearest training image; 8 pairs a row; 32 samples spread over the draw (and so over its classes).
    const shown = spreadIndices(n, 32);
    const tiles = new Float32Array(2 * shown.length * dims);
    shown.forEach((j, i) => {
      tiles.set(images.subarray(j * dims, (j + 1) * dims), 2 * i * dims);
      tiles.set(data.data.subarray(s.nearestIndex[j] * dims, (s.nearestIndex[j] + 1) * dims), (2 * i + 1) * dims);
    });
    await writeImageGrid(opts.nearest, tiles, 2 * shown.length, height, imageWidth, channels, 16);
  }
  const classifier = classifierRecord(info, judge.trained);
  const result = {
    n: s.n,
    trainingImages: data.count,
    copies: s.copies,
    copyRule: { alpha: COPY_ALPHA, neighbours: s.neighbours, rule: copyRule(s.neighbours) },
    trainCopies: s.trainCopies,
    sampleToNearestTrain: s.sampleToTrain,
    trainToNearestTrain: s.trainToTrain,
    diversity: s.diversity,
    samplesPairDistance: s.samplesPairDistance,
    trainPairDistance: s.trainPairDistance,
    colour: s.colour,
    classifier,
    features,
    ...(featuresMissing ? { featuresMissing } : {}),
    sampling: samplingRecord(settings, seconds),
    ...(draw ? { classDraw: classDrawRecord(draw.split, draw.classes.map((k) => checkpoint.data.classes[k])), classAccuracy: accuracy, ...(typeof judged === 'string' ? { classAccuracyMissing: judged } : {}) } : {}),
  };
  if (opts.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  const list = (v: number[]) => v.map((x) => x.toFixed(3)).join(',');
  const task = info.task === 'classes' ? `${info.outputs.length} classes` : 'rotations (no class subfolders)';
  const heldOut = info.heldOut.count
    ? `${info.heldOut.accuracy.toFixed(4)} (balanced over ${info.task === 'classes' ? 'classes' : 'rotations'} ${info.heldOut.balanced.toFixed(4)}; on ${info.heldOut.count} real images it did not train on)`
    : 'none (no image held out: too few per class)';
  process.stdout.write(
    [
      `n ${s.n} (${draw ? `${splitDescription(draw.split)}; ` : ''}against ${data.count} training images in ${dir})`,
      samplingLine(samplingRecord(settings, seconds)),
      `copies ${s.copies.toFixed(4)} (${copyRule(s.neighbours)}; training images among themselves: ${s.trainCopies.toFixed(4)})`,
      `nearest_train_distance ${s.sampleToTrain.toFixed(4)} (training images to their nearest other one: ${s.trainToTrain.toFixed(4)}; RMS per pixel, 0..1)`,
      `diversity ${s.diversity.toFixed(4)} (mean distance between samples ${s.samplesPairDistance.toFixed(4)} / between training images ${s.trainPairDistance.toFixed(4)})`,
      `colour_mean ${list(s.colour.samples.mean)} (data ${list(s.colour.data.mean)})`,
      `colour_std ${list(s.colour.samples.std)} (data ${list(s.colour.data.std)})`,
      `classifier folder classifier of ${task}, ${info.side} px, trained on ${info.trainCount} images${judge.trained ? ` in ${info.seconds.toFixed(0)} s` : ' (cached)'}`,
      ...(features
        ? [
            `features against ${features.referenceN} training images; floor: ${features.floor.n} other real images (${features.floorHeldOut} held out of the classifier's training)`,
            ...featureLines('', features.samples),
            ...featureLines('floor_', features.floor),
          ]
        : [`fd, kid, precision, recall: ${featuresMissing}`]),
      ...(accuracy ? classAccuracyLines(accuracy, 'the folder classifier') : typeof judged === 'string' ? [`class accuracy: ${judged}`] : []),
      `classifier_heldout_accuracy ${heldOut}`,
      ...(opts.nearest ? [`wrote ${opts.nearest} (each sample, then its nearest training image)`] : []),
    ].join('\n') + '\n',
  );
}

/** The text lines of FD, KID, precision and recall (MNIST's and a folder's), each name after `prefix`. */
function featureLines(prefix: string, f: FeatureScores): string[] {
  return [`${prefix}fd ${f.fd.toFixed(3)}`, `${prefix}kid ${f.kid.toFixed(5)} ± ${f.kidStd.toFixed(5)}`, `${prefix}precision ${f.precision.toFixed(4)}`, `${prefix}recall ${f.recall.toFixed(4)}`];
}

/** What the copies line says of its rule (COPY_ALPHA, after Carlini et al. 2023), with its k nearest. */
function copyRule(k: number): string {
  return `samples whose nearest training image is within 1/3 of their mean distance to their ${k} nearest, after Carlini et al. 2023`;
}

/** The folder classifier as the JSON output records it. */
function classifierRecord(info: FolderClassifierInfo, trained: boolean) {
  return { task: info.task, outputs: info.outputs, side: info.side, trainingImages: info.trainCount, heldOut: info.heldOut, trained, seconds: info.seconds };
}

/** The images a folder model's samples are compared with: `dir` read as the run read its folder; none readable is one clear error. */
async function comparisonImages(record: RunRecord, dir: string, given: boolean) {
  let data: Awaited<ReturnType<typeof loadTrainingData>>;
  try {
    // A folder given for a conditional model is only images to compare with: read without the run's classes, it need not hold
    // class subfolders. Where a folder has them (an unconditional run's too), its images come labelled: the folder classifier learns them.
    const classes = given || !isConditional(record.data) ? { conditional: hasClassLayout(dir), classes: [] } : {};
    data = await loadTrainingData({ ...record.data, path: dir, limit: 0, ...classes }, (m) => process.stderr.write(`diffuse: ${m}\n`));
  } catch (e) {
    if (!(e instanceof OptionError && e.option === 'data')) throw e;
    const why = e.detail.startsWith(`${dir}: `) ? e.detail.slice(dir.length + 2) : e.detail;
    throw new UserError(`no readable images in ${dir} (${why})${given ? '' : '; the checkpoint trained on this folder: name its images with --data DIR'}`);
  }
  const { height, imageWidth, channels } = record.model;
  if (data.height !== height || data.channels !== channels) throw new UserError(`${dir} loads as ${data.height}x${data.width}x${data.channels}; the model makes ${height}x${imageWidth}x${channels}`);
  return data;
}
