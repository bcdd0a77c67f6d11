import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { listImageFiles, loadImageFolder } from '../../../src/data/folder';
import { cropImages, loadMnist, padImages } from '../../../src/data/mnist';
import { tempDir } from '../../helpers';

/** A w×h RGB image whose columns are coloured by `colour(x)`. */
function stripes(w: number, h: number, colour: (x: number) => [number, number, number]): ReturnType<typeof sharp> {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set(colour(x), (y * w + x) * 3);
  return sharp(px, { raw: { width: w, height: h, channels: 3 } });
}

async function sampleFolder(): Promise<string> {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true });
  // 40×20: green | red | blue columns; a centre crop to a square keeps only red.
  await stripes(40, 20, (x) => (x < 10 ? [0, 255, 0] : x < 30 ? [255, 0, 0] : [0, 0, 255])).png().toFile(path.join(dir, 'a-wide.png'));
  await stripes(9, 9, () => [128, 128, 128]).jpeg({ quality: 100 }).toFile(path.join(dir, 'sub', 'b-grey.JPG'));
  await stripes(64, 64, () => [0, 0, 255]).webp({ lossless: true }).toFile(path.join(dir, 'sub', 'deeper', 'c-blue.webp'));
  fs.writeFileSync(path.join(dir, 'sub', 'd-broken.png'), 'not a png');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'ignored');
  return dir;
}

test('a folder of PNG, JPEG and WebP files loads recursively, resized and centre-cropped, RGB in [-1, 1]; unreadable files are counted', async () => {
  const dir = await sampleFolder();
  assert.equal(listImageFiles(dir).length, 4);
  const set = await loadImageFolder(dir, { size: 8, channels: 3 });
  assert.equal(set.count, 3);
  assert.equal(set.skipped, 1);
  assert.deepEqual([set.height, set.width, set.channels], [8, 8, 3]);
  assert.equal(set.data.length, 3 * 8 * 8 * 3);
  assert.ok(set.data.every((v) => v >= -1 && v <= 1));
  const pixel = (img: number, i: number) => Array.from(set.data.subarray((img * 64 + i) * 3, (img * 64 + i) * 3 + 3));
  // sorted order: a-wide.png, sub/b-grey.JPG, sub/deeper/c-blue.webp
  for (const i of [0, 7, 63]) assert.deepEqual(pixel(0, i).map(Math.round), [1, -1, -1], 'only the red middle survives the crop');
  assert.ok(pixel(1, 27).every((v) => Math.abs(v - (128 / 127.5 - 1)) < 0.03), 'grey stays grey');
  assert.deepEqual(pixel(2, 10).map(Math.round), [-1, -1, 1]);
});

test('grayscale loading gives one channel; limit reads the first files; an empty folder is a clear error', async () => {
  const dir = await sampleFolder();
  const grey = await loadImageFolder(dir, { size: 5, channels: 1, limit: 2 });
  assert.equal(grey.channels, 1);
  assert.equal(grey.count, 2);
  assert.equal(grey.data.length, 2 * 25);
  const empty = tempDir();
  fs.writeFileSync(path.join(empty, 'readme.txt'), 'x');
  await assert.rejects(loadImageFolder(empty, { size: 8, channels: 3 }), /no PNG, JPEG or WebP images/);
  await assert.rejects(loadImageFolder(path.join(empty, 'missing'), { size: 8, channels: 3 }), /no such folder/);
});

test('MNIST padded to 32 px keeps the digit in the middle on background, and cropping restores it', () => {
  const mnist = loadMnist('train', 3);
  const padded = padImages(mnist, 2);
  assert.deepEqual([padded.height, padded.width, padded.count], [32, 32, 3]);
  assert.equal(padded.data[0], -1);
  assert.equal(padded.data[32 * 32 - 1], -1);
  assert.equal(padded.data[(2 + 14) * 32 + 2 + 14], mnist.data[14 * 28 + 14]);
  assert.deepEqual(cropImages(padded.data, 3, padded, 2), mnist.data);
});
