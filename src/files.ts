import * as fs from 'node:fs';

/**
 * Writes `data` to a temporary file beside `file`, flushes it, then renames it over `file`, so a
 * reader (or a crash) sees either the old file whole or the new one whole.
 */
export function writeAtomically(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
