/** `diffuse sample`: a grid of images from a checkpoint, in the format the file's extension names. */
import * as path from 'node:path';
import { Command } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { checkOutputFile, imageFormatOf } from '../../io/files';
import { gridLayout } from '../../io/grid';
import { writeImageGrid } from '../../io/images';
import { sampleCheckpoint } from '../../pipeline';
import { samplingProgress } from '../../progress';
import { backendOption, integer, samplerOptions } from '../options';

export function sampleCommand(log: (m: string) => void): Command {
  const command = new Command('sample')
    .description('draw images from a trained checkpoint (all T ancestral steps, or K DDIM steps) and write a grid')
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
    .option('--n <count>', 'number of images', integer(1), 64)
    .option('--out <file>', 'image file to write: .png, .jpg or .webp (lossless)', 'grid.png')
    .option('--seed <s>', 'random seed of the starting noise', integer(0, 'a non-negative integer'), 0)
    .option('--batch-size <n>', 'images denoised together', integer(1), 256);
  for (const o of samplerOptions()) command.addOption(o);
  return command
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse sample --n 64 --out grid.png\n  $ diffuse sample --checkpoint runs/small --n 16 --seed 7 --out small.png\n  $ diffuse sample --n 64 --steps 50 --out fast.png')
    .action(async (opts) => {
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      await selectBackend(opts.backend as BackendChoice);
      const { images, record, averaged, settings } = sampleCheckpoint(opts.checkpoint, opts.n, { ...opts, progress: samplingProgress() });
      const { model } = record;
      const { width, height } = await writeImageGrid(opts.out, images, opts.n, model.height, model.imageWidth, model.channels);
      const { cols, rows } = gridLayout(opts.n);
      log(`wrote ${path.resolve(opts.out)} (${cols}x${rows} grid, ${width}x${height} px) from epoch ${record.training.epoch}${averaged ? ' (averaged weights)' : ''}, ${settings.sampler}${settings.steps ? ` ${settings.steps} steps` : ''}`);
    });
}
