import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { DataRecord, loadTrainingData } from '../../../src/data/dataset';
import { loadImageFolder } from '../../../src/data/folder';
import { loadMnist, loadMnistLabels } from '../../../src/data/mnist';
import { OptionError } from '../../../src/errors';
import { tempDir } from '../../helpers';

const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

function mnistRecord(dataset: 'mnist' | 'mnist32', over: Partial<DataRecord> = {}): DataRecord {
  return { dataset, flip: false, limit: 0, count: 0, classes: [], conditional: false, ...over };
}

function folderRecord(dir: string, over: Partial<DataRecord> = {}): DataRecord {
  return { dataset: 'folder', path: dir, imageSize: 4, channels: 3, background: '#000000', flip: false, limit: 0, count: 0, classes: [], conditional: true, ...over };
}

/** A 4×4 PNG of one colour at `file` (its folders made). */
async function png(file: string, rgb: [number, number, number]): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toFile(file);
}

/** Runs `f` with its own decode cache folder, which it is given. */
async function withCache<T>(f: (cache: string) => Promise<T>): Promise<T> {
  const cache = tempDir();
  const before = process.env.DIFFUSE_CACHE_DIR;
  process.env.DIFFUSE_CACHE_DIR = cache;
  try {
    return await f(cache);
  } finally {
    if (before === undefined) delete process.env.DIFFUSE_CACHE_DIR;
    else process.env.DIFFUSE_CACHE_DIR = before;
  }
}

const cacheEntries = (cache: string) => (fs.existsSync(path.join(cache, 'folders')) ? fs.readdirSync(path.join(cache, 'folders')).length : 0);

test('conditional MNIST and MNIST-32 come with the first `limit` labels, in the images\' order, and the digits as class names; unconditional with none', async () => {
  const labels = Int32Array.from(loadMnistLabels('train', 50));
  for (const over of [{ classes: DIGITS, conditional: true }, { classes: DIGITS }, { conditional: true }]) {
    const set = await loadTrainingData(mnistRecord('mnist', { limit: 50, ...over }));
    assert.equal(set.count, 50);
    assert.ok(set.labels instanceof Int32Array);
    assert.deepEqual(set.labels, labels);
    assert.deepEqual(set.classNames, DIGITS);
    assert.deepEqual(set.data, loadMnist('train', 50).data);
  }
  assert.deepEqual(Array.from(labels.subarray(0, 4)), [5, 0, 4, 1]); // MNIST's first digits
  const padded = await loadTrainingData(mnistRecord('mnist32', { limit: 7, classes: DIGITS, conditional: true }));
  assert.deepEqual([padded.count, padded.height], [7, 32]);
  assert.deepEqual(padded.labels, labels.subarray(0, 7));
  assert.deepEqual(padded.classNames, DIGITS);
  for (const dataset of ['mnist', 'mnist32'] as const) {
    const plain = await loadTrainingData(mnistRecord(dataset, { limit: 5 }));
    assert.equal(plain.labels, undefined);
    assert.equal(plain.classNames, undefined);
  }
  await assert.rejects(loadTrainingData(mnistRecord('mnist', { limit: 5, classes: ['cat', 'dog'] })), /not MNIST's digits/);
});

/**
 * Three classes whose names sort differently by code unit (Banana first) and by localeCompare('en')
 * (apple, Banana, cherry); each class's images are of its own colour, one image sits two folders deep,
 * one file of Banana cannot be read, and a text file in the root is ignored.
 */
const COLOURS: Record<string, [number, number, number]> = { apple: [255, 0, 0], Banana: [0, 255, 0], cherry: [0, 0, 255] };
async function classFolder(): Promise<string> {
  const dir = tempDir();
  await png(path.join(dir, 'apple', 'a1.png'), COLOURS.apple);
  await png(path.join(dir, 'apple', 'deep', 'er', 'a2.png'), COLOURS.apple);
  await png(path.join(dir, 'Banana', 'b1.png'), COLOURS.Banana);
  fs.writeFileSync(path.join(dir, 'Banana', 'b2-broken.png'), 'not a png');
  for (const n of [1, 2, 3]) await png(path.join(dir, 'cherry', `c${n}.png`), COLOURS.cherry);
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'not an image');
  return dir;
}

/** Each image's colour (its first pixel) by name, from a loaded set. */
function colourNames(set: { data: Float32Array; count: number }): string[] {
  return Array.from({ length: set.count }, (_, i) => {
    const px = Array.from(set.data.subarray(i * 48, i * 48 + 3), (v) => Math.round((v + 1) * 127.5));
    return Object.keys(COLOURS).find((k) => COLOURS[k].every((c, j) => Math.abs(c - px[j]) <= 1)) ?? `?${px}`;
  });
}

test('a conditional folder: its subfolders are the classes, sorted by name; each image is labelled by its class folder, unreadable files dropped with their labels; a cached load gives the same', async () => {
  const dir = await classFolder();
  await withCache(async (cache) => {
    const logs: string[] = [];
    const first = await loadTrainingData(folderRecord(dir), (m) => logs.push(m));
    assert.deepEqual(first.classNames, ['apple', 'Banana', 'cherry']);
    assert.equal(first.count, 6);
    assert.ok(first.labels instanceof Int32Array);
    // sorted path order: Banana/b1 (b2 unreadable), apple/a1, apple/deep/er/a2, cherry/c1..c3
    assert.deepEqual(Array.from(first.labels!), [1, 0, 0, 2, 2, 2]);
    assert.deepEqual(colourNames(first), Array.from(first.labels!, (l) => first.classNames![l]), 'each label is its image\'s class');
    const perClass = first.classNames!.map((_, c) => first.labels!.filter((l) => l === c).length);
    assert.deepEqual(perClass, [2, 1, 3]);
    assert.ok(logs.some((m) => /skipped 1 of 7/.test(m)));
    assert.equal(cacheEntries(cache), 1);

    logs.length = 0;
    const second = await loadTrainingData(folderRecord(dir), (m) => logs.push(m));
    assert.ok(logs.some((m) => /images decoded earlier/.test(m)), 'the second load is the cache\'s');
    assert.deepEqual(second, first);
    assert.equal(cacheEntries(cache), 1);

    // A resumed run's record names its classes: the same ones load; others are refused.
    assert.deepEqual((await loadTrainingData(folderRecord(dir, { classes: ['apple', 'Banana', 'cherry'] }))).labels, first.labels);
    await assert.rejects(loadTrainingData(folderRecord(dir, { classes: ['apple', 'cherry'] })), (e: Error) => e instanceof OptionError && /classes are now apple, Banana, cherry; the run's are apple, cherry/.test(e.message));

    // A limit takes the first files in sorted path order after classifying: every class is still named.
    logs.length = 0;
    const limited = await loadTrainingData(folderRecord(dir, { limit: 3 }), (m) => logs.push(m));
    assert.deepEqual(limited.classNames, ['apple', 'Banana', 'cherry']);
    assert.deepEqual(Array.from(limited.labels!), [1, 0]); // Banana/b1, (b2 unreadable), apple/a1
    assert.deepEqual(colourNames(limited), ['Banana', 'apple']);
    assert.ok(logs.some((m) => /hold images of 2 of the 3 classes/.test(m)), logs.join('\n'));
  });
});

test('the unconditional path is unchanged: no labels, no class names, root images allowed, its own cache entry', async () => {
  const dir = await classFolder();
  await png(path.join(dir, 'root.png'), COLOURS.apple);
  await withCache(async (cache) => {
    const logs: string[] = [];
    const conditionalFirst = await loadTrainingData(folderRecord(path.join(dir, 'cherry')), (m) => logs.push(m)).catch((e: Error) => e);
    assert.ok(conditionalFirst instanceof OptionError, 'cherry has no subfolders: its images are all root images');
    for (const record of [folderRecord(dir, { conditional: false }), folderRecord(dir, { conditional: false })]) {
      const set = await loadTrainingData(record, (m) => logs.push(m));
      assert.equal(set.count, 7);
      assert.equal(set.labels, undefined);
      assert.equal(set.classNames, undefined);
      assert.deepEqual(Object.keys(set).sort(), ['channels', 'count', 'data', 'files', 'height', 'key', 'skipped', 'width']);
    }
    assert.ok(logs.some((m) => /images decoded earlier/.test(m)));
    // the same folder loaded conditionally is another entry, not the unconditional one's bytes
    fs.rmSync(path.join(dir, 'root.png'));
    logs.length = 0;
    await loadTrainingData(folderRecord(dir, { conditional: false }), (m) => logs.push(m));
    const entries = cacheEntries(cache);
    const conditional = await loadTrainingData(folderRecord(dir), (m) => logs.push(m));
    assert.ok(!logs.some((m) => /images decoded earlier/.test(m)), logs.join('\n'));
    assert.equal(cacheEntries(cache), entries + 1);
    assert.equal(conditional.labels?.length, 6);
  });
});

test('a conditional folder refuses an image in its root, naming it, and a class folder with no readable image, naming it; neither is cached', async () => {
  await withCache(async (cache) => {
    const rooted = await classFolder();
    await png(path.join(rooted, 'stray.png'), COLOURS.apple);
    await assert.rejects(loadTrainingData(folderRecord(rooted)), (e: Error) => e instanceof OptionError && /stray\.png is not in a class folder/.test(e.message) && e.message.includes(`put every image in a class subfolder (${rooted}/<class>/...)`));
    // with a limit that would leave the root image out too
    await assert.rejects(loadImageFolder(rooted, { size: 4, channels: 3, background: '#000000', limit: 1, conditional: true }), /stray\.png is not in a class folder/);

    const empty = await classFolder();
    fs.mkdirSync(path.join(empty, 'durian'));
    fs.writeFileSync(path.join(empty, 'durian', 'notes.txt'), 'no image here');
    await assert.rejects(loadTrainingData(folderRecord(empty)), (e: Error) => e instanceof OptionError && /class folder durian holds no PNG, JPEG, WebP or SVG image/.test(e.message));

    const unreadable = await classFolder();
    fs.mkdirSync(path.join(unreadable, 'durian'));
    fs.writeFileSync(path.join(unreadable, 'durian', 'd1.png'), 'not a png');
    fs.writeFileSync(path.join(unreadable, 'durian', 'd2.jpg'), 'not a jpeg');
    await assert.rejects(loadTrainingData(folderRecord(unreadable)), (e: Error) => e instanceof OptionError && /none of the 2 image files in its class folder durian could be read/.test(e.message));
    assert.equal(cacheEntries(cache), 0);
    // unconditionally the same folders load
    assert.equal((await loadTrainingData(folderRecord(unreadable, { conditional: false }))).count, 6);
    assert.equal((await loadTrainingData(folderRecord(rooted, { conditional: false }))).count, 7);
  });
});
