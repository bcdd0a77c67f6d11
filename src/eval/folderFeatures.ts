/**
 * A folder model's samples in the folder classifier's features (folderClassifier.ts), scored as MNIST
 * samples are in the digit classifier's (evaluate.ts): the Fréchet distance, KID, precision and recall
 * against the folder's images, the same figures for real images (the floor: what a model that drew
 * fresh images of the folder would score at this size), and a conditional model's class accuracy.
 *
 * The reference is m = min(n, half the folder) images drawn (seeded) from those the classifier trained
 * on: n, as for MNIST, where the folder holds 2n images or more. The floor is m other real images: the
 * classifier's held-out images first (real images it has not seen, as the samples are), then other
 * images outside the reference. The samples' figures and the floor's are thus at the same m of real
 * images, and the floor at m images of its own.
 */
import { FeatureScores, referenceOf, scoreFeatures } from './featureSets';
import { ClassAccuracy, classAccuracy, predictedLabels } from './classAccuracy';
import { FOLDER_FEATURES, FolderClassifier, FolderImages } from './folderClassifier';
import { heldOutSplit } from './folderImages';
import { quantize } from '../io/grid';
import { Rng } from '../rng';

export interface FolderFeatureScores {
  samples: FeatureScores;
  floor: FeatureScores;
  /** Real images compared with. */
  referenceN: number;
  /** Of the floor's images, those the classifier did not train on. */
  floorHeldOut: number;
}

/** The fewest images a reference or floor may have: KID compares subsets of half of them, of at least 2. */
export const FEWEST_REAL = 4;

/** The images of `indices` (each `size` values of `data`) one after another. */
function gather(data: Float32Array, size: number, indices: ArrayLike<number>): Float32Array {
  const out = new Float32Array(indices.length * size);
  for (let b = 0; b < indices.length; b++) out.set(data.subarray(indices[b] * size, (indices[b] + 1) * size), b * size);
  return out;
}

/** Which of the folder's images are the reference and which the floor, for n samples (see the file's comment); seeded. */
export function referenceAndFloor(images: FolderImages, classifier: FolderClassifier, n: number, seed = 0): { reference: Int32Array; floor: Int32Array; floorHeldOut: number } {
  const { train, heldOut } = heldOutSplit(images.count, classifier.info.task === 'classes' ? images.labels : undefined);
  const m = Math.min(n, Math.floor(images.count / 2));
  const order = new Rng(seed).permutation(train.length);
  const shuffled = Int32Array.from(order, (j) => train[j]);
  const ref = shuffled.subarray(0, Math.min(m, shuffled.length));
  const held = heldOut.subarray(0, Math.min(m, heldOut.length));
  const floor = new Int32Array(Math.min(m, held.length + shuffled.length - ref.length));
  floor.set(held);
  floor.set(shuffled.subarray(ref.length, ref.length + floor.length - held.length), held.length);
  return { reference: Int32Array.from(ref), floor, floorHeldOut: held.length };
}

/**
 * FD, KID, precision and recall of n samples (the folder's side, [-1, 1]; brought to 8-bit levels as
 * the folder's images are) against the reference, and of the floor; null where the folder has fewer
 * than 2 · FEWEST_REAL images.
 */
export function folderFeatureScores(classifier: FolderClassifier, samples: Float32Array, n: number, images: FolderImages, seed = 0): { scores: FolderFeatureScores | null; probabilities: Float32Array } {
  const { features, probabilities } = classifier.classify(quantize(samples.subarray(0, n * images.side * images.side * images.channels)), n);
  const split = referenceAndFloor(images, classifier, n, seed);
  if (split.reference.length < FEWEST_REAL || split.floor.length < FEWEST_REAL) return { scores: null, probabilities };
  const size = images.side * images.side * images.channels;
  const ref = referenceOf(classifier.classify(gather(images.data, size, split.reference), split.reference.length).features, split.reference.length, FOLDER_FEATURES);
  const floor = classifier.classify(gather(images.data, size, split.floor), split.floor.length).features;
  return {
    scores: { samples: scoreFeatures(features, n, ref), floor: scoreFeatures(floor, split.floor.length, ref), referenceN: split.reference.length, floorHeldOut: split.floorHeldOut },
    probabilities,
  };
}

/**
 * The class accuracy of samples drawn as `drawn` (indices into `runClasses`, the run's classes) as the
 * folder classifier labels them; a string saying why where it cannot judge them (it learned rotations,
 * or other classes than the run's).
 */
export function folderClassAccuracy(classifier: FolderClassifier, probabilities: Float32Array, drawn: ArrayLike<number>, runClasses: readonly string[]): ClassAccuracy | string {
  const { task, outputs } = classifier.info;
  if (task !== 'classes') return 'the folder classifier learned rotations: the folder it was trained on has fewer than two class subfolders';
  if (outputs.length !== runClasses.length || outputs.some((name, k) => name !== runClasses[k])) {
    return `the folder classifier's classes (${outputs.join(', ')}) are not the run's (${runClasses.join(', ')})`;
  }
  return classAccuracy(predictedLabels(probabilities, drawn.length, outputs.length), drawn, runClasses);
}
