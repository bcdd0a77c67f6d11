/**
 * Training images from a folder: every PNG, JPEG and WebP file below it, decoded by sharp, scaled and
 * center-cropped to a square, as RGB or grayscale, in [-1, 1]. Files sharp cannot read are skipped
 * and counted, so one bad file does not end a long run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { OptionError } from '../errors';
import { ImageSet } from './mnist';

const IMAGE_FILE = /\.(png|jpe?g|webp)$/i;

export interface FolderOptions {
  /** Side of the square images, in pixels. */
  size: number;
  /** 3 for RGB, 1 for grayscale. */
  channels: 1 | 3;
  /** Read at most this many files (0 = all), in sorted path order. */
  limit?: number;
}

/** Image files below `dir`, sorted so a seed fixes the data whatever order the file system lists. */
export function listImageFiles(dir: string): string[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new OptionError('data', `${dir}: no such folder`);
  }
  if (!stat.isDirectory()) throw new OptionError('data', `${dir}: not a folder`);
  const files: string[] = [];
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile() && IMAGE_FILE.test(entry.name)) files.push(p);
    }
  };
  walk(dir);
  return files.sort();
}

/** One image file as size × size × channels bytes (resized and centre-cropped, on black); sharp's error where it cannot decode it. */
export async function decodeImage(file: string, o: Pick<FolderOptions, 'size' | 'channels'>): Promise<Uint8Array> {
  let image = sharp(file).rotate().resize(o.size, o.size, { fit: 'cover', position: 'centre' }).flatten({ background: '#000000' });
  image = o.channels === 1 ? image.grayscale() : image.toColourspace('srgb');
  const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
  if (info.channels === o.channels) return data;
  // A grayscale file read as RGB comes back with one channel: repeat it.
  const out = new Uint8Array(o.size * o.size * o.channels);
  for (let i = 0; i < o.size * o.size; i++) for (let c = 0; c < o.channels; c++) out[i * o.channels + c] = data[i * info.channels + Math.min(c, info.channels - 1)];
  return out;
}

export async function loadImageFolder(dir: string, o: FolderOptions): Promise<ImageSet & { skipped: number; files: number }> {
  let files = listImageFiles(dir);
  if (files.length === 0) throw new OptionError('data', `${dir}: no PNG, JPEG or WebP images in this folder or below it`);
  if (o.limit) files = files.slice(0, o.limit);
  const size = o.size * o.size * o.channels;
  const decoded: Uint8Array[] = [];
  const parallel = 8;
  for (let i = 0; i < files.length; i += parallel) {
    for (const bytes of await Promise.all(files.slice(i, i + parallel).map((f) => decodeImage(f, o).catch(() => null)))) if (bytes) decoded.push(bytes);
  }
  if (decoded.length === 0) throw new OptionError('data', `${dir}: none of its ${files.length} image files could be read`);
  const data = new Float32Array(decoded.length * size);
  decoded.forEach((bytes, k) => {
    for (let i = 0; i < size; i++) data[k * size + i] = bytes[i] / 127.5 - 1;
  });
  return { count: decoded.length, height: o.size, width: o.size, channels: o.channels, data, skipped: files.length - decoded.length, files: files.length };
}
