/**
 * Nothing lost, nothing hidden: the run folder's lock, output paths checked before work, faults injected
 * at each point of a checkpoint save, kill -9 at random moments with byte-exact resume, readers racing a
 * writer, and the exit codes of user and internal errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { HISTORY_FILE, readHistory } from '../../src/report/history';
import { REPORT_FILE } from '../../src/report/html';
import { CHECKPOINT_FILE, FAULT_POINTS, loadCheckpoint } from '../../src/io/checkpoint';
import { errorReport } from '../../src/cli/program';
import { UserError } from '../../src/errors';
import { LOCK_FILE, RunLock } from '../../src/io/runLock';
import { Rng } from '../../src/rng';
import { BIN, ROOT, USER_ERROR_EXIT, assertCleanFailure, runCli, tempDir } from '../helpers';

const TINY = ['--limit', '256', '--width', '64', '--batch-size', '64'];

/** Starts `diffuse args` without waiting; resolves with its exit code (null if killed) and stderr. */
function start(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, done };
}

const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid!;

/** What a folder holds besides a checkpoint's own two files and the run's history and report. */
function leftovers(dir: string): string[] {
  const weights = JSON.parse(fs.readFileSync(path.join(dir, CHECKPOINT_FILE), 'utf8')).weights;
  const own = new Set([CHECKPOINT_FILE, weights, HISTORY_FILE, REPORT_FILE]);
  return fs.readdirSync(dir).filter((f) => !own.has(f) && !fs.statSync(path.join(dir, f)).isDirectory());
}

test('two runs into one folder: the second fails at once naming the first, which finishes intact', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  const args = ['train', '--epochs', '3', '--limit', '2048', '--width', '256', '--batch-size', '64', '--out', dir];
  const first = start(args);
  // wait until the first holds the lock, then start the second
  while (!fs.existsSync(path.join(dir, LOCK_FILE))) await new Promise((r) => setTimeout(r, 20));
  const second = runCli(args);
  assertCleanFailure(second, new RegExp(`in use by another diffuse run: pid ${first.child.pid} since .*diffuse train --epochs 3`));
  const a = await first.done;
  assert.equal(a.code, 0, a.stderr);
  assert.equal(loadCheckpoint(dir).meta.training.epoch, 3);
  assert.deepEqual(leftovers(dir), [], 'no lock or temporary files remain');
});

test('a lock left by a dead process is taken over; a live holder or a corrupt lock file is refused', () => {
  const dir = tempDir();
  const lockFile = path.join(dir, LOCK_FILE);
  const holder = (pid: number) => JSON.stringify({ pid, host: os.hostname(), startTicks: null, since: 'then', command: 'diffuse train', token: 'x' });
  fs.writeFileSync(lockFile, holder(deadPid()));
  const r = runCli(['train', '--epochs', '1', ...TINY, '--out', dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!fs.existsSync(lockFile));

  fs.writeFileSync(lockFile, holder(process.pid)); // this test process is alive
  const before = fs.readFileSync(path.join(dir, CHECKPOINT_FILE));
  assertCleanFailure(runCli(['train', '--epochs', '2', '--resume', '--out', dir]), new RegExp(`in use by another diffuse run: pid ${process.pid}`));
  fs.writeFileSync(lockFile, '{"pid": 12');
  assertCleanFailure(runCli(['train', '--epochs', '2', '--resume', '--out', dir]), /is not a diffuse lock; if no run uses .*, delete that file/);
  assert.deepEqual(fs.readFileSync(path.join(dir, CHECKPOINT_FILE)), before, 'refused runs leave the checkpoint alone');

  // In-process: a run whose lock was taken from it refuses to save.
  fs.rmSync(lockFile);
  const lock = RunLock.acquire(dir);
  lock.verify();
  fs.writeFileSync(lockFile, holder(process.pid));
  assert.throws(() => lock.verify(), /lost the lock on .* \(now held by pid/);
  lock.release();
  assert.ok(fs.existsSync(lockFile), "release leaves another holder's lock alone");
});

test('output paths that cannot work fail at once with one line, before any data is loaded', () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'file'), 'x');
  // Node's recursive mkdir spins forever under /proc; the timeout turns a hang into a failure.
  const proc = runCli(['train', '--out', '/proc/diffuse-x/run'], { timeout: 30_000 });
  assert.equal(proc.signal, null, 'finished by itself');
  assertCleanFailure(proc, /cannot create run folder \/proc\/diffuse-x\/run: ENOENT/);
  assertCleanFailure(runCli(['train', ...TINY, '--out', path.join(dir, 'file')]), /cannot use run folder .*: it is a file/);
  assertCleanFailure(runCli(['train', ...TINY, '--out', path.join(dir, 'file', 'a', 'b')]), /a parent of it is a file/);
  // a bad configuration fails before the folder is made
  assertCleanFailure(runCli(['train', '--model', 'unet', '--base-channels', '6', '--out', path.join(dir, 'new', 'run')]), /invalid U-net: 8 groups do not divide 6 channels/);
  assert.ok(!fs.existsSync(path.join(dir, 'new')));
  // sample: the extension is checked first (the checkpoint does not exist either)
  assertCleanFailure(runCli(['sample', '--checkpoint', path.join(dir, 'none'), '--out', path.join(dir, 'g.gif')]), /"\.gif" names no image format/);
  assertCleanFailure(runCli(['sample', '--checkpoint', path.join(dir, 'none'), '--out', path.join(dir, 'grid')]), /extension \(none\)/);
  if (process.getuid?.() !== 0) {
    // root writes anywhere, so an unwritable folder can only be tested as another user
    const locked = path.join(dir, 'locked');
    fs.mkdirSync(locked, 0o500);
    assertCleanFailure(runCli(['train', ...TINY, '--out', path.join(locked, 'run')]), /cannot create run folder/);
  }
});

test('sample writes the format its --out extension names', async () => {
  const dir = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...TINY, '--out', dir]).status, 0);
  for (const [file, format] of [['g.jpg', 'jpeg'], ['g.JPEG', 'jpeg'], ['g.webp', 'webp'], ['g.png', 'png']]) {
    const out = path.join(dir, file);
    const r = runCli(['sample', '--checkpoint', dir, '--n', '4', '--steps', '2', '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    const meta = await sharp(out).metadata();
    assert.equal(meta.format, format, file);
    assert.equal(meta.width, 2 * 28 + 2);
  }
});

test('a fault at each point of a save leaves a loadable checkpoint, and the next save leaves no strays', { timeout: 240_000 }, () => {
  const base = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...TINY, '--recipe', 'seed', '--out', base]).status, 0);
  for (const mode of ['kill', 'fail']) {
    for (const point of FAULT_POINTS) {
      const what = `${mode} ${point}`;
      const dir = tempDir();
      fs.cpSync(base, dir, { recursive: true });
      const r = runCli(['train', '--epochs', '2', '--resume', '--out', dir], { env: { DIFFUSE_TEST_FAULT: `${mode}:${point}:1` } });
      if (mode === 'kill') assert.equal(r.signal, 'SIGKILL', `${what}: ${r.stderr}`);
      else assertCleanFailure(r, /cannot write checkpoint in .*: injected fault/);
      // The old checkpoint until the new checkpoint.json is in place, the new one after.
      assert.equal(loadCheckpoint(dir).meta.training.epoch, point === 'after-rename' ? 2 : 1, what);
      const s = runCli(['sample', '--checkpoint', dir, '--n', '2', '--steps', '2', '--out', path.join(os.tmpdir(), `diffuse-fault-${process.pid}.png`)]);
      assert.equal(s.status, 0, `${what}: ${s.stderr}`);
      // A killed run leaves its lock behind; the next run takes it over and cleans up.
      const next = runCli(['train', '--epochs', '3', '--resume', '--out', dir]);
      assert.equal(next.status, 0, `${what}: ${next.stderr}`);
      assert.equal(loadCheckpoint(dir).meta.training.epoch, 3, what);
      assert.deepEqual(leftovers(dir), [], `${what}: strays left`);
    }
  }
});

test('kill -9 at random moments, then --resume: the weights equal an uninterrupted run\'s byte for byte', { timeout: 300_000 }, async (t) => {
  const args = ['--epochs', '8', '--limit', '2048', '--width', '256', '--batch-size', '64', '--recipe', 'seed', '--seed', '5'];
  const whole = tempDir();
  const began = Date.now();
  const w = runCli(['train', ...args, '--out', whole]);
  assert.equal(w.status, 0, w.stderr);
  const took = Date.now() - began; // the kills' moments scale with it: fixed delays outlasted a fast machine's runs

  const dir = tempDir();
  const delays = new Rng(11);
  let kills = 0;
  for (let attempt = 0; attempt < 12; attempt++) {
    const resume = fs.existsSync(path.join(dir, CHECKPOINT_FILE));
    const run = start(['train', ...(resume ? ['--epochs', '8', '--resume'] : args), '--out', dir]);
    // up to four kills, each within the first 40% of an uninterrupted run's time (start-up included), then let it finish
    const delay = kills < 4 ? took * (0.05 + 0.35 * delays.uniform()) : Infinity;
    const timer = Number.isFinite(delay) ? setTimeout(() => run.child.kill('SIGKILL'), delay) : undefined;
    const end = await run.done;
    clearTimeout(timer);
    if (end.code === 0) break;
    assert.equal(end.signal, 'SIGKILL', end.stderr);
    kills++;
    if (fs.existsSync(path.join(dir, CHECKPOINT_FILE))) loadCheckpoint(dir); // loadable after every kill
  }
  assert.ok(kills >= 2, `only ${kills} kill(s) landed before the run finished`);
  t.diagnostic(`${kills} kills`);
  const a = loadCheckpoint(whole);
  const b = loadCheckpoint(dir);
  assert.equal(b.meta.training.epoch, 8);
  assert.equal(b.meta.training.step, a.meta.training.step);
  assert.deepEqual(b.meta.training.rng, a.meta.training.rng);
  assert.deepEqual([...b.tensors.keys()], [...a.tensors.keys()]);
  for (const [name, t] of a.tensors) {
    assert.ok(Buffer.from(t.values.buffer, t.values.byteOffset, t.values.byteLength).equals(Buffer.from(b.tensors.get(name)!.values.buffer, b.tensors.get(name)!.values.byteOffset, t.values.byteLength)), `${name} differs`);
  }
  assert.deepEqual(leftovers(dir), []);
  // The history tells the same story as the uninterrupted run's: one row per epoch, steps only rising.
  const rows = readHistory(dir);
  assert.deepEqual(rows.filter((r) => r.kind === 'epoch').map((r) => [r.epoch, r.step]), readHistory(whole).filter((r) => r.kind === 'epoch').map((r) => [r.epoch, r.step]));
  const steps = rows.filter((r) => r.kind === 'steps').map((r) => r.step);
  assert.deepEqual(steps, [...steps].sort((x, y) => x - y));
  assert.equal(new Set(steps).size, steps.length, 'no repeated step rows');
});

/** Byte-equal checkpoints: step, random stream, and every tensor (weights, Adam's moments, the average). */
function assertSameCheckpoint(a: ReturnType<typeof loadCheckpoint>, b: ReturnType<typeof loadCheckpoint>): void {
  assert.equal(b.meta.training.epoch, a.meta.training.epoch);
  assert.equal(b.meta.training.step, a.meta.training.step);
  assert.deepEqual(b.meta.training.rng, a.meta.training.rng);
  assert.deepEqual([...b.tensors.keys()], [...a.tensors.keys()]);
  const bytes = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  for (const [name, t] of a.tensors) assert.ok(bytes(t.values).equals(bytes(b.tensors.get(name)!.values)), `${name} differs`);
}

test('kill -9 during a U-net run on 2 worker threads (cosine rate, weight average, flips), then --resume: byte-equal to an uninterrupted run', { timeout: 300_000 }, async (t) => {
  // 64 images in batches of 8: 8 steps an epoch, 12 epochs, a second or so of training.
  const unet = ['--model', 'unet', '--base-channels', '8', '--channel-mults', '1,2', '--blocks', '1', '--attention', '16', '--limit', '64', '--batch-size', '8'];
  const recipe = ['--lr-schedule', 'cosine', '--ema', '0.999', '--flip', '--seed', '7', '--log-every', '4'];
  const EPOCHS = 12;
  const args = [...unet, ...recipe, '--epochs', String(EPOCHS), '--workers', '2'];
  const whole = tempDir();
  const w = runCli(['train', ...args, '--out', whole]);
  assert.equal(w.status, 0, w.stderr);
  assert.match(w.stderr, /2 threads per batch/, 'the data-parallel path: two worker threads share each batch');
  const a = loadCheckpoint(whole);
  assert.equal(a.meta.training.ema, 0.999);
  assert.equal(a.meta.training.lrSchedule?.kind, 'cosine');
  assert.equal(a.meta.data.flip, true);
  assert.ok([...a.tensors.keys()].some((k) => k.startsWith('ema/')) && [...a.tensors.keys()].some((k) => k.startsWith('adam/')));

  // Each try is killed at a random moment after it has logged one to three more epochs (a kill can land
  // in a step, in a save or between them), until four kills have landed; then the run goes to the end.
  const dir = tempDir();
  const moments = new Rng(13);
  let kills = 0;
  for (let attempt = 0; attempt < 8; attempt++) {
    const resume = fs.existsSync(path.join(dir, CHECKPOINT_FILE));
    const run = start(['train', ...(resume ? ['--epochs', String(EPOCHS), '--resume', '--workers', '2'] : args), '--out', dir]);
    if (kills < 4) {
      const epochsToSee = 1 + moments.int(3);
      const extraMs = 250 * moments.uniform();
      let seen = 0;
      let timer: NodeJS.Timeout | undefined;
      run.child.stderr.on('data', (d) => {
        seen += (String(d).match(/^epoch \d+\/\d+: loss/gm) ?? []).length;
        if (seen >= epochsToSee && !timer) timer = setTimeout(() => run.child.kill('SIGKILL'), extraMs);
      });
      const end = await run.done;
      clearTimeout(timer);
      if (end.code === 0) break;
      assert.equal(end.signal, 'SIGKILL', end.stderr);
      if (resume) assert.match(end.stderr, /2 threads per batch/);
      kills++;
      if (fs.existsSync(path.join(dir, CHECKPOINT_FILE))) loadCheckpoint(dir); // loadable after every kill
    } else {
      const end = await run.done;
      assert.equal(end.code, 0, end.stderr);
      break;
    }
  }
  assert.ok(kills >= 3, `only ${kills} kill(s) landed before the run finished`);
  t.diagnostic(`${kills} kills`);
  const b = loadCheckpoint(dir);
  assert.equal(b.meta.training.epoch, EPOCHS);
  assertSameCheckpoint(a, b);
  assert.deepEqual(leftovers(dir), []);
  assert.deepEqual(
    readHistory(dir).filter((r) => r.kind === 'epoch').map((r) => [r.epoch, r.step, r.loss]),
    readHistory(whole).filter((r) => r.kind === 'epoch').map((r) => [r.epoch, r.step, r.loss]),
    'the same epoch losses',
  );
});

test('a reader loading while a run saves many checkpoints never sees a half-written one', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  // 2 steps an epoch: a save every few milliseconds
  const run = start(['train', '--epochs', '400', '--limit', '128', '--width', '64', '--batch-size', '64', '--recipe', 'seed', '--out', dir]);
  let loads = 0;
  let epochs = new Set<number>();
  const end = Date.now() + 60_000;
  while (run.child.exitCode === null && Date.now() < end) {
    if (fs.existsSync(path.join(dir, CHECKPOINT_FILE))) {
      const { meta, tensors } = loadCheckpoint(dir); // throws on a half-written or vanished checkpoint
      assert.ok(tensors.size > 0);
      epochs.add(meta.training.epoch);
      loads++;
    }
    await new Promise((r) => setImmediate(r));
  }
  const r = await run.done;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(loads > 20 && epochs.size > 5, `${loads} loads saw ${epochs.size} epochs`);
});

test('user errors exit 2 with one line; internal errors exit 1 and say they are a bug', () => {
  assert.deepEqual(errorReport(new UserError('no checkpoint in x'), false), { text: 'diffuse: error: no checkpoint in x\n', code: USER_ERROR_EXIT });
  const internal = errorReport(new TypeError('cannot read properties of undefined'), false);
  assert.equal(internal.code, 1);
  assert.match(internal.text, /^diffuse: internal error: cannot read properties of undefined \(a bug in diffuse; --verbose prints where\)\n$/);
  assert.match(errorReport(new Error('boom'), true).text, /^Error: boom\n\s+at /);
  assertCleanFailure(runCli(['train', '--epochs', 'x']), /--epochs/); // commander's usage errors exit 2 as well
  assertCleanFailure(runCli(['frobnicate']), /unknown command/);
  assert.equal(runCli(['--help']).status, 0);
});
