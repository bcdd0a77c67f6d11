/**
 * The folder classifier (src/eval/folderClassifier.ts) and its figures (folderFeatures.ts): FD, KID,
 * precision and recall on known cases, the held-out split, the rotation task of a folder without
 * classes, and its cache, keyed by the folder's content: reused, and rebuilt when a file changes.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadImageFolder } from '../../../src/data/folder';
import { sharp } from '../../../src/files';
import { FolderClassifier, FolderImages, classifierFile, getFolderClassifier, trainFolderClassifier } from '../../../src/eval/folderClassifier';
import { readSafetensors, writeSafetensors } from '../../../src/io/safetensors';
import { heldOutSplit, resizeImages } from '../../../src/eval/folderImages';
import { folderClassAccuracy, folderFeatureScores, referenceAndFloor } from '../../../src/eval/folderFeatures';
import { BLAS_BACKEND, registerBlasBackend } from '../../../src/backend/blasBackend';
import { Rng } from '../../../src/rng';
import { tempDir, useBackend } from '../../helpers';

// What evaluate trains it on (blas, a second for these); without the native kernels wasm, ten times slower
// (tfjs's cpu backend differentiates convolutions a hundred times slower still).
async function backend(): Promise<void> {
  if (registerBlasBackend()) await tf.setBackend(BLAS_BACKEND);
  else await useBackend('wasm');
}

const SIDE = 16;

/**
 * n images of two classes, side × side RGB in [-1, 1] on a white ground: a disk (class 0) or a square
 * (class 1) of a random dark colour (shapes in ink: bright random colours would let colour, which
 * shuffling keeps, dominate a classifier this small) and a random place.
 */
function shapes(n: number, rng: Rng, side = SIDE): FolderImages {
  const size = side * side * 3;
  const data = new Float32Array(n * size).fill(1);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    const colour = [rng.uniform() * 0.4 - 1, rng.uniform() * 0.4 - 1, rng.uniform() * 0.4 - 1];
    const r = side * (0.2 + 0.1 * rng.uniform());
    const cx = r + rng.uniform() * (side - 2 * r);
    const cy = r + rng.uniform() * (side - 2 * r);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const inside = labels[i] === 0 ? (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 < r * r : Math.abs(x + 0.5 - cx) < r * 0.9 && Math.abs(y + 0.5 - cy) < r * 0.9;
        if (inside) for (let c = 0; c < 3; c++) data[i * size + (y * side + x) * 3 + c] = colour[c];
      }
    }
  }
  return { data, count: n, side, channels: 3, labels, classNames: ['disk', 'square'] };
}

/** Each image's pixels in a random order of its own (colours kept, shapes gone). */
function shufflePixels(images: FolderImages, rng: Rng): Float32Array {
  const pixels = images.side * images.side;
  const out = new Float32Array(images.data.length);
  for (let i = 0; i < images.count; i++) {
    const order = rng.permutation(pixels);
    for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) out[(i * pixels + p) * 3 + c] = images.data[(i * pixels + order[p]) * 3 + c];
  }
  return out;
}

let set: FolderImages;
let classifier: FolderClassifier;

before(async () => {
  await backend();
  set = shapes(120, new Rng(1));
  classifier = trainFolderClassifier(set, { flip: true, seen: 3000 });
});

test('the held-out split: stratified, seeded, about a tenth of each class, at least one of a class of two', () => {
  const labels = Int32Array.from({ length: 53 }, (_, i) => (i < 40 ? 0 : i < 51 ? 1 : 2));
  const { train, heldOut } = heldOutSplit(53, labels);
  assert.equal(train.length + heldOut.length, 53);
  assert.deepEqual([0, 1, 2].map((c) => heldOut.filter((i) => labels[i] === c).length), [4, 1, 1]);
  assert.deepEqual(Array.from(heldOutSplit(53, labels).heldOut), Array.from(heldOut));
  assert.notDeepEqual(Array.from(heldOutSplit(53, labels, 0.1, 7).heldOut), Array.from(heldOut));
  assert.equal(heldOutSplit(1).heldOut.length, 0);
  // 2x2 averaging halves the side.
  assert.deepEqual(Array.from(resizeImages(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]), 1, 4, 1, 2)), [2.5, 4.5, 10.5, 12.5]);
});

test('the classifier learns the classes, and its held-out accuracy is measured on the images it did not train on', () => {
  const { info } = classifier;
  assert.equal(info.task, 'classes');
  assert.deepEqual(info.outputs, ['disk', 'square']);
  assert.equal(info.heldOut.count, 12);
  assert.equal(info.trainCount, 108);
  assert.ok(info.heldOut.accuracy >= 0.75, `held-out accuracy ${info.heldOut.accuracy}`);
  // Class accuracy of "samples" drawn as their own class: high; drawn as the other class: low.
  const { probabilities } = classifier.classify(set.data, set.count);
  const right = folderClassAccuracy(classifier, probabilities, set.labels!, ['disk', 'square']);
  const wrong = folderClassAccuracy(classifier, probabilities, set.labels!.map((l) => 1 - l), ['disk', 'square']);
  assert.ok(typeof right !== 'string' && typeof wrong !== 'string');
  assert.ok(right.overall > 0.8 && wrong.overall < 0.2, `${right.overall} ${wrong.overall}`);
  assert.match(folderClassAccuracy(classifier, probabilities, set.labels!, ['cat', 'dog']) as string, /classes \(disk, square\) are not the run's \(cat, dog\)/);
});

test('known cases: the reference images against themselves score FD 0, precision and recall 1; shuffled pixels score far off; real images near the floor', () => {
  const n = 60;
  const size = SIDE * SIDE * 3;
  const { reference } = referenceAndFloor(set, classifier, n);
  assert.equal(reference.length, 60);
  const same = new Float32Array(n * size);
  reference.forEach((i, b) => same.set(set.data.subarray(i * size, (i + 1) * size), b * size));
  const itself = folderFeatureScores(classifier, same, n, set).scores!;
  assert.equal(itself.referenceN, 60);
  assert.ok(itself.samples.fd < 1e-3, `fd ${itself.samples.fd}`);
  assert.equal(itself.samples.precision, 1);
  assert.equal(itself.samples.recall, 1);
  assert.ok(Math.abs(itself.samples.kid) < 0.05 * itself.floor.fd + 1e-3, `kid ${itself.samples.kid}`);
  // The floor: the 12 held-out images and 48 others, none of the reference.
  assert.equal(itself.floor.n, 60);
  assert.equal(itself.floorHeldOut, 12);

  const shuffled = folderFeatureScores(classifier, shufflePixels(set, new Rng(3)), n, set).scores!;
  assert.ok(shuffled.samples.fd > 3 * shuffled.floor.fd, `shuffled fd ${shuffled.samples.fd}, floor ${shuffled.floor.fd}`);
  assert.ok(shuffled.samples.kid > 5 * Math.max(shuffled.floor.kid, 0) + 3 * shuffled.samples.kidStd, `shuffled kid ${shuffled.samples.kid} ± ${shuffled.samples.kidStd}`);
  assert.ok(shuffled.samples.precision < 0.3, `shuffled precision ${shuffled.samples.precision}`);
  assert.ok(shuffled.floor.precision > 0.7, `floor precision ${shuffled.floor.precision}`);

  // Fresh images of the same kind score near the floor.
  const fresh = shapes(n, new Rng(9));
  const like = folderFeatureScores(classifier, fresh.data, n, set).scores!;
  assert.ok(like.samples.fd < 2 * like.floor.fd + 1, `fresh fd ${like.samples.fd}, floor ${like.floor.fd}`);
  assert.ok(like.samples.precision > 0.6, `fresh precision ${like.samples.precision}`);
  // Too few images for a reference and a floor: no figures.
  assert.equal(folderFeatureScores(classifier, same, 4, { ...set, count: 7 }).scores, null);
});

test('a folder without classes learns which of four rotations an image had', () => {
  const { labels: _, classNames: __, ...plain } = shapes(40, new Rng(4));
  const rotations = trainFolderClassifier(plain, { flip: false, seen: 400 });
  assert.equal(rotations.info.task, 'rotation');
  assert.deepEqual(rotations.info.outputs, ['0', '90', '180', '270']);
  assert.equal(rotations.info.heldOut.count, 4);
  assert.ok(rotations.info.heldOut.accuracy >= 0 && rotations.info.heldOut.accuracy <= 1);
  const { probabilities } = rotations.classify(plain.data, 4);
  assert.match(folderClassAccuracy(rotations, probabilities, [0, 1, 0, 1], ['a', 'b']) as string, /learned rotations/);
  rotations.dispose();
});

/** Writes `images` as PNG files DIR/<class>/<i>.png. */
async function writeFolder(dir: string, images: FolderImages): Promise<void> {
  const size = images.side * images.side * 3;
  for (let i = 0; i < images.count; i++) {
    const cls = path.join(dir, images.classNames![images.labels![i]]);
    fs.mkdirSync(cls, { recursive: true });
    const bytes = Buffer.from(Array.from(images.data.subarray(i * size, (i + 1) * size), (v) => Math.round((v + 1) * 127.5)));
    await sharp(bytes, { raw: { width: images.side, height: images.side, channels: 3 } }).png().toFile(path.join(cls, `${i}.png`));
  }
}

test('the cache: keyed by the folder cache key, reused on a second load, rebuilt when a file in the folder changes', async () => {
  const root = tempDir();
  process.env.DIFFUSE_CACHE_DIR = path.join(root, 'cache');
  const dir = path.join(root, 'images');
  await writeFolder(dir, shapes(24, new Rng(5)));
  const options = { size: SIDE, channels: 3 as const, background: '#ffffff', conditional: true };
  const load = async () => {
    const s = await loadImageFolder(dir, options);
    return { images: { data: s.data, count: s.count, side: s.height, channels: s.channels, labels: s.labels, classNames: s.classNames }, key: s.key };
  };
  const first = await load();
  const a = getFolderClassifier(first.images, { key: first.key, flip: false, seen: 200 });
  assert.equal(a.trained, true);
  assert.equal(a.file, classifierFile(first.key, false));
  assert.ok(a.file.startsWith(path.join(root, 'cache', 'classifiers')), a.file);
  assert.ok(fs.existsSync(path.join(root, 'cache', 'folders', `${first.key}.bin`)), 'beside the decoded folder, under its key');
  // safetensors, what the classifier is in its metadata.
  const stored = readSafetensors(a.file);
  assert.equal(stored.metadata.format, 'diffuse-folder-classifier');
  assert.deepEqual(JSON.parse(stored.metadata.info).outputs, a.classifier.info.outputs);
  assert.equal(stored.tensors.size, a.classifier.variables.size);
  const mtime = fs.statSync(a.file).mtimeMs;
  const features = a.classifier.classify(first.images.data, 4).features;

  // A second evaluation: the same key, the cached weights, no training, the file untouched.
  const again = await load();
  assert.equal(again.key, first.key);
  const b = getFolderClassifier(again.images, { key: again.key, flip: false, seen: 200 });
  assert.equal(b.trained, false);
  assert.equal(fs.statSync(b.file).mtimeMs, mtime);
  assert.deepEqual(b.classifier.info, a.classifier.info);
  assert.deepEqual(Array.from(b.classifier.classify(again.images.data, 4).features), Array.from(features));
  // Another augmentation (the run flips) is another classifier.
  const flipped = getFolderClassifier(again.images, { key: again.key, flip: true, seen: 100 });
  assert.equal(flipped.trained, true);
  assert.notEqual(flipped.file, a.file);
  flipped.classifier.dispose();

  // A file changed: a new key, a new classifier.
  const changed = path.join(dir, 'disk', '0.png');
  await sharp(Buffer.alloc(SIDE * SIDE * 3, 7), { raw: { width: SIDE, height: SIDE, channels: 3 } }).png().toFile(changed);
  const later = new Date(Date.now() + 5000);
  fs.utimesSync(changed, later, later);
  const edited = await load();
  assert.notEqual(edited.key, first.key);
  const c = getFolderClassifier(edited.images, { key: edited.key, flip: false, seen: 200 });
  assert.equal(c.trained, true);
  assert.notEqual(c.file, a.file);
  // A damaged cache file is trained anew, not trusted.
  const good = fs.readFileSync(c.file);
  fs.writeFileSync(c.file, good.subarray(0, good.length - 4));
  const retrained = [getFolderClassifier(edited.images, { key: edited.key, flip: false, seen: 100 })];
  // So is another safetensors file (its tensors alike, but not a classifier's metadata), and one of an older version.
  const trained = readSafetensors(c.file);
  for (const change of [{ format: 'something-else' }, { version: '1' }] as Record<string, string>[]) {
    writeSafetensors(c.file, trained.tensors, { ...trained.metadata, ...change });
    retrained.push(getFolderClassifier(edited.images, { key: edited.key, flip: false, seen: 100 }));
  }
  assert.deepEqual(retrained.map((r) => r.trained), [true, true, true]);
  for (const x of [a, b, c, ...retrained]) x.classifier.dispose();
});
