/**
 * Decoded folders, cached: one packed uint8 file per folder state and decoding options, so a long run
 * (and every run after it) decodes its images once. The key covers each file's path, size and
 * modification time and the options, so a changed, added or removed file, or another size, channel
 * count or background, decodes afresh. The cache lives in $DIFFUSE_CACHE_DIR, else
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
}

/** A folder's images as decoded and cached. */
export interface DecodedFolder {
  /** The images' bytes, size × size × channels each, one after another. */
  bytes: Uint8Array;
  count: number;
  /** Files that could not be read. */
  skipped: number;
  files: number;
}

/** Bump when decoding changes what bytes a file gives. */
const DECODER_VERSION = 1;
const MAGIC = 'DFC1';

export function cacheDir(): string {
  return process.env.DIFFUSE_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'diffuse');
}

/** The key of `files` (found below `dir`) decoded with `o`. */
export function folderKey(dir: string, files: readonly string[], o: FolderOptions): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ v: DECODER_VERSION, size: o.size, channels: o.channels, background: o.background, dir: path.resolve(dir) }));
  for (const f of files) {
    const s = fs.statSync(f);
    hash.update(`\n${path.relative(dir, f)}\t${s.size}\t${s.mtimeMs}`);
  }
  return hash.digest('hex').slice(0, 32);
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
    const header = JSON.parse(buf.toString('utf8', 8, 8 + headerLength)) as Omit<DecodedFolder, 'bytes'> & { length: number };
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset + 8 + headerLength, buf.length - 8 - headerLength);
    if (bytes.length !== header.length) return null;
    return { bytes, count: header.count, skipped: header.skipped, files: header.files };
  } catch {
    return null;
  }
}

function write(file: string, folder: DecodedFolder): void {
  const header = Buffer.from(JSON.stringify({ count: folder.count, skipped: folder.skipped, files: folder.files, length: folder.bytes.length }));
  const head = Buffer.alloc(8);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(header.length, 4);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeAtomically(file, Buffer.concat([head, header, folder.bytes]));
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
