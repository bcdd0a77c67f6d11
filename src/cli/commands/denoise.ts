/** `diffuse denoise`: noise an image to each of several timesteps and denoise it back, one row per timestep. */
import * as path from 'node:path';
import { Command } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { decodeImage } from '../../data/folder';
import { loadMnist, padImages } from '../../data/mnist';
import { noiseAndDenoise } from '../../diffusion/sampler';
import { OptionError, UserError } from '../../errors';
import { checkOutputFile, imageFormatOf } from '../../files';
import { writeImageGrid } from '../../io/images';
import { classGuidance, loadPipeline } from '../../pipeline';
import { ClassifierFree } from '../../models/classifierFree';
import { DEFAULTS } from '../../config/defaults';
import { Rng } from '../../rng';
import { backendOption, integer, integerList, nonNegativeNumber, unitInterval } from '../options';

async function readImage(file: string, size: number, channels: 1 | 3, background: string): Promise<Float32Array> {
  try {
    return Float32Array.from(await decodeImage(file, { size, channels, background }), (v) => v / 127.5 - 1);
  } catch (e) {
    throw new UserError(`cannot read image ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
}

export function denoiseCommand(log: (m: string) => void): Command {
  return new Command('denoise')
    .description('add the forward process\'s noise to an image at each timestep t and run the reverse process back from t: rows of original | noisy | denoised')
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
    .option('--image <file>', 'the image (resized and centre-cropped to the model\'s size)')
    .option('--mnist-test <i>', 'or the i-th MNIST test digit (for models trained on MNIST)', integer(0, 'a non-negative integer'))
    .option('--t <list>', 'timesteps to noise to, e.g. 20,100,300,999', (v: string) => integerList(v, 0), [20, 100, 300, 600, 999])
    .option('--steps <K>', 'DDIM steps back from each t (at most t + 1)', integer(1), 50)
    .option('--eta <eta>', 'DDIM noise: 0 deterministic (default), 1 stochastic', unitInterval(true), 0)
    .option('--seed <s>', 'random seed of the added noise', integer(0, 'a non-negative integer'), 0)
    .option('--class <name>', "a conditional model: denoise as this class (name or index), with classifier-free guidance (default: none, unconditional)")
    .option('--cfg <w>', `with --class: the guidance weight (default: ${DEFAULTS.sampling.cfg})`, nonNegativeNumber)
    .option('--out <file>', 'image file to write', 'denoise.png')
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse denoise --checkpoint runs/small --mnist-test 0 --t 20,200,999 --out denoise.png')
    .action(async (opts) => {
      if ((opts.image === undefined) === (opts.mnistTest === undefined)) throw new UserError('denoise needs one of --image FILE or --mnist-test I');
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      await selectBackend(opts.backend as BackendChoice);
      const pipeline = loadPipeline(opts.checkpoint);
      const { scheduler, record } = pipeline;
      let model = pipeline.model;
      try {
        const guidance = classGuidance(record, { classes: opts.class, cfg: opts.cfg });
        if (guidance && guidance.classes.length !== 1) throw new OptionError('class', `${opts.class}: denoise takes one class`);
        if (guidance) model = new ClassifierFree(model, guidance.weight);
        const labels = guidance ? Float32Array.of(guidance.classes[0]) : undefined;
        const { height, channels } = record.model;
        const T = scheduler.timesteps;
        for (const t of opts.t as number[]) if (t > T - 1) throw new UserError(`--t ${t}: the checkpoint's process has timesteps 0..${T - 1}`);
        let x0: Float32Array;
        if (opts.image) x0 = await readImage(opts.image, height, channels as 1 | 3, record.data.background ?? '#000000'); // MNIST: digits on black
        else {
          if (record.data.dataset === 'folder') throw new UserError('--mnist-test needs a model trained on MNIST; give --image');
          const test = loadMnist('test', opts.mnistTest + 1);
          if (test.count <= opts.mnistTest) throw new UserError(`--mnist-test ${opts.mnistTest}: MNIST has ${test.count} test images`);
          const set = record.data.dataset === 'mnist32' ? padImages(test, 2) : test;
          const pixels = set.height * set.width;
          x0 = set.data.slice(opts.mnistTest * pixels, (opts.mnistTest + 1) * pixels);
        }
        const size = x0.length;
        const rows: Float32Array[] = [];
        for (const t of opts.t as number[]) {
          const { noisy, denoised } = noiseAndDenoise(model, scheduler, x0, 1, t, { rng: new Rng(opts.seed), eta: opts.eta, steps: opts.steps, labels });
          rows.push(x0, noisy, denoised);
        }
        const images = new Float32Array(rows.length * size);
        rows.forEach((r, i) => images.set(r, i * size));
        const { width, height: h } = await writeImageGrid(opts.out, images, rows.length, height, record.model.imageWidth, channels, 3);
        log(`wrote ${path.resolve(opts.out)} (${opts.t.length} rows: original | noised to t | denoised; t = ${opts.t.join(', ')}; ${width}x${h} px)`);
      } finally {
        model.dispose();
      }
    });
}
