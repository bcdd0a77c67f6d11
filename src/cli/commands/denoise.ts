/** `diffuse denoise`: noise an image to each of several timesteps and denoise it back, one row per timestep. */
import * as path from 'node:path';
import { Command } from 'commander';
import { UserError } from '../../errors';
import { loadModel } from '../../api/node';
import { notice } from '../../progress';
import { checkOutputFile, imageFormatOf } from '../../files';
import { writeImageGrid } from '../../io/images';
import { DEFAULTS } from '../../config/defaults';
import { backendOption, integer, integerList, nonNegativeNumber, unitInterval } from '../options';
import { concatImages, imageInput, inputImage, requireImage } from '../inputs';

export function denoiseCommand(log: (m: string) => void): Command {
  return imageInput(new Command('denoise'))
    .description('add the forward process\'s noise to an image at each timestep t and run the reverse process back from t: rows of original | noisy | denoised')
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
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
      requireImage('denoise', opts);
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      const model = await loadModel(opts.checkpoint, { backend: opts.backend, onNotice: notice });
      try {
        const { record } = model;
        const { height, imageWidth, channels } = record.model;
        const T = record.schedule.timesteps;
        for (const t of opts.t as number[]) if (t > T - 1) throw new UserError(`--t ${t}: the checkpoint's process has timesteps 0..${T - 1}`);
        const x0 = await inputImage(model, opts);
        const rows: Float32Array[] = [];
        for (const t of opts.t as number[]) {
          const { noisy, denoised } = await model.denoise({ image: x0, t, steps: opts.steps, eta: opts.eta, seed: opts.seed, class: opts.class, cfg: opts.cfg });
          rows.push(x0, noisy.data, denoised.data);
        }
        const { width, height: h } = await writeImageGrid(opts.out, concatImages(rows), rows.length, height, imageWidth, channels, 3);
        log(`wrote ${path.resolve(opts.out)} (${opts.t.length} rows: original | noised to t | denoised; t = ${opts.t.join(', ')}; ${width}x${h} px)`);
      } finally {
        model.dispose();
      }
    });
}
