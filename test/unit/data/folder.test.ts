import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { listImageFiles, loadImageFolder } from '../../../src/data/folder';
import { cropImages, loadMnist, padImages } from '../../../src/data/mnist';
import { mirrorImages } from '../../../src/data/batches';
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
  const set = await loadImageFolder(dir, { size: 8, channels: 3, background: '#000000' });
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
  const grey = await loadImageFolder(dir, { size: 5, channels: 1, background: '#000000', limit: 2 });
  assert.equal(grey.channels, 1);
  assert.equal(grey.count, 2);
  assert.equal(grey.data.length, 2 * 25);
  const empty = tempDir();
  fs.writeFileSync(path.join(empty, 'readme.txt'), 'x');
  await assert.rejects(loadImageFolder(empty, { size: 8, channels: 3, background: '#000000' }), /no PNG, JPEG, WebP or SVG images/);
  await assert.rejects(loadImageFolder(path.join(empty, 'missing'), { size: 8, channels: 3, background: '#000000' }), /no such folder/);
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

const WHITE = '#ffffff';
const BLACK = '#000000';
const bytesOf = (set: { data: Float32Array }) => Array.from(set.data, (v) => Math.round((v + 1) * 127.5));

test('what real folders hold: transparency onto the background, SVG, CMYK and grey JPEGs, 16-bit PNG, EXIF rotation, links and a link loop, a text file named .png', async () => {
  const dir = tempDir();
  const file = (name: string) => path.join(dir, name);
  // a: 4×4 red square, left half transparent
  const rgba = Buffer.alloc(4 * 4 * 4);
  for (let i = 0; i < 16; i++) rgba.set(i % 4 < 2 ? [0, 0, 0, 0] : [255, 0, 0, 255], i * 4);
  await sharp(rgba, { raw: { width: 4, height: 4, channels: 4 } }).png().toFile(file('a-transparent.png'));
  // b: an SVG 16 units wide, a blue disc on nothing
  fs.writeFileSync(file('b-disc.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><circle cx="8" cy="8" r="5" fill="#0000ff"/></svg>');
  // c: CMYK JPEG of green
  await sharp({ create: { width: 4, height: 4, channels: 3, background: '#00c000' } }).toColourspace('cmyk').jpeg({ quality: 100 }).toFile(file('c-cmyk.jpg'));
  // d: 16-bit PNG, grey 0x8080 (128 in 8 bits)
  const grey16 = Buffer.alloc(4 * 4 * 3 * 2);
  for (let i = 0; i < 48; i++) grey16.writeUInt16LE(0x8080, i * 2);
  await sharp(grey16, { raw: { width: 4, height: 4, channels: 3 } }).toColourspace('rgb16').png().toFile(file('d-16bit.png'));
  assert.equal((await sharp(file('d-16bit.png')).metadata()).depth, 'ushort');
  // e: a 4×2 JPEG, left half white, right black, stored with EXIF orientation 6 (turn 90° clockwise to view)
  await stripes(4, 2, (x) => (x < 2 ? [255, 255, 255] : [0, 0, 0])).withMetadata({ orientation: 6 }).jpeg({ quality: 100 }).toFile(file('e-rotated.jpg'));
  // f: text named .png; g: a link to a (read once, as a); a link loop; a dangling link
  fs.writeFileSync(file('f-text.png'), 'this is not an image');
  fs.symlinkSync(file('a-transparent.png'), file('g-link.png'));
  fs.mkdirSync(file('loop'));
  fs.symlinkSync('..', path.join(dir, 'loop', 'up'));
  fs.symlinkSync(file('missing.png'), file('h-dangling.png'));

  const files = listImageFiles(dir).map((f) => path.relative(dir, f));
  assert.deepEqual(files, ['a-transparent.png', 'b-disc.svg', 'c-cmyk.jpg', 'd-16bit.png', 'e-rotated.jpg', 'f-text.png']);
  fs.mkdirSync(file('sub'));
  fs.symlinkSync(file('b-disc.svg'), file('sub/z-link.svg'));
  assert.deepEqual(listImageFiles(file('sub')).map((f) => path.basename(f)), ['z-link.svg'], 'a link whose target is outside the folder is read');
  const white = await loadImageFolder(dir, { size: 4, channels: 3, background: WHITE });
  assert.equal(white.files, 6);
  assert.equal(white.skipped, 1, 'the text file');
  assert.equal(white.count, 5);
  const px = bytesOf(white);
  const at = (img: number, x: number, y: number) => px.slice((img * 16 + y * 4 + x) * 3, (img * 16 + y * 4 + x) * 3 + 3);
  assert.deepEqual(at(0, 0, 0), [255, 255, 255], 'transparent → white');
  assert.deepEqual(at(0, 3, 0), [255, 0, 0]);
  const disc = at(1, 2, 2); // the SVG rendered at 4 px: blue middle, white corner
  assert.ok(disc[2] > 200 && disc[0] < 120, `disc centre ${disc}`);
  assert.deepEqual(at(1, 0, 0), [255, 255, 255]);
  const green = at(2, 1, 1);
  assert.ok(green[1] > 150 && green[1] > green[0] + 50 && green[1] > green[2] + 100, `CMYK green came out ${green}`); // through the colour profiles: a duller green
  for (const v of at(3, 1, 1)) assert.ok(Math.abs(v - 128) <= 1, `16-bit grey came out ${at(3, 1, 1)}`);
  // Rotated upright the 4×2 image is 2 wide and 4 tall, white on top; the centre crop of its 4×4 cover
  // scale keeps a white top half and black bottom half.
  assert.ok(at(4, 1, 0).every((v) => v > 200) && at(4, 1, 3).every((v) => v < 60), `rotation: top ${at(4, 1, 0)}, bottom ${at(4, 1, 3)}`);
  // A one-channel (grayscale) JPEG read as RGB: its grey in all three channels; an RGB file read as grey: one channel.
  const greyDir = tempDir();
  await sharp(Buffer.alloc(16, 200), { raw: { width: 4, height: 4, channels: 1 } }).toColourspace('b-w').jpeg({ quality: 100 }).toFile(path.join(greyDir, 'grey.jpg'));
  assert.equal((await sharp(path.join(greyDir, 'grey.jpg')).metadata()).channels, 1);
  const asRgb = bytesOf(await loadImageFolder(greyDir, { size: 4, channels: 3, background: WHITE }));
  assert.ok(asRgb.length === 48 && asRgb.every((v) => Math.abs(v - 200) <= 1), `grey JPEG as RGB: ${asRgb.slice(0, 6)}`);
  const asGrey = await loadImageFolder(dir, { size: 4, channels: 1, background: WHITE });
  assert.equal(asGrey.data.length, 5 * 16);
  const black = await loadImageFolder(dir, { size: 4, channels: 3, background: BLACK });
  assert.deepEqual(bytesOf(black).slice(0, 3), [0, 0, 0], 'transparent → black');
});

test('decoded folders are cached: reused while the folder is unchanged, rebuilt when a file changes or options differ', async () => {
  const dir = await sampleFolder();
  const cache = tempDir();
  const before = process.env.DIFFUSE_CACHE_DIR;
  process.env.DIFFUSE_CACHE_DIR = cache;
  try {
    const logs: string[] = [];
    const log = (m: string) => logs.push(m);
    const o = { size: 8, channels: 3 as const, background: BLACK };
    const first = await loadImageFolder(dir, o, log);
    assert.equal(logs.length, 0);
    assert.equal(fs.readdirSync(path.join(cache, 'folders')).length, 1);
    const second = await loadImageFolder(dir, o, log);
    assert.match(logs[0], /images decoded earlier/);
    assert.deepEqual(second.data, first.data);
    assert.deepEqual([second.count, second.skipped, second.files], [first.count, first.skipped, first.files]);
    // Another background: another entry.
    logs.length = 0;
    await loadImageFolder(dir, { ...o, background: WHITE }, log);
    assert.equal(logs.length, 0);
    // A changed file: decoded afresh, and the new pixels show.
    await stripes(64, 64, () => [255, 255, 0]).webp({ lossless: true }).toFile(path.join(dir, 'sub', 'deeper', 'c-blue.webp'));
    const changed = await loadImageFolder(dir, o, log);
    assert.equal(logs.length, 0);
    assert.deepEqual(Array.from(changed.data.subarray(2 * 192, 2 * 192 + 3)).map(Math.round), [1, 1, -1]);
    // A corrupt cache file is decoded afresh, not trusted.
    for (const f of fs.readdirSync(path.join(cache, 'folders'))) fs.writeFileSync(path.join(cache, 'folders', f), 'DFC1garbage');
    const again = await loadImageFolder(dir, o, log);
    assert.equal(logs.length, 0);
    assert.deepEqual(again.data, changed.data);
  } finally {
    if (before === undefined) delete process.env.DIFFUSE_CACHE_DIR;
    else process.env.DIFFUSE_CACHE_DIR = before;
  }
});

test('mirroring flips the chosen images left-right, every channel, and leaves the others', () => {
  // two 2×3 RGB images (values = their own index)
  const batch = Float32Array.from({ length: 2 * 2 * 3 * 3 }, (_, i) => i);
  const out = mirrorImages(batch.slice(), { height: 2, width: 3, channels: 3 }, [true, false]);
  assert.deepEqual(Array.from(out.subarray(0, 9)), [6, 7, 8, 3, 4, 5, 0, 1, 2]);
  assert.deepEqual(Array.from(out.subarray(18)), Array.from(batch.subarray(18)));
  assert.deepEqual(mirrorImages(out, { height: 2, width: 3, channels: 3 }, [true, false]), batch);
});
