/** `diffuse denoise`: noise an image to each of several timesteps and denoise it back, one row per timestep. */
import * as path from 'node:path';
import { Command } from 'commander';
import { loadMnist, padImages } from '../../data/mnist';
import { UserError } from '../../errors';
import { loadModel } from '../../api/node';
import { notice } from '../../progress';
import { checkOutputFile, imageFormatOf } from '../../files';
import { writeImageGrid } from '../../io/images';
import { DEFAULTS } from '../../config/defaults';
import { backendOption, integer, integerList, nonNegativeNumber, unitInterval } from '../options';

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
      const model = await loadModel(opts.checkpoint, { backend: opts.backend, onNotice: notice });
      try {
        const { record } = model;
        const { height, imageWidth, channels } = record.model;
        const T = record.schedule.timesteps;
        for (const t of opts.t as number[]) if (t > T - 1) throw new UserError(`--t ${t}: the checkpoint's process has timesteps 0..${T - 1}`);
        let x0: Float32Array;
        if (opts.image) x0 = await model.readImage(opts.image);
        else {
          if (record.data.dataset === 'folder') throw new UserError('--mnist-test needs a model trained on MNIST; give --image');
          const test = loadMnist('test', opts.mnistTest + 1);
          if (test.count <= opts.mnistTest) throw new UserError(`--mnist-test ${opts.mnistTest}: MNIST has ${test.count} test images`);
          const set = record.data.dataset === 'mnist32' ? padImages(test, 2) : test;
          const pixels = set.height * set.width;
          x0 = set.data.slice(opts.mnistTest * pixels, (opts.mnistTest + 1) * pixels);
        }
        const rows: Float32Array[] = [];
        for (const t of opts.t as number[]) {
          const { noisy, denoised } = await model.denoise({ image: x0, t, steps: opts.steps, eta: opts.eta, seed: opts.seed, class: opts.class, cfg: opts.cfg });
          rows.push(x0, noisy.data, denoised.data);
        }
        const size = x0.length;
        const images = new Float32Array(rows.length * size);
        rows.forEach((r, i) => images.set(r, i * size));
        const { width, height: h } = await writeImageGrid(opts.out, images, rows.length, height, imageWidth, channels, 3);
        log(`wrote ${path.resolve(opts.out)} (${opts.t.length} rows: original | noised to t | denoised; t = ${opts.t.join(', ')}; ${width}x${h} px)`);
      } finally {
        model.dispose();
      }
    });
}
