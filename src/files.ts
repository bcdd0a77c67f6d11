/** Output files and folders: atomic replacement, and checks that an output can be written before work starts. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type SharpModule from 'sharp';
import { UserError } from './errors';

let sharpModule: typeof SharpModule | undefined;
/**
 * The image codec (sharp, over libvips), loaded on first use: training and sampling without image files
 * never load it, so they run where sharp has no binary for the platform or Node version.
 */
export function sharp(...args: Parameters<typeof SharpModule>): ReturnType<typeof SharpModule> {
  sharpModule ??= require('sharp') as typeof SharpModule;
  return sharpModule(...args);
}

/**
 * Writes `data` to a temporary file beside `file`, flushes it, then renames it over `file`, so a
 * reader (or a crash) sees either the old file whole or the new one whole. `beforeRename` runs between
 * the flush and the rename (the checkpoint writer's fault hook).
 */
export function writeAtomically(file: string, data: string | Uint8Array, beforeRename: () => void = () => {}): void {
  const tmp = `${file}${TEMP_MARK}${process.pid}`;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    beforeRename();
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** What marks writeAtomically's temporary files (`name.tmp-PID`), so a later writer can remove strays. */
export const TEMP_MARK = '.tmp-';

/** writeAtomically for a file the user named: a failure is one clear line. */
export function writeOutputFile(file: string, data: string | Uint8Array): void {
  try {
    writeAtomically(file, data);
  } catch (e) {
    throw new UserError(`cannot write ${file}: ${errorCode(e)}`);
  }
}

/** Whether process `pid` (on this machine) has certainly ended. */
export function processIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function errorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/**
 * Creates `dir` and its missing parents, one level at a time. Node's recursive mkdir retries forever
 * where a parent refuses new entries with ENOENT (e.g. under /proc); this fails at once instead.
 */
export function ensureDirectory(dir: string, what = 'directory'): string[] {
  const target = path.resolve(dir);
  const missing: string[] = [];
  let existing = target;
  for (;;) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(existing);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && path.dirname(existing) !== existing) {
        missing.unshift(existing);
        existing = path.dirname(existing);
        continue;
      }
      if (code === 'ENOTDIR') throw new UserError(`cannot create ${what} ${dir}: a parent of it is a file`);
      throw new UserError(`cannot create ${what} ${dir}: ${errorCode(e)}`);
    }
    if (!stat.isDirectory()) {
      throw new UserError(existing === target ? `cannot use ${what} ${dir}: it is a file` : `cannot create ${what} ${dir}: ${existing} is a file`);
    }
    break;
  }
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new UserError(`cannot create ${what} ${dir}: ${errorCode(e)} at ${d}`);
    }
  }
  return missing;
}

/** Removes the folders ensureDirectory created, deepest first, where they are still empty. */
export function removeIfEmpty(created: readonly string[]): void {
  for (const d of [...created].reverse()) {
    try {
      fs.rmdirSync(d);
    } catch {
      return; // not empty (or gone): keep it and its parents
    }
  }
}

/** Creates `dir` if needed and proves it takes files: writes, flushes and removes a probe file. */
export function ensureWritableDirectory(dir: string, what = 'directory'): string[] {
  const created = ensureDirectory(dir, what);
  const probe = path.join(dir, `.diffuse-probe-${process.pid}`);
  try {
    writeAtomically(probe, 'probe');
  } catch (e) {
    fs.rmSync(probe, { force: true });
    removeIfEmpty(created);
    throw new UserError(`cannot write into ${what} ${dir}: ${errorCode(e)}`);
  }
  fs.rmSync(probe, { force: true });
  return created;
}

/** Image formats an output file's extension can name (what sharp encodes). */
export const IMAGE_FORMATS = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' } as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[keyof typeof IMAGE_FORMATS];

/** The format `file`'s extension names; anything else is refused rather than written under a lying name. */
export function imageFormatOf(file: string): ImageFormat {
  const ext = path.extname(file).toLowerCase();
  const format = IMAGE_FORMATS[ext as keyof typeof IMAGE_FORMATS];
  if (!format) {
    throw new UserError(`cannot write ${file}: the extension ${ext ? `"${ext}"` : '(none)'} names no image format diffuse writes (${Object.keys(IMAGE_FORMATS).join(', ')})`);
  }
  return format;
}

/**
 * An output file must be writable before any work goes into it: its folder must exist and take a
 * file, and the file must not be a folder. Nothing is written to `file` itself.
 */
export function checkOutputFile(file: string): void {
  const dir = path.dirname(path.resolve(file));
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dir);
  } catch {
    /* reported below */
  }
  if (!stat?.isDirectory()) throw new UserError(`cannot write ${file}: directory ${dir} does not exist`);
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new UserError(`cannot write ${file}: it is a directory`);
  try {
    ensureWritableDirectory(dir);
  } catch {
    throw new UserError(`cannot write ${file}: directory ${dir} is not writable`);
  }
}
