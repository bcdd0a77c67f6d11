/** The image commands' input (`--image FILE` or `--mnist-test I`: denoise, invert, inpaint, edit) and their output rows. */
import { Command } from 'commander';
import { NodeModel } from '../api/node';
import { loadMnist, padImages } from '../data/mnist';
import { UserError } from '../errors';
import { integer } from './options';

/** Adds --image and --mnist-test. */
export function imageInput(command: Command): Command {
  return command
    .option('--image <file>', "the image (resized and centre-cropped to the model's size)")
    .option('--mnist-test <i>', 'or the i-th MNIST test digit (for models trained on MNIST)', integer(0, 'a non-negative integer'));
}

/** Refuses, before the model loads, a command given neither or both of --image and --mnist-test. */
export function requireImage(command: string, opts: { image?: string; mnistTest?: number }): void {
  if ((opts.image === undefined) === (opts.mnistTest === undefined)) throw new UserError(`${command} needs one of --image FILE or --mnist-test I`);
}

/** The image --image or --mnist-test names, at the model's size, values in [−1, 1]. */
export function inputImage(model: NodeModel, opts: { image?: string; mnistTest?: number }): Promise<Float32Array> | Float32Array {
  return opts.image !== undefined ? model.readImage(opts.image) : mnistTestImage(model, opts.mnistTest!);
}

/** The i-th MNIST test digit as the model saw its training digits (padded to 32 px for MNIST-32). */
export function mnistTestImage(model: NodeModel, i: number): Float32Array {
  const { dataset } = model.record.data;
  if (dataset === 'folder') throw new UserError('--mnist-test needs a model trained on MNIST; give --image');
  const test = loadMnist('test', i + 1);
  if (test.count <= i) throw new UserError(`--mnist-test ${i}: MNIST has ${test.count} test images`);
  const set = dataset === 'mnist32' ? padImages(test, 2) : test;
  const pixels = set.height * set.width;
  return set.data.slice(i * pixels, (i + 1) * pixels);
}

/** Images (each a run of values) one after another, as a grid takes them. */
export function concatImages(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}
