/**
 * `diffuse export --web` in a real browser (Debian's chromium, driven by puppeteer-core): the page
 * samples with the cpu backend exactly as `diffuse sample --backend cpu` does for the same seed, for
 * the fully connected model and an RGB U-net, and the WebGL and wasm paths draw grids of the right size;
 * a class-conditional model's page samples by the class and guidance weight picked in it as
 * `diffuse sample --class --cfg` does, and an unconditional model's page has no class picker.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import type { Browser } from 'puppeteer-core';
import { DEFAULTS } from '../../src/config/defaults';
import { BIN, ROOT, assertCleanFailure, readmeExample, runCli, tempDir } from '../helpers';
import { launchBrowser, skipWithoutChromium } from '../browser';

const skip = skipWithoutChromium;
let browser: Browser;
const servers: ChildProcess[] = [];

before(async () => {
  if (skip) return;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.kill('SIGINT');
});

/** Starts `diffuse serve dir --port 0` and resolves with its URL. */
function serve(dir: string): Promise<string> {
  const child = spawn(process.execPath, [BIN, 'serve', dir, '--port', '0'], { cwd: ROOT });
  servers.push(child);
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
      const m = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`serve exited: ${err}`)));
  });
}

/** The class controls as the page shows them: the picker's options (null: no picker) and the guidance weight. */
const CLASS_CONTROLS = `(() => {
  const picker = document.getElementById('class');
  const shown = (el) => !!el && el.getClientRects().length > 0;
  return { picker: picker ? Array.from(picker.options).map((o) => o.textContent) : null, shown: shown(picker), cfg: document.getElementById('cfg')?.value ?? null, cfgShown: shown(document.getElementById('cfg')) };
})()`;

interface ClassControls {
  picker: string[] | null;
  shown: boolean;
  cfg: string | null;
  cfgShown: boolean;
}

/**
 * Opens the page with `query`, waits for the grid, and returns it as RGB bytes with what the page said.
 * With `controls` (element id → value, e.g. class and cfg), it sets them in the page as a user would and
 * presses Sample, instead of running at once; `classControls` is what the page showed before.
 */
async function pageGrid(url: string, query: string, controls?: Record<string, string>) {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${url}?${query}${controls ? '' : '&autorun=1'}`);
  // (page code as strings: it runs in the browser, not under this file's Node types)
  let classControls: ClassControls | undefined;
  if (controls) {
    await page.waitForFunction(`['ready', 'error'].includes(document.body.dataset.state)`, { timeout: 180_000 });
    classControls = (await page.evaluate(CLASS_CONTROLS)) as ClassControls;
    for (const [id, value] of Object.entries(controls)) {
      const set = (await page.evaluate(`(() => {
        const el = document.getElementById(${JSON.stringify(id)});
        if (!el) return null;
        el.value = ${JSON.stringify(value)};
        el.dispatchEvent(new Event('input', { bubbles: true }));
        el.dispatchEvent(new Event('change', { bubbles: true }));
        return el.value;
      })()`)) as string | null;
      assert.equal(set, value, `the page's #${id} takes ${value}`);
    }
    await page.click('#run');
  }
  await page.waitForFunction(`['done', 'error'].includes(document.body.dataset.state)`, { timeout: 180_000 });
  classControls ??= (await page.evaluate(CLASS_CONTROLS)) as ClassControls;
  const r = (await page.evaluate(`(() => {
    const canvas = document.getElementById('grid');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    return { state: document.body.dataset.state, backend: document.body.dataset.backend, status: document.getElementById('status').textContent, info: document.getElementById('info').textContent, width: canvas.width, height: canvas.height, rgba: Array.from(data) };
  })()`)) as { state: string; backend: string; status: string; info: string; width: number; height: number; rgba: number[] };
  await page.close();
  assert.equal(r.state, 'done', `${r.status} ${errors.join('; ')}`);
  const rgb = rgbOf(r);
  return { ...r, rgb, classControls };
}

/** The grid `diffuse sample` writes, as RGB bytes. */
async function nodeGrid(checkpoint: string, args: string[]) {
  const file = path.join(tempDir(), 'grid.png');
  const r = runCli(['sample', '--checkpoint', checkpoint, '--backend', 'cpu', '--out', file, ...args]);
  assert.equal(r.status, 0, r.stderr);
  return pngGrid(file);
}

/** A grid file as RGB bytes (grey repeated into each colour). */
async function pngGrid(file: string) {
  const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const rgb = info.channels === 3 ? data : Buffer.from(Array.from({ length: info.width * info.height * 3 }, (_, i) => data[Math.floor(i / 3)]));
  return { width: info.width, height: info.height, rgb };
}

/** A canvas's RGBA values (as the page code returns them) as RGB bytes. */
function rgbOf(r: { width: number; height: number; rgba: number[] }): Buffer {
  const rgb = Buffer.alloc(r.width * r.height * 3);
  for (let i = 0; i < r.width * r.height; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = r.rgba[i * 4 + c];
  return rgb;
}

function assertSameGrid(a: { width: number; height: number; rgb: Buffer }, b: { width: number; height: number; rgb: Buffer }, what: string): void {
  assert.deepEqual([a.width, a.height], [b.width, b.height], `${what}: size`);
  let close = 0;
  for (let i = 0; i < a.rgb.length; i++) if (Math.abs(a.rgb[i] - b.rgb[i]) <= 1) close++;
  assert.ok(close / a.rgb.length >= 0.99, `${what}: ${((100 * close) / a.rgb.length).toFixed(2)}% of values within one grey level`);
}

test('a fully connected model samples in Chromium as in Node (cpu, same seed); WebGL and wasm draw the grid', { skip, timeout: 400_000 }, async () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'ckpt');
  assert.equal(runCli(['train', '--epochs', '2', '--limit', '256', '--width', '64', '--batch-size', '64', '--backend', 'cpu', '--out', ckpt]).status, 0);
  const site = path.join(dir, 'site');
  const ex = runCli(['export', '--checkpoint', ckpt, '--web', site]);
  assert.equal(ex.status, 0, ex.stderr);
  for (const f of ['index.html', 'page.js', 'diffuse.mjs', 'model.json', 'weights.bin', 'tfjs-backend-wasm.wasm', 'sw.js']) assert.ok(fs.existsSync(path.join(site, f)), f);
  const url = await serve(site);
  const inBrowser = await pageGrid(url, 'backend=cpu&seed=3&n=6&steps=8');
  assert.equal(inBrowser.backend, 'cpu');
  assert.match(inBrowser.info, /fully connected U-net, width 64; .*trained 2 epochs on MNIST/);
  assert.doesNotMatch(inBrowser.info, /classes/);
  assert.deepEqual(inBrowser.classControls, { picker: null, shown: false, cfg: null, cfgShown: false }, 'an unconditional model: no class picker, no guidance weight');
  assertSameGrid(inBrowser, await nodeGrid(ckpt, ['--seed', '3', '--n', '6', '--steps', '8']), 'dpmpp-2m');
  const ddim = await pageGrid(url, 'backend=cpu&seed=4&n=4&sampler=ddim&steps=5');
  assertSameGrid(ddim, await nodeGrid(ckpt, ['--seed', '4', '--n', '4', '--sampler', 'ddim', '--steps', '5']), 'ddim');
  for (const backend of ['webgl', 'wasm']) {
    const g = await pageGrid(url, `backend=${backend}&seed=3&n=6&steps=8`);
    assert.equal(g.backend, backend);
    assert.deepEqual([g.width, g.height], [inBrowser.width, inBrowser.height]);
    assert.ok(new Set(g.rgb).size > 10, `${backend}: the grid is flat`);
    assertSameGrid(g, inBrowser, `${backend} against cpu`); // float differences stay below a grey level here
  }
  const auto = await pageGrid(url, 'seed=3&n=2&steps=4');
  assert.ok(['webgl', 'wasm', 'cpu'].includes(auto.backend ?? ''), `auto chose ${auto.backend}`);
  assert.match(auto.status, new RegExp(`^${auto.backend}: 2 images`));
});

test('an RGB U-net exports and samples in Chromium as in Node, also guided by its first epoch', { skip, timeout: 400_000 }, async () => {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  for (let i = 0; i < 8; i++) {
    await sharp(Buffer.alloc(16 * 16 * 3, 30 * i), { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(path.join(images, `i${i}.png`));
  }
  const ckpt = path.join(dir, 'ckpt');
  const train = runCli(['train', '--epochs', '2', '--keep-every', '1', '--model', 'unet', '--data', images, '--image-size', '16', '--base-channels', '8', '--channel-mults', '1,2', '--batch-size', '4', '--backend', 'cpu', '--out', ckpt]);
  assert.equal(train.status, 0, train.stderr);
  const site = path.join(dir, 'site');
  assert.equal(runCli(['export', '--checkpoint', ckpt, '--web', site]).status, 0);
  const url = await serve(site);
  const g = await pageGrid(url, 'backend=cpu&seed=1&n=4&steps=3');
  assert.match(g.info, /convolutional U-net, 8 x \[1,2\] channels/);
  assertSameGrid(g, await nodeGrid(ckpt, ['--seed', '1', '--n', '4', '--steps', '3']), 'U-net');
  // autoguidance: the page mixes the two models' predictions as `diffuse sample --guide` does
  const early = path.join(ckpt, 'epoch-0001');
  const guidedSite = path.join(dir, 'guided');
  const ex = runCli(['export', '--checkpoint', ckpt, '--guide', early, '--guidance', '3', '--web', guidedSite]);
  assert.equal(ex.status, 0, ex.stderr);
  assert.ok(fs.existsSync(path.join(guidedSite, 'guide-weights.bin')));
  const guidedUrl = await serve(guidedSite);
  const guided = await pageGrid(guidedUrl, 'backend=cpu&seed=1&n=4&steps=3');
  assert.match(guided.info, /guided by its epoch 1 \(w 3\)/);
  const nodeGuided = await nodeGrid(ckpt, ['--seed', '1', '--n', '4', '--steps', '3', '--guide', early, '--guidance', '3']);
  assertSameGrid(guided, nodeGuided, 'guided U-net');
  assert.notDeepEqual(nodeGuided.rgb, (await nodeGrid(ckpt, ['--seed', '1', '--n', '4', '--steps', '3'])).rgb, 'guidance changed nothing');
  // ?guidance=1 is the model alone
  assertSameGrid(await pageGrid(guidedUrl, 'backend=cpu&seed=1&n=4&steps=3&guidance=1'), g, 'guidance 1');
});

test('a class-conditional model samples in Chromium by the class and guidance weight picked, as sample --class --cfg does', { skip, timeout: 400_000 }, async () => {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  // three classes (subfolders) of plain colours with a faint stripe, easy to tell apart after a few seconds
  const colours: Record<string, number[]> = { dark: [40, 20, 10], light: [220, 200, 240], red: [200, 30, 40] };
  for (const [name, rgb] of Object.entries(colours)) {
    fs.mkdirSync(path.join(images, name), { recursive: true });
    for (let i = 0; i < 4; i++) {
      const pixels = Buffer.alloc(16 * 16 * 3);
      for (let p = 0; p < 16 * 16; p++) for (let c = 0; c < 3; c++) pixels[p * 3 + c] = rgb[c] + ((p + i) % 5) * 3;
      await sharp(pixels, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(path.join(images, name, `i${i}.png`));
    }
  }
  const ckpt = path.join(dir, 'ckpt');
  // raw v-predicting weights: after 60 steps the classes (and w) already change most of each image
  const train = runCli(['train', '--model', 'fc', '--width', '64', '--data', images, '--image-size', '16', '--conditional', '--epochs', '20', '--batch-size', '4', '--ema', '0', '--warmup', '0', '--prediction', 'v', '--backend', 'cpu', '--out', ckpt]);
  assert.equal(train.status, 0, train.stderr);
  const site = path.join(dir, 'site');
  const ex = runCli(['export', '--checkpoint', ckpt, '--web', site]);
  assert.equal(ex.status, 0, ex.stderr);
  const url = await serve(site);
  const common = ['--seed', '1', '--n', '4', '--steps', '6'];
  const query = 'backend=cpu&seed=1&n=4&steps=6';

  // a class (index 1: light) and a weight, picked in the page
  const light = await pageGrid(url, query, { class: '1', cfg: '3' });
  assert.deepEqual(light.classControls, { picker: ['any (unconditional)', 'dark', 'light', 'red', 'one row per class'], shown: true, cfg: String(DEFAULTS.sampling.cfg), cfgShown: true });
  assert.match(light.info, /conditional on 3 classes \(dark, light, red\)/);
  assert.match(light.status, /^cpu: 4 images, class light \(guidance 3\), ddim 6 steps, seed 1/);
  const nodeLight = await nodeGrid(ckpt, [...common, '--class', '1', '--cfg', '3']);
  assertSameGrid(light, nodeLight, 'class light, w 3');
  // the test can tell: another weight, another class, and no class all draw other grids
  for (const other of [['--class', 'light', '--cfg', '1'], ['--class', 'red', '--cfg', '3'], []]) {
    const g = await nodeGrid(ckpt, [...common, ...other]);
    let far = 0;
    for (let i = 0; i < g.rgb.length; i++) if (Math.abs(g.rgb[i] - nodeLight.rgb[i]) > 1) far++;
    assert.ok(far / g.rgb.length > 0.1, `${other.join(' ') || 'unconditional'}: only ${((100 * far) / g.rgb.length).toFixed(2)}% of values differ from --class light --cfg 3`);
  }

  // "any (unconditional)": no labels, the model's own "no class", as sample without --class
  assertSameGrid(await pageGrid(url, query, { class: '', cfg: '3' }), await nodeGrid(ckpt, common), 'unconditional');

  // one row per class: the images field counts each class's, the default weight
  const rows = await pageGrid(url, 'backend=cpu&seed=2&n=2&steps=6', { class: '*' });
  assert.match(rows.status, new RegExp(`^cpu: 6 images, 2 of each class \\(guidance ${DEFAULTS.sampling.cfg}\\)`));
  assertSameGrid(rows, await nodeGrid(ckpt, ['--seed', '2', '--steps', '6', '--class', 'all', '--per-class', '2']), 'one row per class');

  // ?class= and ?cfg= as --class and --cfg take them
  const byUrl = await pageGrid(url, `${query}&class=red&cfg=1.5`);
  assertSameGrid(byUrl, await nodeGrid(ckpt, [...common, '--class', 'red', '--cfg', '1.5']), '?class=red&cfg=1.5');
});

test("a page of one's own imports the exported module: the README's example draws the grid, on cpu the one diffuse sample --backend cpu draws, and bad calls reject with typed errors", { skip, timeout: 400_000 }, async () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'ckpt');
  assert.equal(runCli(['train', '--epochs', '1', '--limit', '256', '--width', '64', '--batch-size', '64', '--backend', 'cpu', '--out', ckpt]).status, 0);
  const site = path.join(dir, 'site');
  assert.equal(runCli(['export', '--checkpoint', ckpt, '--web', site]).status, 0);
  const example = readmeExample('html');
  assert.match(example, /model\.sample\(\{ n: 16, seed: 7 \}\)/, 'the command below mirrors these options');
  fs.writeFileSync(path.join(site, 'readme.html'), example);
  // the same page on cpu, with a marker when done, and the errors a caller can catch
  const mine = example.replace("loadModel('./')", "loadModel('./', { backend: 'cpu' })").replace(
    '</script>',
    `  const { OptionError, CheckpointError } = await import('./diffuse.mjs');
  const caught = async (f) => { try { await f(); } catch (e) { return { name: e.name, typed: e instanceof OptionError || e instanceof CheckpointError, option: e.option, message: e.message }; } };
  window.result = { backend: model.backend, n0: await caught(() => model.sample({ n: 0 })), missing: await caught(() => loadModel('./missing/')) };
  document.body.dataset.state = 'done';
</script>`,
  );
  fs.writeFileSync(path.join(site, 'mine.html'), mine);
  const url = await serve(site);
  const node = await nodeGrid(ckpt, ['--seed', '7', '--n', '16']);
  const grab = async (file: string, ready: string) => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url + file);
    await page.waitForFunction(ready, { timeout: 180_000 }).catch(() => assert.fail(`${file}: ${errors.join('; ')}`));
    const r = (await page.evaluate(`(() => {
      const canvas = document.getElementById('grid');
      return { width: canvas.width, height: canvas.height, rgba: Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data), result: window.result ?? null };
    })()`)) as { width: number; height: number; rgba: number[]; result: Record<string, { name: string; typed: boolean; option?: string; message: string } | string> | null };
    await page.close();
    assert.deepEqual(errors, []);
    const rgb = rgbOf(r);
    return { ...r, rgb };
  };
  const readme = await grab('readme.html', `document.getElementById('grid').width === ${node.width}`);
  assertSameGrid(readme, node, "the README's page (its default backend)");
  const own = await grab('mine.html', `document.body.dataset.state === 'done'`);
  assert.equal(own.result!.backend, 'cpu');
  assertSameGrid(own, node, 'on cpu');
  assert.deepEqual(own.result!.n0, { name: 'OptionError', typed: true, option: 'n', message: 'n 0: expected an integer of at least 1' });
  assert.deepEqual(own.result!.missing, { name: 'CheckpointError', typed: true, message: `cannot fetch ${url}missing/model.json: HTTP 404` });
});

test('the page edits an image as the commands do: inpaint with an opened or a painted mask, image to image at the strength chosen', { skip, timeout: 400_000 }, async () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'ckpt');
  assert.equal(runCli(['train', '--epochs', '1', '--limit', '256', '--width', '64', '--batch-size', '64', '--backend', 'cpu', '--out', ckpt]).status, 0);
  const site = path.join(dir, 'site');
  assert.equal(runCli(['export', '--checkpoint', ckpt, '--web', site]).status, 0);
  const image = path.join(dir, 'image.png'); // one sample: a 28x28 grid of one
  assert.equal(runCli(['sample', '--checkpoint', ckpt, '--n', '1', '--seed', '5', '--backend', 'cpu', '--out', image]).status, 0);
  const mask = path.join(dir, 'mask.png');
  await sharp(Buffer.from(Array.from({ length: 28 * 28 }, (_, p) => (p >= 14 * 28 ? 255 : 0))), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(mask);
  const url = await serve(site);
  const editIn = async (setup: (page: import('puppeteer-core').Page) => Promise<void>, button: string) => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${url}?backend=cpu&seed=3&n=2&strength=0.5`);
    await page.waitForFunction(`document.body.dataset.state === 'ready'`, { timeout: 180_000 });
    await (await page.$('#edit-image'))!.uploadFile(image);
    await page.waitForFunction(`document.getElementById('source').width === 28`, { timeout: 30_000 });
    await setup(page);
    if (button === '#inpaint') {
      await page.waitForFunction(`Number(document.getElementById('source').dataset.masked) > 0 || document.body.dataset.state === 'error'`, { timeout: 30_000 }).catch(async () => {
        assert.fail(`${String(setup).slice(0, 60)}: no mask: masked=${await page.evaluate(`document.getElementById('source').dataset.masked`)}, status ${await page.evaluate(`document.getElementById('status').textContent`)}, errors ${errors.join('; ')}`);
      });
      assert.notEqual(await page.evaluate(`document.body.dataset.state`), 'error', String(await page.evaluate(`document.getElementById('status').textContent`)));
    }
    await page.click(button);
    await page.waitForFunction(`['done', 'error'].includes(document.body.dataset.state)`, { timeout: 180_000 });
    const r = (await page.evaluate(`(() => {
      const canvas = document.getElementById('grid');
      return { state: document.body.dataset.state, status: document.getElementById('status').textContent, width: canvas.width, height: canvas.height, rgba: Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data) };
    })()`)) as { state: string; status: string; width: number; height: number; rgba: number[] };
    await page.close();
    assert.equal(r.state, 'done', `${r.status} ${errors.join('; ')}`);
    const rgb = rgbOf(r);
    return { ...r, rgb };
  };
  const cliGrid = async (args: string[]) => {
    const out = path.join(tempDir(), 'out.png');
    const r = runCli([...args, '--checkpoint', ckpt, '--image', image, '--n', '2', '--seed', '3', '--backend', 'cpu', '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    return pngGrid(out);
  };

  // a mask opened from a file: the grid is `diffuse inpaint`'s
  const opened = await editIn(async (page) => (await page.$('#edit-mask'))!.uploadFile(mask), '#inpaint');
  assert.match(opened.status, /^cpu: original \| masked \| 2 inpaintings, seed 3/);
  assertSameGrid(opened, await cliGrid(['inpaint', '--mask', mask]), 'inpaint');
  // image to image at the strength on the slider (?strength=0.5): `diffuse edit --strength 0.5`
  const edited = await editIn(async () => {}, '#edit');
  assert.match(edited.status, /^cpu: original \| 2 images at strength 0.5, seed 3/);
  assertSameGrid(edited, await cliGrid(['edit', '--strength', '0.5']), 'edit');
  // a painted mask: a stroke across the source's middle; only pixels near it change
  const painted = await editIn(async (page) => {
    const source = (await page.$('#source'))!;
    await source.scrollIntoView(); // the mouse works in the viewport
    const box = (await source.boundingBox())!;
    await page.mouse.move(box.x + 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width - 2, box.y + box.height / 2, { steps: 10 });
    await page.mouse.up();
  }, '#inpaint');
  const tile = (k: number) => Array.from({ length: 28 * 28 }, (_, p) => painted.rgb[3 * (Math.floor(p / 28) * painted.width + k * 30 + (p % 28))]);
  const [original, masked, first] = [tile(0), tile(1), tile(2)];
  const greyRows = new Set(masked.map((v, p) => (v === 128 && original[p] !== 128 ? Math.floor(p / 28) : -1)).filter((r) => r >= 0));
  assert.ok(greyRows.size >= 2 && [...greyRows].every((r) => r >= 10 && r <= 17), `painted rows ${[...greyRows]}`);
  assert.ok(first.every((v, p) => Math.abs(Math.floor(p / 28) - 14) <= 4 || v === original[p]), 'a pixel far from the stroke changed');
});

test('export and serve refuse what they cannot use', () => {
  const dir = tempDir();
  assertCleanFailure(runCli(['export', '--checkpoint', path.join(dir, 'none'), '--web', path.join(dir, 'site')]), /no checkpoint in/);
  assertCleanFailure(runCli(['export', '--checkpoint', dir]), /export needs --web DIR or --safetensors FILE/);
  assertCleanFailure(runCli(['serve', dir]), /has no index.html/);
  assertCleanFailure(runCli(['export', '--checkpoint', dir, '--web', path.join(dir, 'site'), '--guidance', '2']), /weighs a guide: give --guide/);
  assertCleanFailure(runCli(['export', '--checkpoint', dir, '--safetensors', path.join(dir, 'w.safetensors'), '--guide', dir]), /guides the page of --web/);
  assert.ok(!fs.existsSync(path.join(dir, 'site')) && !fs.existsSync(path.join(dir, 'w.safetensors')), 'nothing written');
});
