/** `diffuse evaluate`: FD, confidence and coverage of samples, judged by the project's digit classifier. */
import { Command } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { RunRecord } from '../../config/runRecord';
import { cropImages } from '../../data/mnist';
import { UserError } from '../../errors';
import { getClassifier } from '../../eval/classifier';
import { floorScores, score, testReference } from '../../eval/evaluate';
import { readSamples } from '../../eval/sampleFiles';
import { quantize } from '../../io/grid';
import { sampleCheckpoint } from '../../pipeline';
import { createProgress, samplingProgress } from '../../progress';
import { backendOption, integer, samplerOptions } from '../options';

/** The frame to crop from a checkpoint's images to get 28×28 MNIST digits (MNIST-32: 2 px); other data is refused. */
function mnistFrame(record: RunRecord): number {
  const { height, imageWidth, channels } = record.model;
  if (record.data.dataset === 'mnist' && height === 28 && imageWidth === 28 && channels === 1) return 0;
  if (record.data.dataset === 'mnist32' && height === 32 && imageWidth === 32 && channels === 1) return 2;
  const source = record.data.dataset === 'folder' ? record.data.path : record.data.dataset;
  throw new UserError(`evaluate scores MNIST digits; this checkpoint makes ${height}x${imageWidth}x${channels} images of ${source}`);
}

export function evaluateCommand(): Command {
  const command = new Command('evaluate')
    .description("score samples (from a checkpoint, a PNG grid or a .npy file) with the project's digit classifier: FD, KID, precision, recall, confidence, coverage")
    .option('--checkpoint <dir>', 'checkpoint to sample from', 'checkpoints')
    .option('--samples <file>', 'score these instead: a PNG grid from `diffuse sample` or a .npy uint8 [n, 28, 28]')
    .option('--n <count>', 'images to generate, and real test images to compare with', integer(2), 1000)
    .option('--seed <s>', 'random seed of the starting noise', integer(0, 'a non-negative integer'), 0)
    .option('--batch-size <n>', 'images denoised together', integer(1), 250);
  for (const o of samplerOptions()) command.addOption(o);
  return command
    .option('--json', 'print the figures as one JSON object', false)
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse evaluate --checkpoint runs/small --n 1000\n  $ diffuse evaluate --samples grid.png\n  $ diffuse evaluate --samples ref.npy --json')
    .action(async (opts) => {
      await selectBackend(opts.backend as BackendChoice);
      let images: Float32Array;
      let n: number;
      let sampling: { sampler: string; steps: number | null; seconds: number } | null = null;
      if (opts.samples) {
        ({ images, n } = await readSamples(opts.samples));
        if (n < 2) throw new UserError(`${opts.samples} holds ${n} image(s); at least 2 are needed for a covariance`);
      } else {
        n = opts.n;
        const started = Date.now();
        const { images: sampled, record, settings } = sampleCheckpoint(opts.checkpoint, n, { ...opts, progress: samplingProgress() }, mnistFrame);
        sampling = { sampler: settings.sampler, steps: settings.steps ?? null, seconds: (Date.now() - started) / 1000 };
        const frame = mnistFrame(record);
        images = quantize(frame ? cropImages(sampled, n, { height: record.model.height, width: record.model.imageWidth, channels: 1 }, frame) : sampled);
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
        ];
      const how = sampling ? [`sampler ${sampling.sampler}${sampling.steps ? ` ${sampling.steps} steps` : ''}, ${sampling.seconds.toFixed(1)} s`] : [];
      process.stdout.write([`n ${n}`, ...how, ...lines('', samples), ...lines('floor_', floor), `classifier_test_accuracy ${classifier.testAccuracy.toFixed(4)}`].join('\n') + '\n');
    });
}
