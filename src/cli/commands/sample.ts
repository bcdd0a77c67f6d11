/** `diffuse sample`: a grid of images from a checkpoint, in the format the file's extension names. */
import * as path from 'node:path';
import { Command } from 'commander';
import { loadModel } from '../../api/node';
import { SamplingStep } from '../../diffusion/sampler';
import { checkOutputFile, imageFormatOf } from '../../files';
import { gridLayout } from '../../io/grid';
import { writeImage } from '../../io/images';
import { Frame, animationFormatOf, frameSteps, trajectoryPixels, writeAnimation } from '../../io/reverseProcess';
import { DEFAULTS } from '../../config/defaults';
import { notice } from '../../progress';
import { backendOption, guidedBy, integer, samplerOptions } from '../options';

export function sampleCommand(log: (m: string) => void): Command {
  const command = new Command('sample')
    .description('draw images from a trained checkpoint (all T ancestral steps, or K DDIM steps) and write a grid')
    .option('--checkpoint <dir>', 'checkpoint directory', 'checkpoints')
    .option('--n <count>', 'number of images', integer(1), DEFAULTS.sampling.n)
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
      const model = await loadModel(opts.checkpoint, { backend: opts.backend, guide: opts.guide, guidance: opts.guidance, onNotice: notice });
      try {
        // Frames of the first batch, at steps spaced to show both the early and the late steps.
        const shown = Math.min(opts.n, opts.batchSize);
        const frames: Frame[] = [];
        let wanted = new Set<number>();
        const onStep = ({ x, first, step, of }: SamplingStep) => {
          if (first !== 0) return;
          if (step === 0) wanted = new Set(frameSteps(of, 24));
          if (wanted.has(step)) frames.push({ step, images: x.slice() });
        };
        const watching = opts.animate || opts.trajectory;
        const images = await model.sample({ n: opts.n, seed: opts.seed, batchSize: opts.batchSize, sampler: opts.sampler, steps: opts.steps, eta: opts.eta, spacing: opts.spacing, clipDenoised: opts.clipDenoised, class: opts.class, perClass: opts.perClass, cfg: opts.cfg, progress: true, ...(watching ? { onStep } : {}) });
        const { record, averaged } = model;
        const { height, width: w, channels, count: n, columns } = images;
        const settings = images.settings!;
        const grid = images.toGrid();
        await writeImage(opts.out, grid.pixels, grid.width, grid.height, channels);
        if (opts.animate) {
          const a = await writeAnimation(opts.animate, frames, shown, height, w, channels);
          log(`wrote ${path.resolve(opts.animate)} (${a.frames} frames, ${a.width}x${a.height} px)`);
        }
        if (opts.trajectory) {
          // up to 8 of the frames, the first and the last among them
          const count = Math.min(8, frames.length);
          const picked = [...new Set(Array.from({ length: count }, (_, i) => Math.round((i * (frames.length - 1)) / Math.max(1, count - 1))))].map((i) => frames[i]);
          const still = trajectoryPixels(picked, Math.min(8, shown), height, w, channels);
          await writeImage(opts.trajectory, still.pixels, still.width, still.height, channels);
          log(`wrote ${path.resolve(opts.trajectory)} (steps ${picked.map((f) => f.step).join(', ')} of ${settings.steps ?? record.schedule.timesteps})`);
        }
        const { cols, rows } = gridLayout(n, columns);
        const classes = settings.classes ? `, classes ${settings.classes.join(',')} (guidance ${settings.cfg})` : '';
        log(`wrote ${path.resolve(opts.out)} (${cols}x${rows} grid, ${grid.width}x${grid.height} px) from epoch ${record.training.epoch}${averaged ? ' (averaged weights)' : ''}, ${settings.sampler}${settings.steps ? ` ${settings.steps} steps` : ''}${guidedBy(settings)}${classes}`);
      } finally {
        model.dispose();
      }
    });
}
