import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadMnist, loadMnistLabels, mnistPath, parseIdxImages } from '../../../src/data/mnist';
import { epochBatches, gatherBatch } from '../../../src/data/batches';
import { UserError } from '../../../src/errors';
import { Rng } from '../../../src/rng';
import { tempDir } from '../../helpers';

test('MNIST train has 60k 28x28 images scaled to [-1, 1], test 10k', () => {
  const train = loadMnist('train');
  assert.equal(train.count, 60000);
  assert.equal(train.height, 28);
  assert.equal(train.width, 28);
  assert.equal(train.data.length, 60000 * 784);
  let min = Infinity, max = -Infinity;
  for (const v of train.data) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  assert.equal(min, -1);
  assert.equal(max, 1);
  assert.equal(train.data[0], -1); // the corner of the first image is background
  assert.equal(loadMnist('test').count, 10000);
  assert.equal(loadMnistLabels('train')[0], 5); // the famous first digit
});

test('--limit takes the first N images', () => {
  const all = loadMnist('train');
  const some = loadMnist('train', 100);
  assert.equal(some.count, 100);
  assert.deepEqual(some.data, all.data.subarray(0, 100 * 784));
});

test('pixels scale as x/127.5 − 1', () => {
  const buf = Buffer.alloc(16 + 4);
  buf.writeUInt32BE(0x803, 0);
  buf.writeUInt32BE(1, 4);
  buf.writeUInt32BE(2, 8);
  buf.writeUInt32BE(2, 12);
  buf.set([0, 255, 51, 204], 16);
  const dir = tempDir();
  const file = path.join(dir, 'tiny-idx3-ubyte');
  fs.writeFileSync(file, buf);
  const set = loadMnist('train', 0, file);
  assert.deepEqual([...set.data].map((v) => +v.toFixed(4)), [-1, 1, -0.6, 0.6]);
});

test('a file with a wrong magic number or a wrong size is refused with a clear error', () => {
  const good = fs.readFileSync(mnistPath('test', 'images'));
  const badMagic = Buffer.from(good);
  badMagic.writeUInt32BE(0x801, 0);
  assert.throws(() => parseIdxImages(badMagic, 'x'), (e: Error) => e instanceof UserError && /magic number 0x801/.test(e.message));
  assert.throws(() => parseIdxImages(good.subarray(0, good.length - 10), 'x'), (e: Error) => e instanceof UserError && /truncated or corrupt/.test(e.message));
  assert.throws(() => parseIdxImages(Buffer.alloc(3), 'x'), /not an MNIST image file/);
  assert.throws(() => loadMnist('train', 0, '/nonexistent/file'), /cannot read MNIST file/);
});

test('batches cover every image once per epoch and depend only on the seed', () => {
  const a = epochBatches(300, 128, new Rng(9));
  assert.deepEqual(a.map((b) => b.length), [128, 128, 44]);
  const seen = a.flatMap((b) => [...b]).sort((x, y) => x - y);
  assert.deepEqual(seen, Array.from({ length: 300 }, (_, i) => i));
  assert.deepEqual(epochBatches(300, 128, new Rng(9)), a);
  const data = Float32Array.from({ length: 12 }, (_, i) => i);
  assert.deepEqual([...gatherBatch(data, 3, [2, 0])], [6, 7, 8, 0, 1, 2]);
});
