/**
 * `diffuse export --web DIR`: a static site that samples a checkpoint's model in the browser: the page
 * and its bundled script (dist/web, built from src/web/page.ts), tfjs's wasm binaries, and the model
 * (its run record and sampling weights), with a guide's weights where autoguidance was asked for.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { ensureWritableDirectory, writeOutputFile } from '../files';
import { NamedArray, concatValues, loadCheckpoint, samplingPrefix } from '../io/checkpoint';
import { Guide, checkGuide } from '../pipeline/load';
import { WEB_GUIDE_WEIGHTS_FILE, WEB_MODEL_FILE, WEB_WEIGHTS_FILE, WebModel, WebWeights } from '../io/webModel';

const BUILT = path.join(__dirname, '..', '..', 'web'); // dist/web, beside dist/src
const PAGE_FILES = ['index.html', 'page.js', 'diffuse.mjs', 'sw.js'];

function wasmFiles(): string[] {
  const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  return fs.readdirSync(path.join(dir, 'dist')).filter((f) => f.endsWith('.wasm')).map((f) => path.join(dir, 'dist', f));
}

/** A checkpoint's sampling weights (the average where the run kept one) as one array and its index. */
function samplingWeights(tensors: Map<string, NamedArray>): { floats: Float32Array; index: WebWeights } {
  const prefix = samplingPrefix(tensors);
  const chosen = [...tensors].filter(([name]) => name.startsWith(prefix));
  const floats = concatValues(chosen.map(([, t]) => t));
  const index = { tensors: chosen.map(([name, t]) => ({ name: name.slice(prefix.length), shape: t.shape })), averaged: prefix === 'ema/', parameters: floats.length };
  return { floats, index };
}

/** Writes the site; with `guide`, the page samples with autoguidance by that checkpoint (refused first where it cannot guide). */
export function exportWeb(checkpoint: string, out: string, guide?: Guide): { files: string[]; bytes: number } {
  for (const f of PAGE_FILES) if (!fs.existsSync(path.join(BUILT, f))) throw new UserError(`the web page is not built (${path.join(BUILT, f)} missing): run npm run build`);
  const { meta: record, tensors } = loadCheckpoint(checkpoint);
  const guiding = guide ? { ...loadCheckpoint(guide.checkpoint), ...guide } : null;
  if (guiding) checkGuide(record, guiding.meta, guiding.checkpoint);
  ensureWritableDirectory(out, 'web folder');
  const model = samplingWeights(tensors);
  const guideWeights = guiding ? samplingWeights(guiding.tensors) : null;
  const web: WebModel = {
    format: 'diffuse-web-model',
    version: 1,
    record,
    ...model.index,
    exportedAt: new Date().toISOString(),
    ...(guiding && guideWeights ? { guide: { record: guiding.meta, ...guideWeights.index, weight: guiding.weight } } : {}),
  };
  const written: string[] = [];
  const write = (name: string, data: string | Uint8Array) => {
    writeOutputFile(path.join(out, name), data);
    written.push(name);
  };
  write(WEB_WEIGHTS_FILE, new Uint8Array(model.floats.buffer));
  if (guideWeights) write(WEB_GUIDE_WEIGHTS_FILE, new Uint8Array(guideWeights.floats.buffer));
  write(WEB_MODEL_FILE, JSON.stringify(web) + '\n');
  for (const f of PAGE_FILES) write(f, fs.readFileSync(path.join(BUILT, f)));
  for (const f of wasmFiles()) write(path.basename(f), fs.readFileSync(f));
  const bytes = written.reduce((n, f) => n + fs.statSync(path.join(out, f)).size, 0);
  return { files: written, bytes };
}
