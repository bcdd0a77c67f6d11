/**
 * The digit classifier that judges samples: an MLP 784 → 1024 → 128 → 10 (ReLU), trained by the project
 * itself on MNIST train with random ±2-pixel shifts, cached under data/. Its 128 penultimate activations
 * are the features of the Fréchet distance.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { gatherBatch, epochBatches } from '../data/batches';
import { ImageSet, loadMnist, loadMnistLabels } from '../data/mnist';
import { UserError } from '../errors';
import { writeAtomically } from '../files';
import { concatValues } from '../io/checkpoint';
import { adamConfig } from '../config/defaults';
import { Adam } from '../optim/adam';
import { Rng } from '../rng';
import { assignCopy, variableFrom } from '../tensors';
import { Progress, silentProgress } from '../progress';

export const FEATURES = 128;
const LAYERS: [string, number, number][] = [
  ['hidden1', 784, 1024],
  ['hidden2', 1024, FEATURES],
  ['logits', FEATURES, 10],
];
const VERSION = 1;

export interface ClassifierOutputs {
  /** [n, FEATURES] penultimate activations. */
  features: Float32Array;
  /** [n, 10] class probabilities. */
  probabilities: Float32Array;
}

export class DigitClassifier {
  readonly variables = new Map<string, tf.Variable>();
  testAccuracy = NaN;

  constructor(rng: Rng) {
    for (const [name, fanIn, fanOut] of LAYERS) {
      const bound = Math.sqrt(6 / fanIn); // He-uniform, for ReLU
      this.variables.set(`${name}/kernel`, variableFrom(Float32Array.from({ length: fanIn * fanOut }, () => (2 * rng.uniform() - 1) * bound), [fanIn, fanOut], true));
      this.variables.set(`${name}/bias`, variableFrom(new Float32Array(fanOut), [fanOut], true));
    }
  }

  private dense(x: tf.Tensor2D, name: string): tf.Tensor2D {
    return tf.add(tf.matMul(x, this.variables.get(`${name}/kernel`) as tf.Tensor2D), this.variables.get(`${name}/bias`)!);
  }

  /** Features and logits for images in [-1, 1], [n, 784]. */
  forward(x: tf.Tensor2D): { features: tf.Tensor2D; logits: tf.Tensor2D } {
    const features = tf.relu(this.dense(tf.relu(this.dense(x, 'hidden1')), 'hidden2'));
    return { features, logits: this.dense(features, 'logits') };
  }

  /** Features and probabilities of n images, in batches. */
  classify(images: Float32Array, n: number, batchSize = 500): ClassifierOutputs {
    const features = new Float32Array(n * FEATURES);
    const probabilities = new Float32Array(n * 10);
    for (let first = 0; first < n; first += batchSize) {
      const count = Math.min(batchSize, n - first);
      const [f, p] = tf.tidy(() => {
        const out = this.forward(tf.tensor2d(images.subarray(first * 784, (first + count) * 784), [count, 784]));
        return [out.features, tf.softmax(out.logits)];
      });
      features.set(f.dataSync(), first * FEATURES);
      probabilities.set(p.dataSync(), first * 10);
      f.dispose();
      p.dispose();
    }
    return { features, probabilities };
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
  }
}

/** Shifts each 28x28 image by up to ±2 pixels in x and y (background −1 fills in). */
export function randomShift(batch: Float32Array, rng: Rng): Float32Array {
  const out = new Float32Array(batch.length).fill(-1);
  for (let b = 0; b < batch.length / 784; b++) {
    const dx = rng.int(5) - 2, dy = rng.int(5) - 2;
    for (let y = Math.max(0, dy); y < Math.min(28, 28 + dy); y++) {
      for (let x = Math.max(0, dx); x < Math.min(28, 28 + dx); x++) out[b * 784 + y * 28 + x] = batch[b * 784 + (y - dy) * 28 + (x - dx)];
    }
  }
  return out;
}

export function accuracy(classifier: DigitClassifier, images: ImageSet, labels: Uint8Array): number {
  const { probabilities } = classifier.classify(images.data, images.count);
  let correct = 0;
  for (let i = 0; i < images.count; i++) if (argmax(probabilities, i * 10, 10) === labels[i]) correct++;
  return correct / images.count;
}

export function argmax(values: ArrayLike<number>, offset: number, length: number): number {
  let best = 0;
  for (let k = 1; k < length; k++) if (values[offset + k] > values[offset + best]) best = k;
  return best;
}

export function trainClassifier(options: { epochs?: number; seed?: number; progress?: Progress } = {}): DigitClassifier {
  const { epochs = 12, seed = 0, progress = silentProgress } = options;
  const rng = new Rng(seed);
  const classifier = new DigitClassifier(rng);
  const train = loadMnist('train');
  const labels = loadMnistLabels('train');
  const adam = new Adam(adamConfig(1e-3), classifier.variables);
  const stepsPerEpoch = Math.ceil(train.count / 128);
  progress.start(epochs * stepsPerEpoch, {});
  let step = 0;
  for (let epoch = 0; epoch < epochs; epoch++) {
    adam.config.lr = epoch < epochs - 3 ? 1e-3 : 1e-4; // a lower rate for the last three epochs
    for (const indices of epochBatches(train.count, 128, rng)) {
      const x = randomShift(gatherBatch(train.data, 784, indices), rng);
      const oneHot = new Float32Array(indices.length * 10);
      indices.forEach((i, b) => (oneHot[b * 10 + labels[i]] = 1));
      tf.tidy(() => {
        const xs = tf.tensor2d(x, [indices.length, 784]);
        const ys = tf.tensor2d(oneHot, [indices.length, 10]);
        adam.apply(adam.gradients(() => tf.losses.softmaxCrossEntropy(ys, classifier.forward(xs).logits) as tf.Scalar).grads);
      });
      progress.update(++step, {});
    }
  }
  adam.dispose();
  classifier.testAccuracy = accuracy(classifier, loadMnist('test'), loadMnistLabels('test'));
  progress.stop(`trained the digit classifier: test accuracy ${(classifier.testAccuracy * 100).toFixed(2)}%`);
  return classifier;
}

export function defaultClassifierDir(): string {
  return process.env.DIFFUSE_DATA_DIR ?? path.resolve(__dirname, '..', '..', '..', 'data');
}

function cacheFiles(dir: string) {
  return { meta: path.join(dir, `mnist-classifier-v${VERSION}.json`), weights: path.join(dir, `mnist-classifier-v${VERSION}.bin`) };
}

export function saveClassifier(classifier: DigitClassifier, dir: string): void {
  const files = cacheFiles(dir);
  fs.mkdirSync(dir, { recursive: true });
  const arrays = [...classifier.variables].map(([name, v]) => ({ name, shape: v.shape, values: v.dataSync() as Float32Array }));
  writeAtomically(files.weights, new Uint8Array(concatValues(arrays).buffer));
  const meta = { version: VERSION, testAccuracy: classifier.testAccuracy, tensors: arrays.map(({ name, shape }) => ({ name, shape })) };
  writeAtomically(files.meta, JSON.stringify(meta, null, 2) + '\n');
}

/** The cached classifier, or null when there is none (or it is unreadable: it is then trained anew). */
export function loadClassifier(dir: string): DigitClassifier | null {
  const files = cacheFiles(dir);
  try {
    const meta = JSON.parse(fs.readFileSync(files.meta, 'utf8')) as { testAccuracy: number; tensors: { name: string; shape: number[] }[] };
    const bytes = fs.readFileSync(files.weights);
    const floats = new Float32Array(bytes.length / 4);
    new Uint8Array(floats.buffer).set(bytes);
    const classifier = new DigitClassifier(new Rng(0));
    let offset = 0;
    for (const t of meta.tensors) {
      const v = classifier.variables.get(t.name);
      const size = t.shape.reduce((a, b) => a * b, 1);
      if (!v || v.size !== size || offset + size > floats.length) {
        classifier.dispose();
        return null;
      }
      assignCopy(v, floats.subarray(offset, offset + size));
      offset += size;
    }
    classifier.testAccuracy = meta.testAccuracy;
    return classifier;
  } catch {
    return null;
  }
}

/** The cached classifier, trained and cached on first use. */
export function getClassifier(dir = defaultClassifierDir(), progress?: Progress): DigitClassifier {
  const cached = loadClassifier(dir);
  if (cached) return cached;
  const classifier = trainClassifier({ progress });
  try {
    saveClassifier(classifier, dir);
  } catch (e) {
    throw new UserError(`cannot cache the digit classifier in ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return classifier;
}
