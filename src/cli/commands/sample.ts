/** `diffuse sample`: a grid of images from a checkpoint, in the format the file's extension names. */
import * as path from 'node:path';
import { Command } from 'commander';
import { BackendChoice, selectBackend } from '../../backend/select';
import { checkOutputFile, imageFormatOf } from '../../files';
import { gridLayout } from '../../io/grid';
import { writeImage, writeImageGrid } from '../../io/images';
import { Frame, animationFormatOf, frameSteps, trajectoryPixels, writeAnimation } from '../../io/reverseProcess';
import { sampleCheckpoint } from '../../pipeline';
import { DEFAULTS } from '../../config/defaults';
import { samplingProgress } from '../../progress';
import { backendOption, guidedBy, integer, samplerOptions } from '../options';

export function sampleCommand(log: (m: string) => void): Command {
  const command = new Command('sample')
    .description('draw images from a trained checkpoint (all T ancestral steps, or K DDIM steps) and write a grid')
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
    .option('--n <count>', 'number of images', integer(1), 64)
    .option('--out <file>', 'image file to write: .png, .jpg or .webp (lossless)', 'grid.png')
    .option('--seed <s>', 'random seed of the starting noise', integer(0, 'a non-negative integer'), 0)
    .option('--batch-size <n>', 'images denoised together', integer(1), DEFAULTS.sampling.batchSize)
    .option('--animate <file>', 'also write the grid going from noise to images as an animation (.webp or .gif; the first --batch-size images)')
    .option('--trajectory <file>', 'also write a still: up to 8 images down, their state at chosen steps across (.png, .jpg, .webp)');
  for (const o of samplerOptions()) command.addOption(o);
  return command
    .addOption(backendOption())
    .addHelpText('after', '\nExamples:\n  $ diffuse sample --n 64 --out grid.png\n  $ diffuse sample --checkpoint runs/small --n 16 --seed 7 --out small.png\n  $ diffuse sample --n 64 --steps 50 --out fast.png')
    .action(async (opts) => {
      imageFormatOf(opts.out);
      checkOutputFile(opts.out);
      if (opts.animate) {
        animationFormatOf(opts.animate);
        checkOutputFile(opts.animate);
      }
      if (opts.trajectory) {
        imageFormatOf(opts.trajectory);
        checkOutputFile(opts.trajectory);
      }
      await selectBackend(opts.backend as BackendChoice);
      // Frames of the first batch, at steps spaced to show both the early and the late steps.
      const shown = Math.min(opts.n, opts.batchSize);
      const frames: Frame[] = [];
      let wanted = new Set<number>();
      const observe = (x: Float32Array, first: number, step: number, of: number) => {
        if (first !== 0) return;
        if (step === 0) wanted = new Set(frameSteps(of, 24));
        if (wanted.has(step)) frames.push({ step, images: x.slice() });
      };
      const watching = opts.animate || opts.trajectory;
      const { images, n, record, averaged, settings } = sampleCheckpoint(opts.checkpoint, opts.n, { ...opts, classes: opts.class, progress: samplingProgress(), ...(watching ? { observe } : {}) });
      const { model } = record;
      const columns = opts.perClass; // one row per class
      const { width, height } = await writeImageGrid(opts.out, images, n, model.height, model.imageWidth, model.channels, columns);
      if (opts.animate) {
        const a = await writeAnimation(opts.animate, frames, shown, model.height, model.imageWidth, model.channels);
        log(`wrote ${path.resolve(opts.animate)} (${a.frames} frames, ${a.width}x${a.height} px)`);
      }
      if (opts.trajectory) {
        // up to 8 of the frames, the first and the last among them
        const count = Math.min(8, frames.length);
        const columns = [...new Set(Array.from({ length: count }, (_, i) => Math.round((i * (frames.length - 1)) / Math.max(1, count - 1))))].map((i) => frames[i]);
        const still = trajectoryPixels(columns, Math.min(8, shown), model.height, model.imageWidth, model.channels);
        await writeImage(opts.trajectory, still.pixels, still.width, still.height, model.channels);
        log(`wrote ${path.resolve(opts.trajectory)} (steps ${columns.map((f) => f.step).join(', ')} of ${settings.steps ?? record.schedule.timesteps})`);
      }
      const { cols, rows } = gridLayout(n, columns);
      const classes = 'classes' in settings ? `, classes ${settings.classes!.join(',')} (guidance ${settings.cfg})` : '';
      log(`wrote ${path.resolve(opts.out)} (${cols}x${rows} grid, ${width}x${height} px) from epoch ${record.training.epoch}${averaged ? ' (averaged weights)' : ''}, ${settings.sampler}${settings.steps ? ` ${settings.steps} steps` : ''}${guidedBy(settings)}${classes}`);
    });
}
