/**
 * The README's commands work: every `diffuse` and `node scripts/...` line of its shell blocks is run in
 * order in a fresh folder, shrunk to test size (1-2 epochs on 64 images, 4 samples with 2 steps).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { readNpyFloat32 } from '../../src/io/npy';
import { GRID_GAP } from '../../src/io/grid';
import { BIN, ROOT, tempDir } from '../helpers';

/** Sets `--flag value` in args (replacing a given value), or appends it. */
function setFlag(args: string[], flag: string, value: string): string[] {
  const i = args.indexOf(flag);
  return i >= 0 ? [...args.slice(0, i + 1), value, ...args.slice(i + 2)] : [...args, flag, value];
}

/** A guide kept at epoch N (`--guide DIR/epoch-000N`) is the first epoch's copy: runs shrink to one epoch. */
function guideKept(args: string[]): string[] {
  const i = args.indexOf('--guide');
  return i >= 0 ? setFlag(args, '--guide', args[i + 1].replace(/epoch-\d+$/, 'epoch-0001')) : args;
}

/** A README command line at test size. */
function shrink(args: string[]): string[] {
  // the synopsis lines (`diffuse sample [options]`, `diffuse import FILE`): their help
  if (args.some((a) => a === '[options]' || /^[A-Z]+$/.test(a))) return [args[0], '--help'];
  if (args[0] === 'train') return setFlag(setFlag(args, '--epochs', args.includes('--resume') ? '2' : '1'), '--limit', '64');
  if (args[0] === 'sample') {
    const shrunk = setFlag(setFlag(guideKept(args), '--n', '4'), '--steps', '2');
    return args.includes('--per-class') ? setFlag(shrunk, '--per-class', '2') : shrunk;
  }
  if (args[0] === 'evaluate') return setFlag(setFlag(args, '--n', '20'), '--steps', '2');
  if (['inpaint', 'edit', 'interpolate'].includes(args[0])) return setFlag(setFlag(args, '--n', args[0] === 'interpolate' ? '3' : '2'), '--steps', '2');
  if (args[0] === 'invert') return setFlag(args, '--steps', '2');
  return args;
}

/** The value after `flag` in args, if any. */
function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

/** A checkpoint's record (checkpoint.json), after checking that the weights it names are there. */
function checkpointIn(dir: string, what: string): { training: { epoch: number }; model: { height: number; imageWidth: number; channels: number }; weights: string } {
  const file = path.join(dir, 'checkpoint.json');
  assert.ok(fs.existsSync(file), `${what}: no checkpoint in ${dir}`);
  const record = JSON.parse(fs.readFileSync(file, 'utf8'));
  const weights = path.join(dir, record.weights);
  assert.ok(fs.existsSync(weights) && fs.statSync(weights).size > 1000, `${what}: the weights ${record.weights} are there`);
  return record;
}

/** An image file of the format its extension names, side x side px (a grid of n tiles: 2x2 at n = 4). */
async function assertImage(file: string, width: number, height: number, what: string, channels?: number): Promise<void> {
  assert.ok(fs.existsSync(file), `${what}: wrote no ${file}`);
  const meta = await sharp(file).metadata();
  const format = { '.png': 'png', '.webp': 'webp', '.jpg': 'jpeg', '.gif': 'gif' }[path.extname(file).toLowerCase()];
  assert.equal(meta.format, format, `${what}: ${file}'s format`);
  assert.deepEqual([meta.width, meta.height], [width, height], `${what}: ${file}'s size`);
  if (channels === 3) assert.ok(meta.channels! >= 3, `${what}: ${file} is in colour`);
}

/** The tiles side by side with GRID_GAP-px gaps. */
const across = (tiles: number, side: number) => tiles * side + (tiles - 1) * GRID_GAP;

/** What a README command (as run, shrunk) promises: its files there, of the right kind and size, and its figures. */
async function assertOutputs(words: string[], cwd: string, stdout: string): Promise<void> {
  const [command, ...args] = words;
  const at = (p: string) => path.resolve(cwd, p);
  const what = words.join(' ');
  if (args.includes('--help') || command === '--help') {
    assert.match(stdout, /Usage: diffuse/, what);
    return;
  }
  if (command === 'train') {
    const out = at(flagValue(args, '--out')!);
    const record = checkpointIn(out, what);
    assert.equal(record.training.epoch, Number(flagValue(args, '--epochs')), `${what}: epochs trained`);
    for (const f of ['history.csv', 'report.html']) assert.ok(fs.existsSync(path.join(out, f)), `${what}: ${f}`);
    if (flagValue(args, '--keep-every') === '1') assert.equal(checkpointIn(path.join(out, 'epoch-0001'), what).training.epoch, 1);
    if (flagValue(args, '--sample-every') === '1') await assertImage(path.join(out, 'samples-epoch-0001.png'), across(8, record.model.imageWidth), across(8, record.model.height), what);
  } else if (command === 'sample') {
    const record = checkpointIn(at(flagValue(args, '--checkpoint')!), what) as ReturnType<typeof checkpointIn> & { model: { classes: number } };
    const { height, imageWidth, channels } = record.model;
    assert.equal(flagValue(args, '--n'), '4');
    // --class all|LIST --per-class 2: a row of two per class; else the four images in a 2x2 grid
    const classes = flagValue(args, '--class');
    const [cols, rows] = flagValue(args, '--per-class') === '2' && classes ? [2, classes === 'all' ? record.model.classes : classes.split(',').length] : [2, 2];
    await assertImage(at(flagValue(args, '--out')!), across(cols, imageWidth), across(rows, height), what, channels);
    const animation = flagValue(args, '--animate');
    if (animation) {
      await assertImage(at(animation), across(2, imageWidth), across(2, height), what);
      assert.ok(((await sharp(at(animation)).metadata()).pages ?? 1) > 1, `${what}: ${animation} is animated`);
    }
    const trajectory = flagValue(args, '--trajectory');
    if (trajectory) assert.ok((await sharp(at(trajectory)).metadata()).format === 'png', `${what}: ${trajectory}`);
  } else if (command === 'denoise') {
    const rows = flagValue(args, '--t')!.split(',').length;
    await assertImage(at(flagValue(args, '--out')!), across(3, 28), across(rows, 28), what); // original | noised | denoised, a row per t
  } else if (command === 'evaluate') {
    const record = checkpointIn(at(flagValue(args, '--checkpoint')!), what);
    if (record.model.channels === 1) {
      assert.match(stdout, new RegExp(`^n ${flagValue(args, '--n')}$`, 'm'), what);
      for (const key of ['fd', 'confidence', 'coverage']) assert.match(stdout, new RegExp(`^${key} \\d+\\.\\d+$`, 'm'), `${what}: ${key}`);
    } else {
      for (const key of ['copies', 'diversity', 'fd', 'kid', 'precision', 'recall']) assert.match(stdout, new RegExp(`^${key} \\d`, 'm'), `${what}: ${key}`);
      if ((record as { model: { classes?: number } }).model.classes) assert.match(stdout, /^class_accuracy [01]\.\d+/m, `${what}: class_accuracy`);
    }
    const nearest = flagValue(args, '--nearest');
    if (nearest) assert.equal((await sharp(at(nearest)).metadata()).format, 'png', `${what}: ${nearest}`);
  } else if (command === 'export') {
    const site = flagValue(args, '--web');
    if (site) assert.match(fs.readFileSync(path.join(at(site), 'index.html'), 'utf8'), /<html/i, what);
    const file = flagValue(args, '--safetensors');
    if (file) {
      const bytes = fs.readFileSync(at(file));
      const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
      assert.ok(Object.keys(header).some((k) => k !== '__metadata__'), `${what}: tensors in ${file}`);
    }
  } else if (command === 'import') {
    checkpointIn(at(flagValue(args, '--out')!), what);
  } else if (['inpaint', 'edit', 'interpolate', 'invert'].includes(command)) {
    const { height, imageWidth, channels } = checkpointIn(at(flagValue(args, '--checkpoint')!), what).model;
    const n = Number(flagValue(args, '--n'));
    if (command === 'invert') {
      assert.deepEqual(readNpyFloat32(at(flagValue(args, '--out')!)).shape, [1, height, imageWidth, channels], what);
      return;
    }
    // one row: original | masked | n inpaintings; a row per strength: original | n edits; the strip of n
    const [cols, rows] = command === 'inpaint' ? [2 + n, 1] : command === 'edit' ? [1 + n, flagValue(args, '--strength')!.split(',').length] : [n, 1];
    await assertImage(at(flagValue(args, '--out')!), across(cols, imageWidth), across(rows, height), what, channels);
  }
}

/** The emoji package's categories (folder name, emoji.json name) and a colour for each one's fake images. */
const EMOJI_CATEGORIES: [string, string, string][] = [
  ['smileys-emotion', 'Smileys & Emotion', '#f8c020'], ['people-body', 'People & Body', '#e0a070'], ['animals-nature', 'Animals & Nature', '#60a040'],
  ['food-drink', 'Food & Drink', '#d04030'], ['travel-places', 'Travel & Places', '#3070d0'], ['activities', 'Activities', '#a040c0'],
  ['objects', 'Objects', '#808080'], ['symbols', 'Symbols', '#20a0a0'], ['flags', 'Flags', '#202020'],
];

/**
 * A cache folder (DIFFUSE_CACHE_DIR) in which scripts/emoji.js finds emoji-datasource-google already unpacked: 8
 * 64-px PNGs per category (a disc of the category's colour on transparency, a skin-tone variant for each), so
 * the README's command runs as written without fetching the 30 MB package.
 */
async function fakeEmojiCache(): Promise<string> {
  const cache = tempDir('emoji-cache-');
  const pkg = path.join(cache, 'emoji', 'emoji-datasource-google');
  const images = path.join(pkg, 'package', 'img', 'google', '64');
  fs.mkdirSync(images, { recursive: true });
  const entries = [];
  for (const [, category, colour] of EMOJI_CATEGORIES) {
    for (let i = 0; i < 8; i++) {
      const code = `${category.slice(0, 3).toLowerCase()}${i}`;
      const disc = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><circle cx="32" cy="32" r="${12 + 2 * i}" fill="${colour}"/></svg>`;
      await sharp(Buffer.from(disc)).png().toFile(path.join(images, `${code}.png`));
      fs.copyFileSync(path.join(images, `${code}.png`), path.join(images, `${code}-tone.png`));
      entries.push({ category, short_name: code, image: `${code}.png`, skin_variations: { '1F3FB': { image: `${code}-tone.png` } } });
    }
  }
  fs.writeFileSync(path.join(pkg, 'package', 'emoji.json'), JSON.stringify(entries));
  fs.writeFileSync(path.join(pkg, '.unpacked-64'), '');
  return cache;
}

const hasTorchrun = spawnSync('torchrun', ['--help'], { stdio: 'ignore' }).status === 0;

/** Why a README line cannot run on this machine (.ci/run installs what they need), or null. */
function missing(line: string): string | null {
  if (/torchrun|trained\.safetensors/.test(line) && !hasTorchrun) return 'no torchrun (apt-get install python3-torch)';
  return null;
}

test("the README's shell commands run (at test size)", { timeout: 300_000 }, async (t) => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const lines = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
    .flatMap((m) => m[1].replace(/\\\n\s*/g, ' ').split('\n'))
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => /^(diffuse |node scripts\/|PYTHONPATH=python torchrun )/.test(l));
  assert.ok(lines.length >= 10, `${lines.length} commands found`);
  const cwd = tempDir();
  let checked = 0;
  for (const line of lines) {
    const why = missing(line);
    if (why) {
      await t.test(line, { skip: why }, () => {}); // listed by the runner, and a failure under CI
      continue;
    }
    const words = line.split(/\s+/);
    let r;
    let command: string[];
    if (words[0] === 'PYTHONPATH=python') {
      // two updates on 256 images, with the project's Python package
      command = [...words.slice(2), '--max-steps', '2', '--limit', '256'];
      r = spawnSync(words[1], command, { cwd, encoding: 'utf8', timeout: 300_000, env: { ...process.env, PYTHONPATH: path.join(ROOT, 'python'), OMP_NUM_THREADS: '1' } });
    } else {
      const script = words[0] === 'node' ? path.basename(words[1]) : null;
      // scripts/shapes.js DIR COUNT SIZE: 40 shapes; scripts/emoji.js as written, on a fake package in its cache
      command = words[0] === 'diffuse' ? [BIN, ...shrink(words.slice(1))] : [path.join(ROOT, words[1]), ...words.slice(2).map((w, i) => (script === 'shapes.js' && i === 1 ? '40' : w))];
      const env = script === 'emoji.js' ? { ...process.env, DIFFUSE_CACHE_DIR: await fakeEmojiCache() } : process.env;
      r = spawnSync(process.execPath, command, { cwd, encoding: 'utf8', timeout: 120_000, env });
    }
    assert.equal(r.status, 0, `${line}\n(run as: ${command.slice(1).join(' ')})\n${r.stdout}\n${r.stderr}`);
    if (words[0] === 'diffuse') await assertOutputs(command.slice(1), cwd, r.stdout);
    else if (words[1] === 'scripts/emoji.js') {
      const categories = fs.readdirSync(path.join(cwd, words[2])).sort();
      assert.deepEqual(categories, EMOJI_CATEGORIES.map(([c]) => c).sort(), `${line}: a folder per category`);
      assert.match(r.stdout, new RegExp(`^emoji: ${EMOJI_CATEGORIES.length * 8} images in ${EMOJI_CATEGORIES.length} categories`, 'm'), line);
    } else if (words[0] === 'node') {
      const shapes = fs.readdirSync(path.join(cwd, words[2]));
      assert.equal(shapes.length, 40, `${line}: ${shapes.length} files`);
      await assertImage(path.join(cwd, words[2], shapes[0]), 32, 32, line, 3);
    } else {
      const trained = path.resolve(cwd, flagValue(words, '--out')!);
      assert.ok(fs.existsSync(trained) && fs.statSync(trained).size > 1000, `${line}: wrote ${trained}`);
    }
    checked++;
    t.diagnostic(`ok: ${line}`);
  }
  // Every command ran and its outputs were checked (the synopsis lines' help included).
  assert.equal(checked, lines.filter((l) => !missing(l)).length);
});

test("`npx diffuse` in a checkout (the quickstart's next steps) leaves the native addon as npm built it", { timeout: 120_000 }, () => {
  // A copy of the checkout's package (node_modules linked, build/ copied), so a failure cannot break
  // the other tests' addon. npm would run `node-gyp rebuild` on a package with a binding.gyp and no
  // install script: build/ rebuilt without the sources stamp, and every later run refused the addon
  // and fell back to wasm (package.json's "gypfile": false turns that off).
  const dir = tempDir('diffuse-npx-');
  const pkg = path.join(dir, 'diffuse');
  fs.mkdirSync(pkg);
  // (npx links the package and runs its prepare script: the TypeScript and web builds, the addon where stale.)
  const skip = new Set(['node_modules', '.git', 'checkpoints', 'data', 'runs']);
  for (const entry of fs.readdirSync(ROOT).filter((e) => !skip.has(e))) fs.cpSync(path.join(ROOT, entry), path.join(pkg, entry), { recursive: true });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'), 'dir');
  const { builtHash, sourcesHash } = require(path.join(pkg, 'native', 'sources.js')) as { sourcesHash(): string | null; builtHash(): string | null };
  assert.equal(builtHash(), sourcesHash(), 'the copied addon carries its stamp');
  const addon = fs.statSync(path.join(pkg, 'build', 'Release', 'diffuse_native.node')).mtimeMs;
  const r = spawnSync('npx', ['--offline', '--yes', 'diffuse', '--version'], { cwd: pkg, encoding: 'utf8', env: { ...process.env, npm_config_cache: path.join(dir, 'npm-cache') } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
  assert.equal(builtHash(), sourcesHash(), 'the stamp still matches the sources');
  assert.equal(fs.statSync(path.join(pkg, 'build', 'Release', 'diffuse_native.node')).mtimeMs, addon, 'the addon was not rebuilt (it was up to date)');
});
