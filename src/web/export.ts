/**
 * `diffuse export --web DIR`: a static site that samples a checkpoint's model in the browser: the page
 * and its bundled script (dist/web, built from src/web/page.ts), tfjs's wasm binaries, and the model
 * (its run record and sampling weights).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { ensureWritableDirectory, writeOutputFile } from '../io/files';
import { concatValues, loadCheckpoint, samplingPrefix } from '../io/checkpoint';
import { WEB_MODEL_FILE, WEB_WEIGHTS_FILE, WebModel } from './format';

const BUILT = path.join(__dirname, '..', '..', 'web'); // dist/web, beside dist/src
const PAGE_FILES = ['index.html', 'diffuse-web.js', 'sw.js'];

function wasmFiles(): string[] {
  const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  return fs.readdirSync(path.join(dir, 'dist')).filter((f) => f.endsWith('.wasm')).map((f) => path.join(dir, 'dist', f));
}

export function exportWeb(checkpoint: string, out: string): { files: string[]; bytes: number } {
  for (const f of PAGE_FILES) if (!fs.existsSync(path.join(BUILT, f))) throw new UserError(`the web page is not built (${path.join(BUILT, f)} missing): run npm run build`);
  const { meta: record, tensors } = loadCheckpoint(checkpoint);
  ensureWritableDirectory(out, 'web folder');
  const prefix = samplingPrefix(tensors);
  const chosen = [...tensors].filter(([name]) => name.startsWith(prefix));
  const floats = concatValues(chosen.map(([, t]) => t));
  const web: WebModel = {
    format: 'diffuse-web-model',
    version: 1,
    record,
    tensors: chosen.map(([name, t]) => ({ name: name.slice(prefix.length), shape: t.shape })),
    averaged: prefix === 'ema/',
    parameters: floats.length,
    exportedAt: new Date().toISOString(),
  };
  const written: string[] = [];
  const write = (name: string, data: string | Uint8Array) => {
    writeOutputFile(path.join(out, name), data);
    written.push(name);
  };
  write(WEB_WEIGHTS_FILE, new Uint8Array(floats.buffer));
  write(WEB_MODEL_FILE, JSON.stringify(web) + '\n');
  for (const f of PAGE_FILES) write(f, fs.readFileSync(path.join(BUILT, f)));
  for (const f of wasmFiles()) write(path.basename(f), fs.readFileSync(f));
  const bytes = written.reduce((n, f) => n + fs.statSync(path.join(out, f)).size, 0);
  return { files: written, bytes };
}
