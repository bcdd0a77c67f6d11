/**
 * diffuse as a library (src/index.ts): the README's Node example runs as written and writes the bytes
 * `diffuse sample` writes with the same options; ES modules import it; bad calls reject with typed
 * errors carrying the command line's messages, and nothing is printed; a TypeScript consumer
 * type-checks against the shipped declarations (and one misusing them does not).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, readmeExample, runCli, tempDir } from '../helpers';
import { CheckpointError, OptionError, UnsupportedModelError, UserError, loadModel } from '../../src/index';

/** A folder where `require('diffuse')` and `import 'diffuse'` find this checkout, as they find an installed package. */
function appDir(): string {
  const dir = tempDir('diffuse-api-');
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'diffuse'), 'dir');
  return dir;
}

let app: string;
before(() => {
  // The README's checkpoint, small: a conditional FC model (the example asks for class 3)
  app = appDir();
  const r = runCli(['train', '--conditional', '--epochs', '1', '--limit', '256', '--width', '64', '--batch-size', '64', '--out', path.join(app, 'checkpoints', 'quickstart')]);
  assert.equal(r.status, 0, r.stderr);
});

test("the README's Node example runs as written and writes the PNG bytes `diffuse sample` writes with the same options", () => {
  const example = readmeExample('js');
  assert.match(example, /model\.sample\(\{ n: 16, seed: 7, class: 3 \}\)/, 'the CLI command below mirrors these options');
  fs.writeFileSync(path.join(app, 'example.js'), example);
  const r = spawnSync(process.execPath, ['example.js'], { cwd: app, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: process.env.DIFFUSE_TEST_NODE_OPTIONS ?? '' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'the API prints nothing unless asked');
  const cli = runCli(['sample', '--checkpoint', 'checkpoints/quickstart', '--n', '16', '--seed', '7', '--class', '3', '--out', 'cli.png'], { cwd: app });
  assert.equal(cli.status, 0, cli.stderr);
  const api = fs.readFileSync(path.join(app, 'threes.png'));
  assert.ok(api.equals(fs.readFileSync(path.join(app, 'cli.png'))), 'the example and diffuse sample wrote different bytes');
  assert.equal(api.readUInt32BE(16), 4 * 28 + 3 * 2, 'a 4x4 grid of 28-px digits'); // PNG width
});

test('an ES module imports the API by name', () => {
  const code = `import { loadModel, CheckpointError } from 'diffuse';
    try { await loadModel('no-such-folder'); } catch (e) { console.log(e instanceof CheckpointError, e.message); }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: app, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: process.env.DIFFUSE_TEST_NODE_OPTIONS ?? '' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'true no checkpoint in no-such-folder (checkpoint.json not found)');
});

test('bad calls reject with typed errors and the messages the command line prints', async () => {
  const ckpt = path.join(app, 'checkpoints', 'quickstart');
  const missing = path.join(app, 'missing');
  await assert.rejects(loadModel(missing, { backend: 'cpu' }), (e: Error) => e instanceof CheckpointError && e instanceof UserError && e.message === `no checkpoint in ${missing} (checkpoint.json not found)`);
  assert.match(runCli(['sample', '--checkpoint', missing, '--backend', 'cpu']).stderr.split('\n')[0], new RegExp(`^diffuse: error: no checkpoint in ${missing} \\(checkpoint\\.json not found\\)$`));
  await assert.rejects(loadModel(ckpt, { backend: 'gpu' as 'cpu' }), (e: Error) => e instanceof OptionError && e.option === 'backend');

  // corrupt weights, and a checkpoint from a newer diffuse
  const corrupt = path.join(app, 'corrupt');
  fs.cpSync(ckpt, corrupt, { recursive: true });
  const index = JSON.parse(fs.readFileSync(path.join(corrupt, 'checkpoint.json'), 'utf8'));
  fs.truncateSync(path.join(corrupt, index.weights), 100);
  await assert.rejects(loadModel(corrupt, { backend: 'cpu' }), (e: Error) => e instanceof CheckpointError && /^corrupt checkpoint: .* has 100 bytes, expected/.test(e.message));
  const newer = path.join(app, 'newer');
  fs.cpSync(ckpt, newer, { recursive: true });
  fs.writeFileSync(path.join(newer, 'checkpoint.json'), JSON.stringify({ ...index, version: 99 }));
  await assert.rejects(loadModel(newer, { backend: 'cpu' }), (e: Error) => e instanceof UnsupportedModelError && /format version 99; this diffuse reads up to \d+ \(a newer diffuse wrote it\)/.test(e.message));

  const model = await loadModel(ckpt, { backend: 'cpu' });
  try {
    assert.deepEqual(model.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const cases: [object, string, RegExp][] = [
      [{ n: 0 }, 'n', /^n 0: expected an integer of at least 1$/],
      [{ n: 2.5 }, 'n', /expected an integer/],
      [{ sampler: 'euler' }, 'sampler', /^sampler euler: one of ancestral, ddim, dpmpp-2m, dpmpp-3m$/],
      [{ steps: 5000 }, 'steps', /^steps 5000: the checkpoint's process has 1000 timesteps$/],
      [{ eta: 0.5, sampler: 'ancestral' }, 'eta', /applies to the ddim sampler/],
      [{ class: 'eleven' }, 'class', /^class eleven: the checkpoint's classes are 0, 1, .*, 9/],
      [{ cfg: 3 }, 'cfg', /weighs the classes drawn/],
      [{ perClass: 2 }, 'perClass', /counts the images of each class drawn/],
    ];
    for (const [options, option, message] of cases) {
      await assert.rejects(model.sample(options), (e: Error) => e instanceof OptionError && e.option === option && message.test(e.message), JSON.stringify(options));
    }
    // the same refusal from the command line, under its flag's name
    const cli = runCli(['sample', '--checkpoint', ckpt, '--backend', 'cpu', '--steps', '5000', '--out', path.join(app, 'refused.png')]);
    assert.match(cli.stderr.split('\n')[0], /^diffuse: error: --steps 5000: the checkpoint's process has 1000 timesteps$/, `exit ${cli.status}: ${cli.stdout}`);
    await assert.rejects(model.denoise({ image: new Float32Array(5), t: 10 }), (e: Error) => e instanceof OptionError && e.option === 'image' && /28x28x1 = 784 values/.test(e.message));
    await assert.rejects(model.denoise({ image: new Float32Array(784), t: 1000 }), (e: Error) => e instanceof OptionError && /^t 1000: the checkpoint's process has timesteps 0\.\.999$/.test(e.message));

    // what works: a row per class, labels and settings with the images; onStep sees every step
    let steps = 0;
    const images = await model.sample({ class: 'all', perClass: 2, steps: 4, sampler: 'ddim', onStep: ({ step }) => void (step > 0 && steps++) });
    assert.deepEqual(images.shape, [20, 28, 28, 1]);
    assert.equal(images.columns, 2);
    assert.deepEqual(images.labels!.slice(0, 4), ['0', '0', '1', '1']);
    assert.equal(steps, 4);
    assert.deepEqual([images.settings!.sampler, images.settings!.steps, images.settings!.cfg], ['ddim', 4, 2]);
    assert.deepEqual([images.toGrid().width, images.toGrid().height], [2 * 28 + 2, 10 * 28 + 9 * 2]);
    const { noisy, denoised } = await model.denoise({ image: images.data.slice(0, 784), t: 0, steps: 1 });
    assert.deepEqual(noisy.shape, [1, 28, 28, 1]);
    assert.ok(denoised.data.every(Number.isFinite));
  } finally {
    model.dispose();
  }
  await assert.rejects(model.sample(), (e: Error) => e instanceof UserError && /disposed/.test(e.message));
});

test('a TypeScript consumer type-checks against the shipped declarations; one misusing them does not', () => {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const good = `import { loadModel, OptionError, CheckpointError, type SampleOptions, type NodeImages } from 'diffuse';
export async function draw(dir: string): Promise<Buffer> {
  const model = await loadModel(dir, { backend: 'auto', onNotice: (line: string) => console.error(line) });
  try {
    const options: SampleOptions = { n: 4, seed: 1, sampler: 'ddim', steps: 10, class: ['3', 7], cfg: 2, onStep: ({ step, of }) => console.log(step, of) };
    const images: NodeImages = await model.sample(options);
    const [n, h, w, c]: [number, number, number, number] = images.shape;
    console.log(n * h * w * c, images.pixels(0).length, model.record.model.kind, model.classes.length);
    return await images.toPNG({ index: 0 });
  } catch (e) {
    if (e instanceof OptionError) console.error(e.option, e.detail);
    if (e instanceof CheckpointError) console.error(e.message);
    throw e;
  } finally {
    model.dispose();
  }
}
`;
  const bad = good.replace("sampler: 'ddim'", "sampler: 'euler'");
  const dir = appDir();
  const check = (file: string, text: string) => {
    fs.writeFileSync(path.join(dir, file), text);
    return spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', '--skipLibCheck', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules', '@types'), file], { cwd: dir, encoding: 'utf8' });
  };
  const ok = check('consumer.ts', good);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  const wrong = check('wrong.ts', bad);
  assert.notEqual(wrong.status, 0);
  assert.match(wrong.stdout, /wrong\.ts.*'"euler"' is not assignable/);
});
