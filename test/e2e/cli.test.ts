import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { BIN, ROOT, assertCleanFailure, runCli, tempDir } from '../helpers';
import { frameSteps } from '../../src/io/reverseProcess';
import { loadCheckpoint } from '../../src/io/checkpoint';
import { readHistory } from '../../src/report/history';
import { RUN_RECORD_VERSION } from '../../src/config/runRecord';

const SMALL = ['--limit', '256', '--width', '64', '--batch-size', '64'];

/**
 * The exit code of a training stopped by Ctrl-C or SIGTERM after saving the steps it took: what src does
 * today (src/cli/options.ts, EXIT.stopped), and what docs/design.md must say. Change all three together.
 */
const STOPPED_EXIT = 3;
/** A second Ctrl-C quits at once (docs/design.md). */
const SECOND_CTRL_C_EXIT = 130;

/** Starts `diffuse args`; `onStderr` sees all of stderr so far at each chunk. Resolves at exit. */
function startCli(args: string[], onStderr: (stderr: string, child: ReturnType<typeof spawn>) => void = () => {}) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    onStderr(stderr, child);
  });
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
}

test('train one epoch, then sample 4 images into a valid 2x2 PNG grid', async () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'ckpt');
  const train = runCli(['train', '--epochs', '1', ...SMALL, '--out', ckpt]);
  assert.equal(train.status, 0, train.stderr);
  assert.match(train.stderr, /epoch 1\/1: loss \d+\.\d+, \d+ samples\/s/);
  const out = path.join(dir, 'grid.png');
  const sample = runCli(['sample', '--checkpoint', ckpt, '--n', '4', '--out', out]);
  assert.equal(sample.status, 0, sample.stderr);
  const meta = await sharp(out).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 2 * 28 + 2);
  assert.equal(meta.height, 2 * 28 + 2);
  // The same seed gives the same grid.
  const again = path.join(dir, 'again.png');
  assert.equal(runCli(['sample', '--checkpoint', ckpt, '--n', '4', '--out', again]).status, 0);
  assert.deepEqual(fs.readFileSync(again), fs.readFileSync(out));
  const fast = path.join(dir, 'fast.png');
  const ddim = runCli(['sample', '--checkpoint', ckpt, '--n', '4', '--steps', '10', '--out', fast]);
  assert.equal(ddim.status, 0, ddim.stderr);
  assert.equal((await sharp(fast).metadata()).width, 2 * 28 + 2);
  assertCleanFailure(runCli(['sample', '--checkpoint', ckpt, '--steps', '1001', '--out', fast]), /--steps 1001/);
  assertCleanFailure(runCli(['sample', '--checkpoint', ckpt, '--eta', '2', '--out', fast]), /--eta/);
  const other = path.join(dir, 'other.png');
  assert.equal(runCli(['sample', '--checkpoint', ckpt, '--n', '4', '--seed', '1', '--out', other]).status, 0);
  assert.notDeepEqual(fs.readFileSync(other), fs.readFileSync(out));
});

test('--resume continues the epoch count; --sample-every writes grids', () => {
  const dir = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--out', dir]).status, 0);
  const r = runCli(['train', '--epochs', '2', '--resume', '--out', dir, '--sample-every', '2']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /epochs 2\.\.2/);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
  assert.equal(meta.training.epoch, 2);
  assert.equal(meta.training.step, 8); // 256 images / 64 per batch, twice
  assert.equal(meta.model.width, 64);
  assert.ok(fs.existsSync(path.join(dir, 'samples-epoch-0002.png')));
  const done = runCli(['train', '--epochs', '2', '--resume', '--out', dir]);
  assert.equal(done.status, 0);
  assert.match(done.stderr, /nothing to do/);
});

test('Ctrl-C in the middle of an epoch saves the steps taken; resume repeats the partial epoch', async () => {
  const dir = tempDir();
  // 4096 images in batches of 16: 256 steps an epoch, so the interrupt lands inside the first epoch.
  const run = ['--limit', '4096', '--width', '64', '--batch-size', '16', '--recipe', 'seed'];
  const { code, signal, stderr } = await startCli(['train', '--epochs', '1000', ...run, '--out', dir], (text, child) => {
    if (/^training /m.test(text) && !child.killed) child.kill('SIGINT');
  });
  assert.equal(signal, null, stderr);
  assert.equal(code, STOPPED_EXIT, stderr);
  const images = Number(/interrupted in epoch 1 after (\d+) images; saving/.exec(stderr)?.[1]);
  const read = () => JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
  const saved = read().training;
  assert.equal(saved.epoch, 0, 'the partial epoch is not counted');
  assert.ok(saved.step >= 1 && saved.step < 256, `steps saved: ${saved.step}`);
  assert.equal(images, 16 * saved.step, 'whole steps: the images seen are the steps saved times the batch');
  assert.ok(!fs.existsSync(path.join(dir, '.diffuse.lock')), 'the lock is released');
  const s = runCli(['sample', '--checkpoint', dir, '--n', '1', '--steps', '2', '--out', path.join(dir, 'g.png')]);
  assert.equal(s.status, 0, s.stderr);
  const resumed = runCli(['train', '--epochs', '1', '--resume', '--out', dir]);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /epochs 1\.\.1/);
  assert.equal(read().training.epoch, 1);
  assert.equal(read().training.step, saved.step + 256, 'the whole epoch is trained again after the saved steps');
});

test('SIGTERM finishes the step, saves the steps taken and exits with the stopped code; the run resumes from them', async () => {
  const dir = tempDir();
  const run = ['--limit', '4096', '--width', '64', '--batch-size', '16', '--recipe', 'seed', '--log-every', '1'];
  const { code, signal, stderr } = await startCli(['train', '--epochs', '1000', ...run, '--out', dir], (text, child) => {
    if (/^training /m.test(text) && !child.killed) child.kill('SIGTERM');
  });
  assert.equal(signal, null, `ended by itself, not by the signal: ${stderr}`);
  assert.equal(code, STOPPED_EXIT, stderr);
  assert.match(stderr, /stopping after this step/);
  const images = Number(/interrupted in epoch 1 after (\d+) images; saving/.exec(stderr)?.[1]);
  assert.match(stderr, /interrupted; checkpoint \(epoch 0\) in /);
  const { meta, tensors } = loadCheckpoint(dir);
  assert.equal(meta.training.epoch, 0);
  assert.ok(meta.training.step >= 1 && meta.training.step < 256, `steps saved: ${meta.training.step}`);
  assert.equal(images, 16 * meta.training.step, 'whole steps: the images seen are the steps saved times the batch');
  assert.ok(tensors.size > 0);
  // The history has a row for each step taken (--log-every 1), the last the step saved.
  const steps = readHistory(dir).filter((r) => r.kind === 'steps').map((r) => r.step);
  assert.deepEqual(steps, Array.from({ length: meta.training.step }, (_, i) => i + 1));
  assert.ok(!fs.existsSync(path.join(dir, '.diffuse.lock')), 'the lock is released');
  const resumed = runCli(['train', '--epochs', '1', '--resume', '--out', dir]);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.equal(loadCheckpoint(dir).meta.training.step, meta.training.step + 256);
});

/** Whether a SIGINT sent to `pid` is still pending, not yet taken by the process (Linux: /proc/PID/status). */
function sigintPending(pid: number): boolean {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return ['SigPnd', 'ShdPnd'].some((field) => (BigInt(`0x${new RegExp(`^${field}:\\s*([0-9a-f]+)`, 'm').exec(status)![1]}`) & 2n) !== 0n);
}

test('a second Ctrl-C quits without saving, with exit 130; the folder stays usable', async () => {
  const dir = tempDir();
  // The default U-net at batch 64: a step takes about half a second, the first longer. Ctrl-C is noticed
  // between steps (a step runs to its end), so both presses land within the first step.
  let pressed = false;
  const { code, signal, stderr } = await startCli(['train', '--model', 'unet', '--limit', '256', '--batch-size', '64', '--epochs', '1', '--out', dir], (text, child) => {
    if (pressed || !/^training /m.test(text)) return;
    pressed = true;
    child.kill('SIGINT');
    // The second once the first has been taken (two pending at once would arrive as one).
    const again = async () => {
      while (child.exitCode === null && sigintPending(child.pid!)) await new Promise((r) => setTimeout(r, 2));
      if (child.exitCode === null) child.kill('SIGINT');
    };
    void again();
  });
  assert.equal(signal, null, stderr);
  assert.equal(code, SECOND_CTRL_C_EXIT, stderr);
  assert.match(stderr, /stopping after this step/);
  assert.doesNotMatch(stderr, /interrupted in epoch|checkpoint \(epoch/, 'it did not save');
  assert.ok(!fs.existsSync(path.join(dir, 'checkpoint.json')), 'no checkpoint: it quit inside the first epoch');
  assert.ok(!fs.existsSync(path.join(dir, '.diffuse.lock')), 'the lock is released');
  const again = runCli(['train', '--model', 'unet', '--base-channels', '8', '--channel-mults', '1,2', '--attention', '16', '--limit', '64', '--epochs', '1', '--out', dir]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(loadCheckpoint(dir).meta.training.epoch, 1);
});

test('a non-finite loss stops training with a clear message and keeps the last good checkpoint', () => {
  const dir = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--out', dir]).status, 0);
  const before = fs.readFileSync(path.join(dir, 'checkpoint.json'));
  const r = runCli(['train', '--epochs', '3', '--resume', '--lr', '1e30', '--out', dir]);
  assertCleanFailure(r, /loss became (NaN|Infinity)/);
  assert.deepEqual(fs.readFileSync(path.join(dir, 'checkpoint.json')), before);
  assert.equal(runCli(['sample', '--checkpoint', dir, '--n', '1', '--out', path.join(dir, 'g.png')]).status, 0);
});

test('bad options are refused with one clear line', () => {
  assertCleanFailure(runCli(['train', '--epochs', '0']), /--epochs.*expected an integer of at least 1/);
  assertCleanFailure(runCli(['train', '--epochs', 'ten']), /--epochs.*expected an integer/);
  assertCleanFailure(runCli(['train', '--width', '7']), /--width.*multiple of 4/);
  assertCleanFailure(runCli(['train', '--lr', '-1']), /--lr.*positive number/);
  assertCleanFailure(runCli(['sample', '--n', '-3']), /--n.*expected an integer of at least 1/);
  assertCleanFailure(runCli(['train', '--backend', 'gpu']), /--backend.*Allowed choices/);
  assertCleanFailure(runCli(['train', '--workers', '0']), /--workers.*expected an integer of at least 1/);
  assertCleanFailure(runCli(['train', '--model', 'unet', '--workers', '2', '--backend', 'cpu']), /--workers 2 needs the blas backend \(this run has cpu\)/);
});

test('missing and corrupt checkpoints, and another architecture, are refused without damage', () => {
  const dir = tempDir();
  assertCleanFailure(runCli(['sample', '--checkpoint', path.join(dir, 'none'), '--out', path.join(dir, 'g.png')]), /no checkpoint in/);
  const ckpt = path.join(dir, 'ckpt');
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--out', ckpt]).status, 0);
  const snapshot = () => fs.readdirSync(ckpt).sort().map((f) => [f, fs.readFileSync(path.join(ckpt, f)).toString('base64')]);
  const before = snapshot();
  assertCleanFailure(runCli(['train', '--epochs', '2', '--resume', '--width', '128', '--out', ckpt]), /--width 128: the checkpoint's run has 64, fixed when a run starts/);
  assertCleanFailure(runCli(['train', '--epochs', '2', '--out', ckpt]), /already holds a checkpoint; pass --resume/);
  assert.deepEqual(snapshot(), before);

  const corrupt = path.join(dir, 'corrupt');
  fs.mkdirSync(corrupt);
  fs.writeFileSync(path.join(corrupt, 'checkpoint.json'), '{not json');
  assertCleanFailure(runCli(['sample', '--checkpoint', corrupt, '--out', path.join(dir, 'g.png')]), /corrupt checkpoint/);
});

test('an output path that cannot be written is refused and an existing grid is not damaged', () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'ckpt');
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--out', ckpt]).status, 0);
  assertCleanFailure(runCli(['sample', '--checkpoint', ckpt, '--out', path.join(dir, 'no', 'such', 'g.png')]), /cannot write .* does not exist/);
  fs.writeFileSync(path.join(dir, 'file'), 'x');
  assertCleanFailure(runCli(['train', '--epochs', '1', ...SMALL, '--out', path.join(dir, 'file', 'sub')]), /cannot create run folder .*: a parent of it is a file/);
  const grid = path.join(dir, 'grid.png');
  fs.writeFileSync(grid, 'precious');
  assertCleanFailure(runCli(['sample', '--checkpoint', path.join(dir, 'missing'), '--out', grid]), /no checkpoint/);
  assert.equal(fs.readFileSync(grid, 'utf8'), 'precious');
});

test('help lists every option with its default, and --version prints the version', () => {
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
  assert.equal(runCli(['--version']).stdout.trim(), version);
  const top = runCli(['--help']).stdout;
  assert.match(top, /train/);
  assert.match(top, /sample/);
  assert.match(top, /evaluate/);
  const train = runCli(['train', '--help']).stdout;
  for (const o of ['--epochs', '--batch-size', '--lr', '--width', '--timesteps', '--limit', '--seed', '--out', '--resume', '--sample-every', '--backend']) {
    assert.match(train, new RegExp(o));
  }
  assert.match(train, /default: 1000/);
  assert.match(train, /Examples:/);
  const sample = runCli(['sample', '--help']).stdout;
  for (const o of ['--checkpoint', '--n', '--out', '--seed', '--backend']) assert.match(sample, new RegExp(o));
  assert.match(sample, /default: 64/);
});

test('--recipe seed trains the blog post\'s recipe, the default recipe its own; single options override either', () => {
  const read = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
  const seedDir = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--recipe', 'seed', '--out', seedDir]).status, 0);
  const seed = read(seedDir);
  assert.equal(seed.training.optimizer.lr, 1e-4);
  assert.equal(seed.training.lrSchedule.kind, 'constant');
  assert.equal(seed.training.lrSchedule.warmupSteps, 0);
  assert.equal(seed.training.ema, 0);
  assert.equal(seed.sampling.clipDenoised, false);
  const defDir = tempDir();
  const r = runCli(['train', '--epochs', '2', ...SMALL, '--keep-every', '1', '--out', defDir]);
  assert.equal(r.status, 0, r.stderr);
  const def = read(defDir);
  assert.equal(def.training.optimizer.lr, 1e-3);
  assert.deepEqual(def.training.lrSchedule, { kind: 'cosine', warmupSteps: 1000, totalSteps: 8 });
  assert.equal(def.training.ema, 0.9995);
  // --keep-every leaves a loadable copy of each epoch's checkpoint
  assert.equal(read(path.join(defDir, 'epoch-0001')).training.epoch, 1);
  assert.equal(read(path.join(defDir, 'epoch-0002')).training.epoch, 2);
  // sample clamps x̂0 as the checkpoint's record says (neither recipe does) unless told otherwise
  const grid = (checkpoint: string, name: string, ...flags: string[]) => {
    const file = path.join(defDir, name);
    const s = runCli(['sample', '--checkpoint', checkpoint, '--n', '2', '--out', file, ...flags]);
    assert.equal(s.status, 0, s.stderr);
    return fs.readFileSync(file);
  };
  const epoch1 = path.join(defDir, 'epoch-0001');
  assert.equal(def.sampling.clipDenoised, false);
  assert.equal(read(epoch1).sampling.clipDenoised, false);
  const unclamped = grid(epoch1, 'recipe.png');
  const clamped = grid(epoch1, 'clip.png', '--clip-denoised');
  assert.notDeepEqual(unclamped, clamped, 'clamping changes this barely trained model\'s samples');
  assert.deepEqual(grid(epoch1, 'plain.png', '--no-clip-denoised'), unclamped);
  // The default is the record's: the same checkpoint recorded with clamping on samples clamped unless told not to.
  const clampingRecord = path.join(tempDir(), 'clamping');
  fs.cpSync(epoch1, clampingRecord, { recursive: true });
  const flipped = read(clampingRecord);
  flipped.sampling.clipDenoised = true;
  fs.writeFileSync(path.join(clampingRecord, 'checkpoint.json'), JSON.stringify(flipped, null, 2));
  assert.deepEqual(grid(clampingRecord, 'recorded-clip.png'), clamped);
  assert.deepEqual(grid(clampingRecord, 'recorded-clip-off.png', '--no-clip-denoised'), unclamped);
  const mixed = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--recipe', 'seed', '--ema', '0.99', '--lr-schedule', 'cosine', '--out', mixed]).status, 0);
  assert.equal(read(mixed).training.ema, 0.99);
  assert.equal(read(mixed).training.lrSchedule.kind, 'cosine');
  assert.equal(read(mixed).training.optimizer.lr, 1e-4);
  // --prediction v is recorded with the schedule, used by sample, and fixed for the run
  const vDir = tempDir();
  const vr = runCli(['train', '--epochs', '1', ...SMALL, '--prediction', 'v', '--out', vDir]);
  assert.equal(vr.status, 0, vr.stderr);
  assert.match(vr.stderr, /v-prediction/);
  assert.equal(read(vDir).schedule.prediction, 'v');
  assert.equal(read(defDir).schedule.prediction, 'epsilon');
  assert.equal(runCli(['sample', '--checkpoint', vDir, '--n', '2', '--out', path.join(vDir, 'v.png')]).status, 0);
  assertCleanFailure(runCli(['train', '--epochs', '2', '--resume', '--prediction', 'epsilon', '--out', vDir]), /--prediction epsilon: the checkpoint's run has v/);
  assertCleanFailure(runCli(['train', '--prediction', 'x0']), /--prediction/);
  assertCleanFailure(runCli(['train', '--epochs', '2', '--resume', '--recipe', 'seed', '--out', seedDir]), /--recipe/);
  assertCleanFailure(runCli(['train', '--recipe', 'fast']), /--recipe/);
});

test('--model unet trains on a folder of RGB images, samples an RGB grid, and evaluate compares it with the folder', async () => {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  for (let i = 0; i < 6; i++) {
    const px = Buffer.alloc(20 * 20 * 3, i * 40);
    await sharp(px, { raw: { width: 20, height: 20, channels: 3 } }).png().toFile(path.join(images, `img-${i}.png`));
  }
  fs.writeFileSync(path.join(images, 'broken.png'), 'no');
  const ckpt = path.join(dir, 'ckpt');
  const unet = ['--model', 'unet', '--data', images, '--image-size', '16', '--base-channels', '8', '--channel-mults', '1,2', '--attention', '8', '--batch-size', '3'];
  const train = runCli(['train', '--epochs', '1', ...unet, '--out', ckpt]);
  assert.equal(train.status, 0, train.stderr);
  assert.match(train.stderr, /skipped 1 of 7 image files/);
  assert.match(train.stderr, /training unet 8x\[1,2\]/);
  const meta = JSON.parse(fs.readFileSync(path.join(ckpt, 'checkpoint.json'), 'utf8'));
  assert.equal(meta.model.kind, 'unet');
  assert.deepEqual(meta.model.channelMults, [1, 2]);
  assert.equal(meta.schedule.prediction, 'v'); // the default recipe's U-net target
  assert.deepEqual(meta.sampling, { clipDenoised: false, sampler: 'dpmpp-2m', steps: 20 }); // and its sampler
  assert.match(train.stderr, /v-prediction/);
  assert.equal(meta.data.count, 6);
  const grid = path.join(dir, 'grid.png');
  const sample = runCli(['sample', '--checkpoint', ckpt, '--n', '4', '--steps', '5', '--out', grid]);
  assert.equal(sample.status, 0, sample.stderr);
  const info = await sharp(grid).metadata();
  assert.deepEqual([info.width, info.height, info.channels], [2 * 16 + 2, 2 * 16 + 2, 3]);
  assert.equal(meta.data.background, '#ffffff');
  assert.equal(meta.data.flip, false);
  // A folder model is scored against its folder: copies, diversity, colour; --nearest pairs each sample with its nearest training image.
  const nearestFile = path.join(dir, 'nearest.png');
  const ev = runCli(['evaluate', '--checkpoint', ckpt, '--n', '10', '--steps', '3', '--nearest', nearestFile]);
  assert.equal(ev.status, 0, ev.stderr);
  assert.match(ev.stdout, /^n 10 \(against 6 training images in /m);
  assert.match(ev.stdout, /^copies [01]\.\d{4} \(samples whose nearest training image is within 1\/3 of their mean distance to their 6 nearest/m);
  // Too few images for the folder classifier's figures (6, in one folder: it learns rotations); said so.
  assert.match(ev.stdout, /^classifier folder classifier of rotations \(no class subfolders\), 16 px, trained on 5 images/m);
  assert.match(ev.stdout, /^fd, kid, precision, recall: needs at least 8 images in the folder \(6\)/m);
  assert.match(ev.stdout, /^diversity \d+\.\d{4}/m);
  assert.match(ev.stdout, /^colour_mean [\d.]+,[\d.]+,[\d.]+ \(data [\d.]+,[\d.]+,[\d.]+\)/m);
  const pairs = await sharp(nearestFile).metadata();
  assert.deepEqual([pairs.width, pairs.height], [16 * 16 + 15 * 2, 2 * 16 + 2]); // 20 tiles, 16 a row
  const json = JSON.parse(runCli(['evaluate', '--checkpoint', ckpt, '--n', '4', '--steps', '3', '--json']).stdout);
  assert.equal(json.trainingImages, 6);
  assert.ok(json.copies >= 0 && json.copies <= 1 && json.diversity >= 0);
  assertCleanFailure(runCli(['evaluate', '--checkpoint', ckpt, '--samples', grid, '--data', images]), /--samples scores digits/);
  assertCleanFailure(runCli(['evaluate', '--checkpoint', ckpt, '--nearest', path.join(dir, 'x.bmp')]), /bmp/);
  assertCleanFailure(runCli(['train', '--epochs', '2', '--resume', '--model', 'fc', '--out', ckpt]), /--model fc: the checkpoint's run has unet, fixed when a run starts/);
  assertCleanFailure(runCli(['train', '--base-channels', '8', '--out', path.join(dir, 'y')]), /--base-channels is an option of the convolutional U-net \(unet\), not of fc/);
  assertCleanFailure(runCli(['train', '--model', 'unet', '--width', '64', '--out', path.join(dir, 'y')]), /--width is an option of the fully connected model \(fc\), not of unet/);
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty);
  assertCleanFailure(runCli(['train', '--model', 'unet', '--data', empty, '--out', path.join(dir, 'x')]), /no PNG, JPEG, WebP or SVG images/);
  assertCleanFailure(runCli(['train', '--model', 'unet', '--data', images, '--background', 'pink', '--out', path.join(dir, 'x')]), /--background.*expected #rrggbb/);
});

test('a U-net on MNIST-32 (the default data for --model unet) is evaluated on its digits with the frame cropped', () => {
  const ckpt = path.join(tempDir(), 'ckpt');
  const train = runCli(['train', '--epochs', '1', '--model', 'unet', '--limit', '64', '--base-channels', '8', '--channel-mults', '1,2', '--attention', '16', '--batch-size', '32', '--out', ckpt]);
  assert.equal(train.status, 0, train.stderr);
  assert.match(train.stderr, /on 64 MNIST-32 images/);
  assert.equal(JSON.parse(fs.readFileSync(path.join(ckpt, 'checkpoint.json'), 'utf8')).training.ema, 0.999); // the default recipe's U-net averaging
  const r = runCli(['evaluate', '--checkpoint', ckpt, '--n', '20', '--steps', '4', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  assert.equal(result.samples.n, 20);
  assert.ok(Number.isFinite(result.samples.fd));
});

test('without the native kernels: the fully connected model trains and samples on --backend wasm and cpu', async () => {
  for (const backend of ['wasm', 'cpu']) {
    const dir = tempDir();
    const train = runCli(['train', '--epochs', '1', '--limit', '64', '--width', '16', '--batch-size', '32', '--backend', backend, '--out', dir]);
    assert.equal(train.status, 0, train.stderr);
    assert.match(train.stderr, new RegExp(`backend ${backend}`));
    assert.match(train.stderr, /epoch 1\/1: loss \d/);
    // more images than --batch-size: three batches, the last one partial
    const out = path.join(dir, 'g.png');
    const sample = runCli(['sample', '--checkpoint', dir, '--n', '5', '--batch-size', '2', '--steps', '3', '--backend', backend, '--out', out]);
    assert.equal(sample.status, 0, sample.stderr);
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [3 * 28 + 4, 2 * 28 + 2]);
    // the fifth tile holds an image (not the grey of an empty cell), the sixth is empty
    const tile = (k: number) => {
      const top = Math.floor(k / 3) * 30, left = (k % 3) * 30;
      const values = new Set<number>();
      for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) values.add(data[((top + y) * info.width + left + x) * info.channels]);
      return values;
    };
    assert.notDeepEqual([...tile(4)], [128], `${backend}: the fifth image is missing`);
    assert.deepEqual([...tile(5)], [128], `${backend}: the sixth cell should be empty`);
  }
});

test('a version-1 checkpoint samples the same grid as the diffuse that wrote it, and resumes as the current version', () => {
  const dir = tempDir();
  fs.cpSync(path.join(ROOT, 'test', 'fixtures', 'v1-fc'), dir, { recursive: true });
  const out = path.join(dir, 'grid.png');
  // the fixture's grid was written by the last version-1 diffuse on the blas backend
  const r = runCli(['sample', '--checkpoint', dir, '--n', '4', '--steps', '3', '--backend', 'blas', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(fs.readFileSync(out), fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'v1-fc-grid-blas.png')));
  const resumed = runCli(['train', '--epochs', '2', '--resume', '--out', dir]);
  assert.equal(resumed.status, 0, resumed.stderr);
  const saved = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
  assert.equal(saved.version, RUN_RECORD_VERSION);
  assert.equal(saved.training.epoch, 2);
  assert.equal(saved.model.channels, 1);
});

test('sample --sampler: DPM-Solver++ and DDIM by name, the checkpoint\'s recorded default, and misplaced options refused', async () => {
  const dir = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--out', dir]).status, 0);
  const record = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
  assert.deepEqual(record.sampling, { clipDenoised: false, sampler: 'ddim', steps: 100 }); // the default recipe's for the FC model
  const grid = (name: string, ...flags: string[]) => {
    const file = path.join(dir, name);
    const r = runCli(['sample', '--checkpoint', dir, '--n', '4', '--out', file, ...flags]);
    assert.equal(r.status, 0, r.stderr);
    return { bytes: fs.readFileSync(file), stderr: r.stderr };
  };
  const recorded = grid('recorded.png');
  assert.match(recorded.stderr, /ddim 100 steps/);
  assert.deepEqual(grid('named.png', '--sampler', 'ddim', '--steps', '100', '--eta', '1').bytes, recorded.bytes);
  assert.match(grid('2m.png', '--sampler', 'dpmpp-2m').stderr, /dpmpp-2m 20 steps/);
  assert.match(grid('3m.png', '--sampler', 'dpmpp-3m', '--steps', '8', '--spacing', 'quadratic').stderr, /dpmpp-3m 8 steps/);
  assert.match(grid('ddim.png', '--eta', '0', '--steps', '10').stderr, /ddim 10 steps/);
  assert.match(grid('all.png', '--sampler', 'ancestral').stderr, /ancestral/);
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--sampler', 'dpmpp-2m', '--eta', '0', '--out', path.join(dir, 'x.png')]), /--eta applies to the ddim sampler, not dpmpp-2m/);
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--sampler', 'ddim', '--spacing', 'linspace', '--out', path.join(dir, 'x.png')]), /--spacing applies to the dpmpp samplers/);
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--sampler', 'heun', '--out', path.join(dir, 'x.png')]), /--sampler.*Allowed choices/);
  // the seed recipe records the blog post's ancestral sampler; --steps alone then means DDIM
  const seed = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--recipe', 'seed', '--out', seed]).status, 0);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(seed, 'checkpoint.json'), 'utf8')).sampling, { clipDenoised: false, sampler: 'ancestral', steps: null });
  const r = runCli(['sample', '--checkpoint', seed, '--n', '2', '--steps', '5', '--out', path.join(seed, 'g.png')]);
  assert.match(r.stderr, /ddim 5 steps/);
});

test('sample --guide: autoguidance by an earlier epoch changes the grid; guides of other images or schedules are refused first', () => {
  const dir = tempDir();
  assert.equal(runCli(['train', '--epochs', '2', '--keep-every', '1', ...SMALL, '--out', dir]).status, 0);
  const early = path.join(dir, 'epoch-0001');
  const grid = (name: string, ...flags: string[]) => {
    const file = path.join(dir, name);
    const r = runCli(['sample', '--checkpoint', dir, '--n', '4', '--steps', '10', '--out', file, ...flags]);
    assert.equal(r.status, 0, r.stderr);
    return { bytes: fs.readFileSync(file), stderr: r.stderr };
  };
  const plain = grid('plain.png');
  const guided = grid('guided.png', '--guide', early);
  assert.match(guided.stderr, new RegExp(`ddim 10 steps, guided by ${early.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(w 2\\)`));
  assert.notDeepEqual(guided.bytes, plain.bytes);
  assert.match(grid('w3.png', '--guide', early, '--guidance', '3').stderr, /\(w 3\)/);
  const out = path.join(dir, 'refused.png');
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--guidance', '2', '--out', out]), /--guidance weighs a guide: give --guide <checkpoint> too/);
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--guide', early, '--guidance', '-1', '--out', out]), /--guidance.*positive number/);
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--guide', path.join(dir, 'none'), '--out', out]), /none/);
  const v = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--prediction', 'v', '--out', v]).status, 0);
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--guide', v, '--out', out]), /--guide .*noise schedule/);
  const wide = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--data', 'mnist32', '--out', wide]).status, 0);
  assertCleanFailure(runCli(['sample', '--checkpoint', dir, '--guide', wide, '--out', out]), /--guide .*its images are 32x32x1, the checkpoint's 28x28x1/);
  assert.ok(!fs.existsSync(out), 'nothing written');
});

test('sample --animate writes the reverse process as an animation, --trajectory as a still; other extensions are refused first', async () => {
  const dir = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--out', dir]).status, 0);
  const [webp, gif, still] = ['a.webp', 'a.gif', 'still.png'].map((f) => path.join(dir, f));
  const r = runCli(['sample', '--checkpoint', dir, '--n', '9', '--animate', webp, '--trajectory', still, '--out', path.join(dir, 'g.png')]);
  assert.equal(r.status, 0, r.stderr);
  const anim = await sharp(webp, { animated: true }).metadata();
  assert.equal(anim.format, 'webp');
  assert.equal(anim.pages, frameSteps(100, 24).length); // the recorded sampler's 100 steps and the starting noise, in at most 24 frames
  assert.ok(anim.pages! >= 20);
  assert.deepEqual([anim.width, anim.pageHeight], [3 * 28 + 4, 3 * 28 + 4]);
  assert.equal(anim.delay!.at(-1), 2000, 'the finished grid is held');
  const s = await sharp(still).metadata();
  assert.deepEqual([s.width, s.height], [8 * 28 + 7 * 2, 8 * 28 + 7 * 2]); // 8 images down, 8 steps across
  const a = runCli(['sample', '--checkpoint', dir, '--n', '2', '--sampler', 'ancestral', '--animate', gif, '--out', path.join(dir, 'g2.png')]);
  assert.equal(a.status, 0, a.stderr);
  const g = await sharp(gif, { animated: true }).metadata();
  assert.equal(g.format, 'gif');
  assert.equal(g.pages, frameSteps(1000, 24).length); // 1000 steps shown in at most 24 frames
  assertCleanFailure(runCli(['sample', '--checkpoint', path.join(dir, 'none'), '--animate', path.join(dir, 'a.mp4'), '--out', path.join(dir, 'g3.png')]), /an animation is written as .webp or .gif, not .mp4/);
  assertCleanFailure(runCli(['sample', '--checkpoint', path.join(dir, 'none'), '--trajectory', path.join(dir, 't.tiff'), '--out', path.join(dir, 'g3.png')]), /"\.tiff" names no image format/);
});

test('denoise: from t = 0 the original comes back, from t = T − 1 the result does not depend on the original', async () => {
  const dir = tempDir();
  assert.equal(runCli(['train', '--epochs', '1', ...SMALL, '--out', dir]).status, 0);
  /** The three tiles (original, noisy, denoised) of each row of a denoise grid, as values in [0, 255]. */
  const rows = async (file: string, count: number) => {
    const { data, info } = await sharp(file).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [3 * 28 + 4, count * 28 + (count - 1) * 2, 1]);
    const tile = (r: number, c: number) => Array.from({ length: 784 }, (_, i) => data[(r * 30 + Math.floor(i / 28)) * info.width + c * 30 + (i % 28)]);
    return Array.from({ length: count }, (_, r) => ({ original: tile(r, 0), noisy: tile(r, 1), denoised: tile(r, 2) }));
  };
  const meanDiff = (a: number[], b: number[]) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
  const out = (i: number) => path.join(dir, `d${i}.png`);
  for (const i of [0, 1]) {
    const r = runCli(['denoise', '--checkpoint', dir, '--mnist-test', String(i), '--t', '0,999', '--out', out(i)]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /2 rows: original \| noised to t \| denoised; t = 0, 999/);
  }
  const [a, b] = [await rows(out(0), 2), await rows(out(1), 2)];
  assert.ok(meanDiff(a[0].original, a[0].denoised) < 3, `t = 0 changed the image by ${meanDiff(a[0].original, a[0].denoised)} grey levels on average`);
  const inputs = meanDiff(a[1].original, b[1].original);
  const outputs = meanDiff(a[1].denoised, b[1].denoised);
  assert.ok(outputs < 0.05 * inputs, `from t = 999 two digits ${inputs.toFixed(1)} apart gave results ${outputs.toFixed(2)} apart`);
  assertCleanFailure(runCli(['denoise', '--checkpoint', dir, '--out', out(2)]), /one of --image FILE or --mnist-test I/);
  assertCleanFailure(runCli(['denoise', '--checkpoint', dir, '--mnist-test', '0', '--t', '1000', '--out', out(2)]), /--t 1000: the checkpoint's process has timesteps 0..999/);
});

test('npm start (scripts/quickstart.js, shrunk) trains, writes the grid and the report, and says what to try next', async () => {
  const out = path.join(tempDir(), 'quickstart');
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'quickstart.js')], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, DIFFUSE_QUICKSTART_OUT: out, DIFFUSE_QUICKSTART_IMAGES: '64' }, timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  const info = await sharp(path.join(out, 'grid.png')).metadata();
  assert.deepEqual([info.width, info.height], [10 * 28 + 9 * 2, 10 * 28 + 9 * 2], 'ten of each digit, a row per digit');
  for (const f of ['report.html', 'history.csv', 'checkpoint.json']) assert.ok(fs.existsSync(path.join(out, f)), f);
  assert.match(r.stderr, /quickstart done in \d+ s/);
  assert.match(r.stderr, /Next:\n.*--class 7 .*\n.*--animate/);
});
