/**
 * Bad input ends a command early and cleanly (docs/design.md, "What is guaranteed"): exit code 2, the
 * error as the first line on stderr, before any sampling or decoding work is wasted, and no existing
 * file changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { USER_ERROR_EXIT, runCli, tempDir } from '../helpers';

/** The first line of stderr, where a failed command's error must be (no backend notice before it). */
function firstError(stderr: string): string {
  return stderr.split('\n').find((l) => l.trim() !== '') ?? '';
}

/** Exit code 2 and `pattern` in the `diffuse: error: ...` line that comes first on stderr. */
function assertFailsFirst(r: SpawnSyncReturns<string>, pattern: RegExp): void {
  assert.equal(r.status, USER_ERROR_EXIT, `expected a user error (exit ${USER_ERROR_EXIT}), got ${r.status} ${r.signal ?? ''}:\n${r.stderr}`);
  const line = firstError(r.stderr);
  assert.match(line, /^diffuse: error: /, `the error comes first on stderr:\n${r.stderr}`);
  assert.match(line, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

/** Every file below `dir` (recursively) with a hash of its bytes, to show that none changed. */
function snapshot(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  if (!fs.existsSync(dir)) return files;
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) files[f] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  }
  return files;
}

/** A tiny fully connected checkpoint (MNIST, or `data`), trained for one epoch in seconds. */
function tinyCheckpoint(out: string, data: string[] = ['--limit', '64']): void {
  const r = runCli(['train', '--model', 'fc', '--width', '64', '--batch-size', '64', '--epochs', '1', ...data, '--out', out]);
  assert.equal(r.status, 0, r.stderr);
}

/** `count` small PNGs in a new folder `dir`. */
async function imageFolder(dir: string, count: number): Promise<string> {
  fs.mkdirSync(dir);
  for (let i = 0; i < count; i++) {
    await sharp(Buffer.alloc(12 * 12 * 3, 30 + i * 40), { raw: { width: 12, height: 12, channels: 3 } }).png().toFile(path.join(dir, `img-${i}.png`));
  }
  return dir;
}

/** A new folder `dir` of files named like PNGs that hold garbage. */
function brokenFolder(dir: string, count = 3): string {
  fs.mkdirSync(dir);
  for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, `x${i}.png`), `not a png ${i}`);
  return dir;
}

const SAMPLING_TEXT = /sampl(ed|ing)/;

test('export --safetensors refuses to replace an existing file unless --overwrite is given', () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'ckpt');
  tinyCheckpoint(ckpt);
  const file = path.join(dir, 'weights.safetensors');
  fs.writeFileSync(file, 'an existing file the user cares about');
  const before = snapshot(dir);

  const r = runCli(['export', '--checkpoint', ckpt, '--safetensors', file]);
  assertFailsFirst(r, /weights\.safetensors already exists.*--overwrite/);
  assert.doesNotMatch(r.stderr, /wrote/);
  assert.deepEqual(snapshot(dir), before, 'no file changed');

  // Nor when a page is asked for too: nothing is written before the refusal.
  const site = path.join(dir, 'site');
  const both = runCli(['export', '--checkpoint', ckpt, '--web', site, '--safetensors', file]);
  assertFailsFirst(both, /already exists/);
  assert.ok(!fs.existsSync(site), 'no page written');
  assert.deepEqual(snapshot(dir), before, 'no file changed');

  const help = runCli(['export', '--help']);
  assert.match(help.stdout, /--overwrite\s+replace/);

  const ok = runCli(['export', '--checkpoint', ckpt, '--safetensors', file, '--overwrite']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.notEqual(fs.readFileSync(file, 'utf8'), 'an existing file the user cares about');
  // A new file needs no --overwrite.
  const fresh = runCli(['export', '--checkpoint', ckpt, '--safetensors', path.join(dir, 'fresh.safetensors')]);
  assert.equal(fresh.status, 0, fresh.stderr);
});

test('evaluate checks --data and --nearest before it samples', async () => {
  const dir = tempDir();
  const images = await imageFolder(path.join(dir, 'images'), 4);
  const ckpt = path.join(dir, 'ckpt');
  tinyCheckpoint(ckpt, ['--data', images, '--image-size', '8', '--channels', '1']);
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty);
  const broken = brokenFolder(path.join(dir, 'broken'));
  const cache = path.join(dir, 'cache');
  const env = { DIFFUSE_CACHE_DIR: cache };
  const before = snapshot(dir);
  const evaluate = (...args: string[]) => runCli(['evaluate', '--checkpoint', ckpt, '--n', '4', '--steps', '2', ...args], { env });

  for (const [data, pattern] of [
    [empty, /no readable images in .*empty/],
    [broken, /no readable images in .*broken.*3 image files/],
    [path.join(dir, 'missing'), /no readable images in .*missing.*no such folder/],
  ] as const) {
    const r = evaluate('--data', data);
    assertFailsFirst(r, pattern);
    assert.doesNotMatch(r.stderr, SAMPLING_TEXT, `failed before sampling:\n${r.stderr}`);
    assert.equal(r.stdout, '');
  }

  for (const [nearest, pattern] of [
    [path.join(dir, 'x.bmp'), /x\.bmp.*"\.bmp" names no image format/],
    [path.join(dir, 'no-such-folder', 'nearest.png'), /cannot write .*nearest\.png: directory .*no-such-folder does not exist/],
  ] as const) {
    const r = evaluate('--nearest', nearest);
    assertFailsFirst(r, pattern);
    assert.doesNotMatch(r.stderr, SAMPLING_TEXT, `failed before sampling:\n${r.stderr}`);
    assert.ok(!fs.existsSync(nearest), 'no output written');
  }
  assert.deepEqual(snapshot(dir), before, 'no file changed or added (no decode cache of an unreadable folder either)');

  // The same options with good values work.
  const nearest = path.join(dir, 'nearest.png');
  const ok = evaluate('--data', images, '--nearest', nearest);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(fs.existsSync(nearest));
});

test('a folder whose images all fail to decode leaves no decode-cache entry', () => {
  const dir = tempDir();
  const broken = brokenFolder(path.join(dir, 'broken'));
  const cache = path.join(dir, 'cache');
  const out = path.join(dir, 'run');
  const before = snapshot(dir);
  const r = runCli(['train', '--model', 'fc', '--width', '64', '--epochs', '1', '--data', broken, '--image-size', '8', '--out', out], { env: { DIFFUSE_CACHE_DIR: cache } });
  assertFailsFirst(r, /--data .*broken: none of its 3 image files could be read/);
  assert.doesNotMatch(r.stderr, /^epoch /m, 'no training');
  assert.deepEqual(snapshot(cache), {}, 'no cache entry');
  assert.deepEqual(snapshot(out), {}, 'the fresh run folder is not left behind holding files');
  assert.deepEqual(snapshot(dir), before, 'no other file changed or added');
});

test('a model too large to train, or attention at a side no stage has, is refused before any work', () => {
  const dir = tempDir();
  const out = path.join(dir, 'run');
  const icons = path.join(dir, 'icons');
  fs.mkdirSync(icons);
  let r = runCli(['train', '--model', 'fc', '--data', icons, '--image-size', '1000', '--epochs', '1', '--out', out]);
  assertFailsFirst(r, /^diffuse: error: --image-size 1000: the fully connected model on 1000x1000x3 images would have \d+ M parameters .*at most 100 M/);
  r = runCli(['train', '--model', 'unet', '--attention', '3', '--epochs', '1', '--limit', '64', '--out', out]);
  assertFailsFirst(r, /no stage is 3 px for attention; this net's stages are 32, 16, 8 px/);
  r = runCli(['train', '--model', 'unet', '--data', icons, '--image-size', '64', '--attention', '2', '--epochs', '1', '--out', out]);
  assertFailsFirst(r, /no stage is 2 px for attention; this net's stages are 32, 16, 8, 4 px \(in 2x2 patches\)/);
  assert.equal(fs.existsSync(out), false, 'no run folder');
});

test('an integer option takes 1e3 as it takes 1000, and refuses 2.5', () => {
  const dir = tempDir();
  const a = runCli(['train', '--model', 'fc', '--width', '64', '--limit', '64', '--epochs', '1', '--batch-size', '3.2e1', '--log-every', '0', '--out', path.join(dir, 'a')]);
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stderr, /batch 32,/);
  const b = runCli(['train', '--batch-size', '2.5', '--out', path.join(dir, 'b')]);
  assert.equal(b.status, USER_ERROR_EXIT);
  assert.match(firstError(b.stderr), /^error: option '--batch-size <n>' argument '2.5' is invalid\. expected an integer/);
});

test('a run that diverges stops with an error, not an exit-0 checkpoint, and a new run leaves no folder behind', () => {
  const dir = tempDir();
  const out = path.join(dir, 'run');
  const r = runCli(['train', '--model', 'fc', '--width', '64', '--limit', '256', '--epochs', '3', '--lr', '1000', '--warmup', '0', '--out', out]);
  assert.equal(r.status, USER_ERROR_EXIT, r.stderr);
  assert.match(r.stderr, /diffuse: error: training stopped: the loss reached \S+ at step \d+: the run diverged/);
  assert.equal(fs.existsSync(out), false, `the failed run's folder is gone: ${fs.existsSync(out) ? fs.readdirSync(out).join(', ') : ''}`);
});

test('evaluate refuses fewer than 4 samples (KID compares subsets of two) before any work', () => {
  const r = runCli(['evaluate', '--checkpoint', tempDir(), '--n', '3']);
  assert.equal(r.status, USER_ERROR_EXIT);
  assert.match(firstError(r.stderr), /^error: option '--n <count>' argument '3' is invalid\. expected an integer of at least 4/);
});
