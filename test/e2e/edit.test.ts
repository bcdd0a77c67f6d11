/**
 * The editing commands on a small trained model: invert writes a noise that decodes back (and
 * interpolate's ends are its inputs' reconstructions), inpaint keeps every unmasked pixel of the input
 * and refuses masks of another size, in colour, or empty, with one clear line; edit at strength 0 writes
 * the input back; the API's interpolate starts and ends at the noises given.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { assertCleanFailure, runCli, tempDir } from '../helpers';
import { loadModel } from '../../src/index';
import { readNpyFloat32 } from '../../src/io/npy';

let dir: string;
let ckpt: string;
before(() => {
  dir = tempDir();
  ckpt = path.join(dir, 'ckpt');
  const r = runCli(['train', '--epochs', '1', '--limit', '256', '--width', '64', '--batch-size', '64', '--out', ckpt]);
  assert.equal(r.status, 0, r.stderr);
});

/** The tiles of a one-row grid of 28-px images (2-px gaps), as grey bytes. */
async function tiles(file: string, count: number): Promise<Buffer[]> {
  const { data, info } = await sharp(file).greyscale().raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height], [count * 28 + (count - 1) * 2, 28]);
  return Array.from({ length: count }, (_, k) => {
    const tile = Buffer.alloc(28 * 28);
    for (let y = 0; y < 28; y++) data.copy(tile, y * 28, y * info.width + k * 30, y * info.width + k * 30 + 28);
    return tile;
  });
}

async function maskFile(name: string, width: number, height: number, pixel: (x: number, y: number) => number[]): Promise<string> {
  const channels = pixel(0, 0).length as 1 | 3;
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * channels);
  const file = path.join(dir, name);
  await sharp(data, { raw: { width, height, channels } }).png().toFile(file);
  return file;
}

test('invert writes the noise (.npy) and its reconstruction; interpolate goes between images, noises and seeds', async () => {
  const noise = path.join(dir, 'zero.npy');
  const rec = path.join(dir, 'rec.png');
  const r = runCli(['invert', '--checkpoint', ckpt, '--mnist-test', '0', '--steps', '20', '--out', noise, '--reconstruction', rec]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /20 DDIM steps draw the image back to a mean error of \d+\.\d\d grey levels/);
  const { values, shape } = readNpyFloat32(noise);
  assert.deepEqual(shape, [1, 28, 28, 1]);
  assert.ok(values.every(Number.isFinite));
  assert.equal((await tiles(rec, 2)).length, 2);
  const strip = path.join(dir, 'strip.png');
  const i = runCli(['interpolate', '--checkpoint', ckpt, '--from', noise, '--to', 'seed:3', '--n', '5', '--steps', '20', '--out', strip]);
  assert.equal(i.status, 0, i.stderr);
  const [first] = await tiles(strip, 5);
  const [, back] = await tiles(rec, 2);
  // the same noise, decoded in a batch of 5 rather than 1: OpenBLAS may sum in another order, so a pixel may
  // round the other way (1 grey level on Zen 3); another noise differs by up to 255 in hundreds of pixels
  const off = first.reduce((worst, v, p) => Math.max(worst, Math.abs(v - back[p])), 0);
  assert.ok(off <= 2, `the strip starts at the noise the reconstruction came from (a pixel is ${off} grey levels off)`);
  assertCleanFailure(runCli(['interpolate', '--checkpoint', ckpt, '--from', 'seed:1', '--to', path.join(dir, 'none.png'), '--out', strip]), /cannot read image .*none\.png/);
  assertCleanFailure(runCli(['invert', '--checkpoint', ckpt, '--mnist-test', '0', '--out', path.join(dir, 'noise.bin')]), /--out .*noise\.bin: the noise is written as \.npy/);
});

test('inpaint keeps the unmasked pixels and refuses masks of another size, in colour or empty; edit at strength 0 is the input', async () => {
  const bottom = await maskFile('bottom.png', 28, 28, (_, y) => [y >= 14 ? 255 : 0]);
  const out = path.join(dir, 'inpaint.png');
  const r = runCli(['inpaint', '--checkpoint', ckpt, '--mnist-test', '3', '--mask', bottom, '--n', '2', '--steps', '10', '--jump', '2', '--resample', '2', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  const [original, masked, a, b] = await tiles(out, 4);
  for (let p = 0; p < 28 * 28; p++) {
    if (p < 14 * 28) assert.ok(a[p] === original[p] && b[p] === original[p] && masked[p] === original[p], `unmasked pixel ${p} changed`);
    else assert.equal(masked[p], 128, 'the masked part is shown grey');
  }
  assert.ok(!a.subarray(14 * 28).equals(original.subarray(14 * 28)), 'nothing was regenerated');
  // --mask bottom is that file
  const named = path.join(dir, 'named.png');
  assert.equal(runCli(['inpaint', '--checkpoint', ckpt, '--mnist-test', '3', '--mask', 'bottom', '--n', '2', '--steps', '10', '--jump', '2', '--resample', '2', '--out', named]).status, 0);
  assert.ok(fs.readFileSync(named).equals(fs.readFileSync(out)), '--mask bottom and the bottom-half mask file differ');
  assert.ok(!a.equals(b), 'the two inpaintings are the same');

  const refused = [
    [await maskFile('small.png', 20, 20, () => [255]), /--mask .*small\.png is 20x20; the model's images are 28x28/],
    [await maskFile('colour.png', 28, 28, (x) => (x === 5 ? [255, 0, 0] : [255, 255, 255])), /--mask .*colour\.png is not grey \(pixel 5,0 has colour\)/],
    [await maskFile('empty.png', 28, 28, () => [0]), /--mask .*empty\.png marks no pixel to regenerate/],
  ] as const;
  for (const [mask, message] of refused) {
    assertCleanFailure(runCli(['inpaint', '--checkpoint', ckpt, '--mnist-test', '3', '--mask', mask, '--out', path.join(dir, 'no.png')]), message);
  }
  assert.ok(!fs.existsSync(path.join(dir, 'no.png')));

  const edit = path.join(dir, 'edit.png');
  assert.equal(runCli(['edit', '--checkpoint', ckpt, '--mnist-test', '3', '--strength', '0', '--n', '2', '--out', edit]).status, 0);
  const [input, e1, e2] = await tiles(edit, 3);
  assert.ok(e1.equals(input) && e2.equals(input), 'strength 0 changed the image');
  const edited = path.join(dir, 'edit2.png');
  assert.equal(runCli(['edit', '--checkpoint', ckpt, '--mnist-test', '3', '--strength', '0.6,0', '--n', '1', '--steps', '10', '--out', edited]).status, 0);
  const rows = await sharp(edited).greyscale().raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([rows.info.width, rows.info.height], [2 * 28 + 2, 2 * 28 + 2], 'a row per strength');
  const at = (row: number, col: number) => Buffer.from(Array.from({ length: 28 * 28 }, (_, p) => rows.data[(row * 30 + Math.floor(p / 28)) * rows.info.width + col * 30 + (p % 28)]));
  assert.ok(!at(0, 1).equals(input), 'strength 0.6 changed nothing');
  assert.ok(at(1, 1).equals(input) && at(1, 0).equals(input), 'strength 0 (second row) changed the image');
  assertCleanFailure(runCli(['edit', '--checkpoint', ckpt, '--mnist-test', '3', '--strength', '1.5']), /--strength/);
});

test("the API's interpolate starts and ends at the noises given", async () => {
  const model = await loadModel(ckpt, { backend: 'cpu' });
  try {
    const [a, b] = [model.noise(1), model.noise(2)];
    const strip = await model.interpolate({ from: a, to: b, n: 4, steps: 10 });
    const [da, db] = [await model.decode({ noise: a, steps: 10 }), await model.decode({ noise: b, steps: 10 })];
    assert.deepEqual(strip.data.subarray(0, 784), da.data);
    assert.deepEqual(strip.data.subarray(3 * 784), db.data);
    // decoding a seed's noise is sample() with that seed, deterministic DDIM and the same steps
    const sampled = await model.sample({ n: 1, seed: 1, sampler: 'ddim', eta: 0, steps: 10 });
    assert.deepEqual(sampled.data, da.data);
  } finally {
    model.dispose();
  }
});
