/**
 * Decoded folders, cached: one packed uint8 file per folder state and decoding options, so a long run
 * (and every run after it) decodes its images once. The key covers each file's path, size and
 * modification time and the options, so a changed, added or removed file, or another size, channel
 * count, background or conditional mode, decodes afresh. A conditional folder's entry also holds each
 * image's label and the class names. The cache lives in $DIFFUSE_CACHE_DIR, else
 * $XDG_CACHE_HOME/diffuse, else ~/.cache/diffuse; where it cannot be written the run goes on without it.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeAtomically } from '../files';

/** How a folder's images are read (part of the cache key). */
export interface FolderOptions {
  /** Side of the square images, in pixels. */
  size: number;
  /** 3 for RGB, 1 for grayscale. */
  channels: 1 | 3;
  /** Colour transparent pixels are composited onto, as #rrggbb. */
  background: string;
  /** Read at most this many files (0 = all), in sorted path order. */
  limit?: number;
  /** Label each image by its first-level subfolder, its class (DIR/<class>/...). */
  conditional?: boolean;
}

/** A folder's images as decoded and cached. */
export interface DecodedFolder {
  /** The images' bytes, size × size × channels each, one after another. */
  bytes: Uint8Array;
  count: number;
  /** Files that could not be read. */
  skipped: number;
  files: number;
  /** A conditional folder's: each image's class, an index into classNames. */
  labels?: Int32Array;
  /** A conditional folder's class names, in label order. */
  classNames?: string[];
}

/** Bump when decoding changes what bytes a file gives, or the cache file's layout changes. */
const DECODER_VERSION = 2;
const MAGIC = 'DFC1';

export function cacheDir(): string {
  return process.env.DIFFUSE_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'diffuse');
}

/** The key of `files` (found below `dir`) decoded with `o`; a conditional folder's `classNames` are part of it. */
export function folderKey(dir: string, files: readonly string[], o: FolderOptions, classNames: readonly string[] = []): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ v: DECODER_VERSION, size: o.size, channels: o.channels, background: o.background, conditional: !!o.conditional, classNames, dir: path.resolve(dir) }));
  for (const f of files) {
    const s = fs.statSync(f);
    hash.update(`\n${path.relative(dir, f)}\t${s.size}\t${s.mtimeMs}`);
  }
  return hash.digest('hex').slice(0, 32);
}

/**
 * A cache file: MAGIC, the header's length (uint32 LE), the header (JSON: count, skipped, files, the
 * pixel bytes' length, the labels' count, 0 or count, and the class names), the labels (int32 LE each),
 * then the pixel bytes.
 */
interface Header {
  count: number;
  skipped: number;
  files: number;
  length: number;
  labels: number;
  classNames: string[];
}

function read(file: string): DecodedFolder | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null;
  }
  if (buf.length < 8 || buf.toString('latin1', 0, 4) !== MAGIC) return null;
  const headerLength = buf.readUInt32LE(4);
  try {
    const header = JSON.parse(buf.toString('utf8', 8, 8 + headerLength)) as Header;
    const { count, skipped, files, length, labels: labelCount, classNames } = header;
    const counts = [count, skipped, files, length, labelCount];
    if (!counts.every((n) => Number.isSafeInteger(n) && n >= 0) || (labelCount !== 0 && labelCount !== count) || !Array.isArray(classNames)) return null;
    const labelsAt = 8 + headerLength;
    const bytesAt = labelsAt + 4 * labelCount;
    if (buf.length !== bytesAt + length) return null;
    const folder: DecodedFolder = { bytes: new Uint8Array(buf.buffer, buf.byteOffset + bytesAt, length), count, skipped, files };
    if (labelCount > 0) {
      const labels = new Int32Array(labelCount);
      for (let i = 0; i < labelCount; i++) labels[i] = buf.readInt32LE(labelsAt + 4 * i);
      if (!labels.every((l) => l >= 0 && l < classNames.length)) return null;
      folder.labels = labels;
      folder.classNames = classNames;
    }
    return folder;
  } catch {
    return null;
  }
}

function write(file: string, folder: DecodedFolder): void {
  const labels = folder.labels ?? new Int32Array(0);
  const header: Header = { count: folder.count, skipped: folder.skipped, files: folder.files, length: folder.bytes.length, labels: labels.length, classNames: folder.classNames ?? [] };
  const json = Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(8);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 4);
  const labelBytes = Buffer.alloc(4 * labels.length);
  labels.forEach((l, i) => labelBytes.writeInt32LE(l, 4 * i));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeAtomically(file, Buffer.concat([head, json, labelBytes, folder.bytes]));
}

/**
 * The folder under `key` from the cache, else decoded by `decode` and stored. `check` judges the
 * decoded folder (a hit too) and throws to refuse it; a refused decode, or one that gave no image,
 * is not stored, so the cache never holds what no run could use.
 */
export async function cachedFolder(key: string, decode: () => Promise<DecodedFolder>, log: (m: string) => void, check: (folder: DecodedFolder) => void = () => {}): Promise<DecodedFolder> {
  const file = path.join(cacheDir(), 'folders', `${key}.bin`);
  const hit = read(file);
  if (hit) {
    check(hit);
    log(`images decoded earlier: ${file}`);
    return hit;
  }
  const folder = await decode();
  check(folder);
  if (folder.count === 0) return folder;
  try {
    write(file, folder);
  } catch (e) {
    log(`could not cache the decoded images in ${file} (${(e as NodeJS.ErrnoException).code ?? e}); the next run decodes them again`);
  }
  return folder;
}
