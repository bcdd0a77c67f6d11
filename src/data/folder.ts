/**
 * Training images from a folder: every PNG, JPEG, WebP and SVG file below it (symbolic links
 * followed, each real folder once), decoded by sharp: EXIF orientation applied, SVGs rendered at the
 * target size, CMYK and 16-bit files brought to 8-bit sRGB (or grey), transparency composited onto a
 * background colour, scaled and centre-cropped to a square, in [-1, 1]. Files sharp cannot read are
 * skipped and counted, so one bad file does not end a long run. Decoded folders are cached
 * (src/data/folderCache.ts), so a long run decodes once.
 *
 * A conditional folder is laid out as torchvision's ImageFolder: its first-level subfolders are the
 * classes (sorted by name), and every image below a class folder is of that class.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OptionError } from '../errors';
import { ImageSet } from './mnist';
import { DecodedFolder, FolderOptions, cachedFolder, folderKey } from './folderCache';
import { sharp } from '../files';

const IMAGE_FILE = /\.(png|jpe?g|webp|svg)$/i;

const COLOUR_NAMES: Record<string, string> = { white: '#ffffff', black: '#000000', grey: '#808080', gray: '#808080' };

/** A colour as #rrggbb, from #rgb, #rrggbb or white/black/grey; null where it is none of those. */
export function parseColour(value: string): string | null {
  const v = value.trim().toLowerCase();
  if (COLOUR_NAMES[v]) return COLOUR_NAMES[v];
  if (/^#[0-9a-f]{6}$/.test(v)) return v;
  if (/^#[0-9a-f]{3}$/.test(v)) return `#${v[1]}${v[1]}${v[2]}${v[2]}${v[3]}${v[3]}`;
  return null;
}

/**
 * Image files below `dir`, sorted so a seed fixes the data whatever order the file system lists.
 * Links are followed; a file reached through several names is read once (under its first name in
 * sorted order: themes link one icon under many names), and a folder reached again through a link is
 * not walked twice, so a link loop ends.
 */
export function listImageFiles(dir: string): string[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new OptionError('data', `${dir}: no such folder`);
  }
  if (!stat.isDirectory()) throw new OptionError('data', `${dir}: not a folder`);
  const files: string[] = [];
  const walked = new Set<string>();
  const walk = (d: string) => {
    const real = fs.realpathSync(d);
    if (walked.has(real)) return;
    walked.add(real);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new OptionError('data', d === dir ? `${dir}: cannot be read: ${code}` : `${dir}: cannot read its folder ${d}: ${code}`);
    }
    for (const entry of entries) {
      const p = path.join(d, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const target = fs.statSync(p);
          isDir = target.isDirectory();
          isFile = target.isFile();
        } catch {
          continue; // a dangling link
        }
      }
      if (isDir) walk(p);
      else if (isFile && IMAGE_FILE.test(entry.name)) files.push(p);
    }
  };
  walk(dir);
  const seen = new Set<string>();
  return files.sort().filter((f) => {
    const real = fs.realpathSync(f);
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  });
}

/**
 * A sharp pipeline for `file`, read into memory first (libvips caches decoded files by name, which
 * would keep serving a file's old pixels after it changes); an SVG is rendered at a density that gives
 * at least `size` pixels on its shorter side.
 */
async function open(file: string, size: number): Promise<ReturnType<typeof sharp>> {
  const bytes = await fs.promises.readFile(file);
  if (!/\.svg$/i.test(file)) return sharp(bytes);
  const { width, height, density } = await sharp(bytes).metadata();
  const side = Math.min(width ?? size, height ?? size);
  return sharp(bytes, { density: Math.min(2400, Math.max(1, ((density ?? 72) * size) / side)) });
}

/** One image file as size × size × channels bytes (composited, resized and centre-cropped); sharp's error where it cannot decode it. */
export async function decodeImage(file: string, o: Pick<FolderOptions, 'size' | 'channels' | 'background'>): Promise<Uint8Array> {
  let image = (await open(file, o.size))
    .rotate() // EXIF orientation
    .flatten({ background: o.background })
    .resize(o.size, o.size, { fit: 'cover', position: 'centre' });
  // Explicit 8-bit colour spaces: 16-bit and CMYK files come out as 8-bit sRGB or grey.
  image = o.channels === 1 ? image.toColourspace('b-w') : image.toColourspace('srgb');
  const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels === o.channels) return data;
  // A grayscale file read as RGB comes back with one channel: repeat it.
  const out = new Uint8Array(o.size * o.size * o.channels);
  for (let i = 0; i < o.size * o.size; i++) for (let c = 0; c < o.channels; c++) out[i * o.channels + c] = data[i * info.channels + Math.min(c, info.channels - 1)];
  return out;
}

/**
 * Every image of the folder decoded (no cache); with `fileLabels` (one per file), the labels of the
 * images that could be read, in their order.
 */
export async function decodeFolder(files: readonly string[], o: FolderOptions, fileLabels?: Int32Array, classNames?: string[]): Promise<DecodedFolder> {
  const size = o.size * o.size * o.channels;
  const decoded: Uint8Array[] = [];
  const labels: number[] = [];
  const parallel = 8;
  for (let i = 0; i < files.length; i += parallel) {
    const batch = await Promise.all(files.slice(i, i + parallel).map((f) => decodeImage(f, o).catch(() => null)));
    batch.forEach((bytes, k) => {
      if (!bytes) return;
      decoded.push(bytes);
      if (fileLabels) labels.push(fileLabels[i + k]);
    });
  }
  const bytes = new Uint8Array(decoded.length * size);
  decoded.forEach((b, k) => bytes.set(b, k * size));
  const folder: DecodedFolder = { bytes, count: decoded.length, skipped: files.length - decoded.length, files: files.length };
  if (fileLabels) Object.assign(folder, { labels: Int32Array.from(labels), classNames: classNames ?? [] });
  return folder;
}

/** The folders directly in `dir` (links to folders too), sorted by name: a conditional folder's classes. */
export function classFolders(dir: string): string[] {
  const names: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    let isDir = entry.isDirectory();
    if (entry.isSymbolicLink()) {
      try {
        isDir = fs.statSync(path.join(dir, entry.name)).isDirectory();
      } catch {
        continue; // a dangling link
      }
    }
    if (isDir) names.push(entry.name);
  }
  return names.sort((a, b) => a.localeCompare(b, 'en'));
}

/**
 * `files` (listImageFiles(dir)) classified by their first-level subfolder: the class names in label
 * order and each file's label. An image directly in `dir`, or a class folder with no image below it,
 * is refused.
 */
export function classifyFiles(dir: string, files: readonly string[]): { classNames: string[]; labels: Int32Array } {
  const classNames = classFolders(dir);
  const index = new Map(classNames.map((name, i) => [name, i]));
  const labels = new Int32Array(files.length);
  const counts = new Array<number>(classNames.length).fill(0);
  files.forEach((f, i) => {
    const parts = path.relative(dir, f).split(path.sep);
    const label = parts.length > 1 ? index.get(parts[0]) : undefined;
    if (label === undefined) {
      throw new OptionError('data', `${dir}: ${parts.join('/')} is not in a class folder: a conditional run's classes are the folder's subfolders, so put every image in a class subfolder (${dir}/<class>/...)`);
    }
    labels[i] = label;
    counts[label]++;
  });
  const empty = classNames.findIndex((_, c) => counts[c] === 0);
  if (empty >= 0) throw new OptionError('data', `${dir}: its class folder ${classNames[empty]} holds no PNG, JPEG, WebP or SVG image (a conditional run's classes are the folder's subfolders)`);
  return { classNames, labels };
}

/**
 * Whether `dir` is laid out as classes (every image below a first-level subfolder, none empty), as
 * `train --conditional` needs: what the folder classifier learns where a run was not conditional.
 */
export function hasClassLayout(dir: string): boolean {
  try {
    return classifyFiles(dir, listImageFiles(dir)).classNames.length > 0;
  } catch (e) {
    if (e instanceof OptionError) return false;
    throw e;
  }
}

/**
 * The images of `dir` (the first `o.limit` files in sorted path order), decoded or from the cache. A
 * conditional folder's (`o.conditional`) come with each image's label and the class names, all of its
 * classes even where the limit keeps images of only some; a class whose images in the load all fail to
 * decode is refused. `key` is the decoded images' cache key (the folder classifier is cached under it).
 */
export async function loadImageFolder(dir: string, o: FolderOptions, log: (m: string) => void = () => {}): Promise<ImageSet & { skipped: number; files: number; key: string }> {
  let files = listImageFiles(dir);
  if (files.length === 0) throw new OptionError('data', `${dir}: no PNG, JPEG, WebP or SVG images in this folder or below it`);
  const classes = o.conditional ? classifyFiles(dir, files) : null;
  let fileLabels = classes?.labels;
  if (o.limit) {
    files = files.slice(0, o.limit);
    fileLabels = fileLabels?.subarray(0, o.limit);
  }
  const classNames = classes?.classNames ?? [];
  const key = folderKey(dir, files, o, classNames);
  const folder = await cachedFolder(key, () => decodeFolder(files, o, fileLabels, classNames), log, (f) => {
    if (f.count === 0) throw new OptionError('data', `${dir}: none of its ${files.length} image files could be read`);
    if (!fileLabels) return;
    if (f.labels?.length !== f.count) throw new Error(`the decoded folder ${dir} has ${f.labels?.length ?? 'no'} labels for ${f.count} images`);
    const listed = new Array<number>(classNames.length).fill(0);
    const read = new Array<number>(classNames.length).fill(0);
    for (const l of fileLabels) listed[l]++;
    for (const l of f.labels) read[l]++;
    const unreadable = classNames.findIndex((_, c) => listed[c] > 0 && read[c] === 0);
    if (unreadable >= 0) throw new OptionError('data', `${dir}: none of the ${listed[unreadable]} image files in its class folder ${classNames[unreadable]} could be read`);
  });
  const data = new Float32Array(folder.bytes.length);
  for (let i = 0; i < data.length; i++) data[i] = folder.bytes[i] / 127.5 - 1;
  const set = { count: folder.count, height: o.size, width: o.size, channels: o.channels, data, skipped: folder.skipped, files: folder.files, key };
  if (!fileLabels) return set;
  const kept = new Set(fileLabels).size;
  if (kept < classNames.length) log(`the first ${files.length} files (--limit) hold images of ${kept} of the ${classNames.length} classes in ${dir}`);
  return { ...set, labels: folder.labels!, classNames: [...classNames] };
}
