/**
 * The folder classifier: what judges a folder model's samples as the digit classifier (classifier.ts)
 * judges MNIST's. A small convolutional net trained by the project itself, on the current backend, on
 * the folder's own images, and cached beside the decoded folder under its key (folderCache.ts), so it
 * trains once per folder state and decoding and again when a file is added, removed or changed.
 *
 * - Input (folderImages.ts): the images as decoded for the run, brought to SIDE (32) pixels a side
 *   (64-px images averaged over 2x2 blocks; smaller ones kept, at a multiple of 8), so a 64-px folder
 *   costs a quarter.
 * - Net: three stages of a 3x3 convolution (32, 64, 128 channels) and SiLU (the U-net's convolution
 *   and nonlinearity, native kernels on blas), each followed by a 2x2 average pool; the 4x4x128 map
 *   flattened into a dense layer of FEATURES (128) units with ReLU (the penultimate features that FD,
 *   KID, precision and recall are computed on, as the digit classifier's), then a dense layer to the
 *   task's outputs: 357 k parameters at 32 px. (16, 32, 64 channels trained twice as fast to a few
 *   points less held-out accuracy on the emoji; dropout before the dense layer did not help.)
 * - Task: the folder's classes, its first-level subfolders (what `train --conditional` learns). A folder
 *   with fewer than two classes has no labels to learn, so the net learns instead which of four
 *   rotations (0, 90, 180, 270 degrees) was applied to an image (Gidaris et al. 2018, "Unsupervised
 *   representation learning by predicting image rotations"): it needs no labels, it cannot be solved
 *   from colour statistics alone, only from the shapes and their layout (faces upright, text, objects
 *   standing on their base), which are what a sample must get right to read as one of the images.
 * - Training: 25 epochs (at least 3,000 and at most 100,000 images seen), Adam 1e-3 (1e-4 for the
 *   last fifth), batches of 64, cross-entropy weighted by inverse class frequency (so a class holding
 *   most images does not swamp the others: samples are drawn in equal numbers per class), random shifts of up to 2 pixels (edges repeated) and, where the run
 *   mirrors its images, left-right flips. A stratified HELD_OUT share (10%, seeded) is not trained on:
 *   its accuracy is the classifier's own on real images it has not seen.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs'; // registers the gradients, which tfjs-core's CommonJS build leaves out
import { cacheDir } from '../data/folderCache';
import { adamConfig } from '../config/defaults';
import { writeAtomically } from '../files';
import { decodeSafetensors, encodeSafetensors, SafeTensor } from '../io/safetensors';
import { conv2d, silu, spaceToDepth } from '../models/convLayers';
import { Adam } from '../optim/adam';
import { Progress, silentProgress } from '../progress';
import { Rng } from '../rng';
import { assignCopy, variableFrom } from '../tensors';
import { argmax } from './classifier';
import { augment, classifierSide, heldOutSplit, resizeImages, rotateInto } from './folderImages';

/** Penultimate features. */
export const FOLDER_FEATURES = 128;
/** The convolution stages' channels. */
const WIDTHS = [32, 64, 128];
const BATCH = 64;
/** Training length: 25 epochs, but at least 3,000 and at most 100,000 images seen (large folders stay within minutes). */
const EPOCHS = 25;
const MIN_SEEN = 3000;
const MAX_SEEN = 100000;
/** Bump when the net, its training or the cache file's layout changes. */
const VERSION = 2;
/** The cache file's metadata "format", so no other safetensors file is taken for a classifier. */
const FORMAT = 'diffuse-folder-classifier';

/** What the net learns: the folder's classes, or (fewer than two classes) which rotation an image had. */
export type FolderTask = 'classes' | 'rotation';
const ROTATIONS = ['0', '90', '180', '270'];

/** A folder's images as loaded for a run: [-1, 1], side × side × channels each (HWC), with labels where it has classes. */
export interface FolderImages {
  data: Float32Array;
  count: number;
  side: number;
  channels: number;
  labels?: Int32Array;
  classNames?: string[];
}

export interface HeldOutAccuracy {
  /** Images held out of training. */
  count: number;
  /** The share labelled right (rotation task: of the images each turned four ways). */
  accuracy: number;
  /** The mean over classes of each class's share labelled right (samples are drawn equally per class). */
  balanced: number;
}

export interface ClassifierOutputs {
  /** [n, FOLDER_FEATURES] penultimate activations. */
  features: Float32Array;
  /** [n, outputs] probabilities of the task's outputs. */
  probabilities: Float32Array;
}

/** What is known of a trained classifier beside its weights (what its cache file's metadata holds). */
export interface FolderClassifierInfo {
  task: FolderTask;
  /** Its outputs' names: the folder's classes, or the rotations. */
  outputs: string[];
  /** Side and channels of the folder's images it takes, and of what the net sees. */
  imageSide: number;
  channels: number;
  side: number;
  flip: boolean;
  /** Images it was trained on, and its accuracy on those held out. */
  trainCount: number;
  heldOut: HeldOutAccuracy;
  /** Training time. */
  seconds: number;
}

export class FolderClassifier {
  readonly variables = new Map<string, tf.Variable>();
  /** Each weight's name and shape, in the order the cache file lists them. */
  readonly shapes: [string, number[]][];

  constructor(
    public info: FolderClassifierInfo,
    rng: Rng,
  ) {
    const { side, channels, outputs } = info;
    const shapes: [string, number[]][] = [];
    let c = channels;
    let s = side;
    WIDTHS.forEach((w, i) => {
      shapes.push([`conv${i + 1}/kernel`, [3, 3, c, w]], [`conv${i + 1}/bias`, [w]]);
      c = w;
      if (s % 2 === 0) s /= 2;
    });
    shapes.push(['features/kernel', [s * s * c, FOLDER_FEATURES]], ['features/bias', [FOLDER_FEATURES]], ['logits/kernel', [FOLDER_FEATURES, outputs.length]], ['logits/bias', [outputs.length]]);
    this.shapes = shapes;
    for (const [name, shape] of shapes) {
      const size = shape.reduce((a, b) => a * b, 1);
      const fanIn = shape.length === 4 ? shape[0] * shape[1] * shape[2] : shape[0];
      const bound = name.endsWith('bias') ? 0 : Math.sqrt(6 / fanIn); // He-uniform, for ReLU
      this.variables.set(name, variableFrom(Float32Array.from({ length: size }, () => (2 * rng.uniform() - 1) * bound), shape, true));
    }
  }

  private v<T extends tf.Tensor>(name: string): T {
    return this.variables.get(name) as unknown as T;
  }

  /** Features and logits of images as the net sees them ([b, side, side, channels], [-1, 1]). */
  forward(x: tf.Tensor4D): { features: tf.Tensor2D; logits: tf.Tensor2D } {
    let h = x;
    for (let i = 1; i <= WIDTHS.length; i++) {
      h = silu(conv2d(h, this.v(`conv${i}/kernel`), this.v(`conv${i}/bias`)));
      if (h.shape[1] % 2 === 0) h = averagePool(h);
    }
    const flat = tf.reshape(h, [h.shape[0], -1]) as tf.Tensor2D;
    const features = tf.relu(tf.add(tf.matMul(flat, this.v<tf.Tensor2D>('features/kernel')), this.v('features/bias'))) as tf.Tensor2D;
    return { features, logits: tf.add(tf.matMul(features, this.v<tf.Tensor2D>('logits/kernel')), this.v('logits/bias')) as tf.Tensor2D };
  }

  /** The folder's images (imageSide, [-1, 1]) as the net sees them. */
  prepare(images: Float32Array, count: number): Float32Array {
    return resizeImages(images, count, this.info.imageSide, this.info.channels, this.info.side);
  }

  /** Features and probabilities of n images already prepared, in batches. */
  classifyPrepared(images: Float32Array, n: number, batchSize = 250): ClassifierOutputs {
    const { side, channels, outputs } = this.info;
    const size = side * side * channels;
    const features = new Float32Array(n * FOLDER_FEATURES);
    const probabilities = new Float32Array(n * outputs.length);
    for (let first = 0; first < n; first += batchSize) {
      const count = Math.min(batchSize, n - first);
      const [f, p] = tf.tidy(() => {
        const out = this.forward(tf.tensor4d(images.subarray(first * size, (first + count) * size), [count, side, side, channels]));
        return [out.features, tf.softmax(out.logits)];
      });
      features.set(f.dataSync(), first * FOLDER_FEATURES);
      probabilities.set(p.dataSync(), first * outputs.length);
      f.dispose();
      p.dispose();
    }
    return { features, probabilities };
  }

  /** Features and probabilities of n of the folder's images (or samples like them): imageSide × imageSide × channels each, in [-1, 1]. */
  classify(images: Float32Array, n: number): ClassifierOutputs {
    return this.classifyPrepared(this.prepare(images, n), n);
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
  }
}

/**
 * 2x2 average pooling, as a space-to-depth (each 2x2 square one pixel of 4x the channels) times a
 * fixed averaging matrix: a transpose that keeps the channels last and a matrix product, which every
 * backend differentiates and the blas backend runs natively (tfjs's own pooling gradient is a slow
 * JavaScript loop on the cpu-style backends).
 */
function averagePool(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const average = new Float32Array(4 * c * c);
    for (let k = 0; k < 4; k++) for (let j = 0; j < c; j++) average[(k * c + j) * c + j] = 0.25;
    const rows = tf.reshape(spaceToDepth(x), [(b * h * w) / 4, 4 * c]);
    return tf.reshape(tf.matMul(rows, tf.tensor2d(average, [4 * c, c])), [b, h / 2, w / 2, c]);
  });
}

/** The task a folder's images give: its classes where it has two or more, else rotations. */
export function taskOf(images: FolderImages): { task: FolderTask; outputs: string[] } {
  const names = images.classNames ?? [];
  return images.labels && names.length >= 2 ? { task: 'classes', outputs: [...names] } : { task: 'rotation', outputs: [...ROTATIONS] };
}

/** The accuracy on the held-out images (prepared): plain and balanced over classes (rotation: each image turned four ways, balanced over the turns). */
function heldOutAccuracy(classifier: FolderClassifier, prepared: Float32Array, heldOut: Int32Array, labels: Int32Array | undefined): HeldOutAccuracy {
  const { task, outputs, side, channels } = classifier.info;
  if (heldOut.length === 0) return { count: 0, accuracy: NaN, balanced: NaN };
  const size = side * side * channels;
  const turns = task === 'rotation' ? 4 : 1;
  const batch = new Float32Array(heldOut.length * turns * size);
  const truth = new Int32Array(heldOut.length * turns);
  heldOut.forEach((i, j) => {
    for (let q = 0; q < turns; q++) {
      rotateInto(prepared, i, side, channels, q, batch, (j * turns + q) * size);
      truth[j * turns + q] = task === 'rotation' ? q : labels![i];
    }
  });
  const { probabilities } = classifier.classifyPrepared(batch, truth.length);
  const right = new Array<number>(outputs.length).fill(0);
  const seen = new Array<number>(outputs.length).fill(0);
  truth.forEach((t, i) => {
    seen[t]++;
    if (argmax(probabilities, i * outputs.length, outputs.length) === t) right[t]++;
  });
  const present = seen.map((n, k) => [n, k]).filter(([n]) => n > 0);
  return {
    count: heldOut.length,
    accuracy: right.reduce((a, b) => a + b, 0) / truth.length,
    balanced: present.reduce((a, [n, k]) => a + right[k] / n, 0) / present.length,
  };
}

export interface TrainOptions {
  /** Mirror training images at random (as the run did). */
  flip: boolean;
  seed?: number;
  /** Images seen in training (default: 25 epochs of the training split, within 3,000..100,000). */
  seen?: number;
  progress?: Progress;
}

/** A classifier trained on `images` (all but the held-out split), and its held-out accuracy. */
export function trainFolderClassifier(images: FolderImages, options: TrainOptions): FolderClassifier {
  const started = Date.now();
  const { flip, seed = 0, progress = silentProgress } = options;
  const { task, outputs } = taskOf(images);
  const labels = task === 'classes' ? images.labels : undefined;
  const { train, heldOut } = heldOutSplit(images.count, labels);
  if (train.length === 0) throw new RangeError('the folder classifier needs at least one image to train on');
  const side = classifierSide(images.side);
  const rng = new Rng(seed);
  const info: FolderClassifierInfo = { task, outputs, imageSide: images.side, channels: images.channels, side, flip, trainCount: train.length, heldOut: { count: 0, accuracy: NaN, balanced: NaN }, seconds: 0 };
  const classifier = new FolderClassifier(info, rng);
  const prepared = classifier.prepare(images.data, images.count);
  // Inverse class frequencies, mean 1 over the training images.
  const weightOf = new Float32Array(outputs.length).fill(1);
  if (labels) {
    const counts = new Array<number>(outputs.length).fill(0);
    for (const i of train) counts[labels[i]]++;
    const present = counts.filter((n) => n > 0).length;
    counts.forEach((n, k) => (weightOf[k] = n > 0 ? train.length / (present * n) : 0));
  }
  const seen = options.seen ?? Math.min(MAX_SEEN, Math.max(MIN_SEEN, EPOCHS * train.length));
  const steps = Math.max(1, Math.ceil(seen / Math.min(BATCH, train.length)));
  const shift = Math.max(1, Math.round(side / 16));
  const adam = new Adam(adamConfig(1e-3), classifier.variables);
  progress.start(steps, {});
  let order = rng.permutation(train.length);
  let at = 0;
  for (let step = 0; step < steps; step++) {
    const size = Math.min(BATCH, train.length);
    if (at + size > train.length) {
      order = rng.permutation(train.length);
      at = 0;
    }
    const indices = Int32Array.from(order.subarray(at, at + size), (j) => train[j]);
    at += size;
    const quarters = task === 'rotation' ? Int32Array.from(indices, () => rng.int(4)) : undefined;
    const x = augment(prepared, indices, side, images.channels, rng, { shift, flip, quarters });
    const target = Int32Array.from(indices, (i, b) => (quarters ? quarters[b] : labels![i]));
    const oneHot = new Float32Array(size * outputs.length);
    target.forEach((t, b) => (oneHot[b * outputs.length + t] = 1));
    const weights = Float32Array.from(target, (t) => weightOf[t]);
    const lr = step < Math.floor(steps * 0.8) ? 1e-3 : 1e-4; // a lower rate for the last fifth
    tf.tidy(() => {
      const xs = tf.tensor4d(x, [size, side, side, images.channels]);
      const ys = tf.tensor2d(oneHot, [size, outputs.length]);
      const ws = tf.tensor1d(weights);
      const { grads, value } = adam.gradients(() => tf.losses.softmaxCrossEntropy(ys, classifier.forward(xs).logits, ws) as tf.Scalar);
      adam.apply(grads, lr);
      value.dispose();
    });
    progress.update(step + 1, {});
  }
  adam.dispose();
  classifier.info.heldOut = heldOutAccuracy(classifier, prepared, heldOut, labels);
  classifier.info.seconds = (Date.now() - started) / 1000;
  const h = classifier.info.heldOut;
  progress.stop(`trained the folder classifier (${task === 'classes' ? `${outputs.length} classes` : 'rotations'}) in ${classifier.info.seconds.toFixed(0)} s: held-out accuracy ${h.count ? `${(h.accuracy * 100).toFixed(1)}% (balanced ${(h.balanced * 100).toFixed(1)}%) on ${h.count} images` : 'none (no image held out)'}`);
  return classifier;
}

/** Where a folder's classifier is cached: beside its decoded images (cacheDir()/folders), under the same key, and whether the run mirrors. */
export function classifierFile(key: string, flip: boolean, dir = path.join(cacheDir(), 'classifiers')): string {
  return path.join(dir, `${key}-${flip ? 'flip' : 'noflip'}-v${VERSION}.safetensors`);
}

/** The cache file: safetensors (the format diffuse already exchanges weights in, not one more of its own), the info and VERSION in its metadata. */
function save(classifier: FolderClassifier, file: string): void {
  const tensors = new Map<string, SafeTensor>(classifier.shapes.map(([name, shape]) => [name, { shape, values: classifier.variables.get(name)!.dataSync() as Float32Array }]));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeAtomically(file, encodeSafetensors(tensors, { format: FORMAT, version: String(VERSION), info: JSON.stringify(classifier.info) }));
}

/** The classifier cached in `file` for these images, or null (none, unreadable, or made for other images: it is then trained anew). */
export function loadFolderClassifier(file: string, images: FolderImages, flip: boolean): FolderClassifier | null {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    return null;
  }
  try {
    const { tensors, metadata } = decodeSafetensors(bytes, file);
    if (metadata.format !== FORMAT || metadata.version !== String(VERSION)) return null;
    const info = JSON.parse(metadata.info) as FolderClassifierInfo;
    const task = taskOf(images);
    const expected = heldOutSplit(images.count, task.task === 'classes' ? images.labels : undefined);
    const same =
      info.task === task.task &&
      JSON.stringify(info.outputs) === JSON.stringify(task.outputs) &&
      info.imageSide === images.side &&
      info.channels === images.channels &&
      info.side === classifierSide(images.side) &&
      info.flip === flip &&
      info.trainCount === expected.train.length &&
      info.heldOut.count === expected.heldOut.length;
    if (!same) return null;
    if (info.heldOut.count === 0) info.heldOut = { count: 0, accuracy: NaN, balanced: NaN }; // JSON keeps NaN as null
    const classifier = new FolderClassifier(info, new Rng(0));
    const { shapes } = classifier;
    const fits = tensors.size === shapes.length && shapes.every(([name, shape]) => JSON.stringify(tensors.get(name)?.shape) === JSON.stringify(shape));
    if (!fits) {
      classifier.dispose();
      return null;
    }
    for (const [name] of shapes) assignCopy(classifier.variables.get(name)!, tensors.get(name)!.values);
    return classifier;
  } catch {
    return null;
  }
}

/**
 * The classifier of a folder's images: from the cache (`key`: the folder cache's key for these images,
 * which covers every file's path, size and modification time and how they were decoded), else trained
 * and cached. `trained` says which; where the cache cannot be written, `log` says so and the next
 * evaluation trains again.
 */
export function getFolderClassifier(images: FolderImages, o: { key: string; flip: boolean; dir?: string; progress?: Progress; log?: (m: string) => void; seen?: number }): { classifier: FolderClassifier; trained: boolean; file: string } {
  const file = classifierFile(o.key, o.flip, o.dir);
  const cached = loadFolderClassifier(file, images, o.flip);
  if (cached) return { classifier: cached, trained: false, file };
  const classifier = trainFolderClassifier(images, { flip: o.flip, progress: o.progress, seen: o.seen });
  try {
    save(classifier, file);
  } catch (e) {
    o.log?.(`could not cache the folder classifier in ${file} (${(e as NodeJS.ErrnoException).code ?? e}); the next evaluation trains it again`);
  }
  return { classifier, trained: true, file };
}
