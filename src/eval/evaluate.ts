/**
 * Scores a set of generated digits with the project's classifier: the Fréchet distance (FD) and KID of
 * its penultimate features to those of real MNIST test digits, precision and recall of those features'
 * manifolds, the mean top-class probability (confidence), and how evenly the ten digits occur
 * (coverage: entropy of the predicted-label histogram / ln 10).
 */
import { RunRecord } from '../config/runRecord';
import { cropImages, loadMnist } from '../data/mnist';
import { UserError } from '../errors';
import { quantize } from '../io/grid';
import { DigitClassifier, FEATURES, argmax } from './classifier';
import { FeatureScores, Reference, referenceOf, scoreFeatures } from './featureSets';

export interface Scores extends FeatureScores {
  confidence: number;
  coverage: number;
  histogram: number[];
  /** The brightest image's mean pixel value (0 black .. 1 white): white-background failures show here. */
  maxBrightness: number;
}

/** The feature statistics of the first n MNIST test images: what samples are compared with. */
export function testReference(classifier: DigitClassifier, n: number): Reference {
  const test = loadMnist('test', n);
  return referenceOf(classifier.classify(test.data, test.count).features, test.count, FEATURES);
}

/** Scores n images (28x28 in [-1, 1], one after another) against the reference. */
export function score(classifier: DigitClassifier, images: Float32Array, n: number, reference: Reference): Scores {
  const { features, probabilities } = classifier.classify(images, n);
  const histogram = new Array<number>(10).fill(0);
  let confidence = 0;
  for (let i = 0; i < n; i++) {
    const label = argmax(probabilities, i * 10, 10);
    histogram[label]++;
    confidence += probabilities[i * 10 + label];
  }
  let entropy = 0;
  for (const count of histogram) if (count > 0) entropy -= (count / n) * Math.log(count / n);
  let maxBrightness = 0;
  const pixels = images.length / n;
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let p = i * pixels; p < (i + 1) * pixels; p++) sum += images[p];
    maxBrightness = Math.max(maxBrightness, (sum / pixels + 1) / 2);
  }
  return {
    ...scoreFeatures(features, n, reference),
    confidence: confidence / n,
    coverage: entropy / Math.log(10),
    histogram,
    maxBrightness,
  };
}

/** The floor: n real MNIST train images scored the same way. */
export function floorScores(classifier: DigitClassifier, n: number, reference: Reference): Scores {
  const train = loadMnist('train', n);
  return score(classifier, train.data, train.count, reference);
}

/** The frame to crop from a checkpoint's images to get 28×28 MNIST digits (MNIST-32: 2 px); other data is refused. */
export function mnistFrame(record: RunRecord): number {
  const { height, imageWidth, channels } = record.model;
  if (record.data.dataset === 'mnist' && height === 28 && imageWidth === 28 && channels === 1) return 0;
  if (record.data.dataset === 'mnist32' && height === 32 && imageWidth === 32 && channels === 1) return 2;
  const source = record.data.dataset === 'folder' ? record.data.path : record.data.dataset;
  throw new UserError(`the digit classifier scores MNIST digits; this run makes ${height}x${imageWidth}x${channels} images of ${source}`);
}

/** n generated images of `record`'s run as the classifier sees them: 28×28, at the 8-bit levels a saved file would hold. */
export function asDigits(record: RunRecord, images: Float32Array, n: number): Float32Array {
  const frame = mnistFrame(record);
  return quantize(frame ? cropImages(images, n, { height: record.model.height, width: record.model.imageWidth, channels: 1 }, frame) : images);
}
