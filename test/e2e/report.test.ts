/**
 * The training report: `diffuse train` keeps history.csv (a row per --log-every updates and per epoch,
 * with --eval-every scores) and report.html, which renders in a real browser (Debian's chromium) with
 * its loss curve, epoch table and sample grids; a resumed run continues both.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'puppeteer-core';
import { readHistory } from '../../src/report/history';
import { assertCleanFailure, runCli, tempDir } from '../helpers';
import { launchBrowser, skipWithoutChromium } from '../browser';

const skip = skipWithoutChromium;
let browser: Browser;

before(async () => {
  if (!skip) browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

const TINY = ['--width', '64', '--limit', '512', '--batch-size', '64'];

test('train writes history.csv and a report that renders its loss curve, scores and grids in Chromium; resume continues them', { skip }, async () => {
  const dir = path.join(tempDir(), 'run');
  const r = runCli(['train', ...TINY, '--epochs', '2', '--sample-every', '1', '--log-every', '2', '--eval-every', '1', '--out', dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /epoch 2: FD [\d.]+, confidence 0\.\d+, coverage [\d.]+ \(200 samples\)/);
  let rows = readHistory(dir);
  const epochs = rows.filter((x) => x.kind === 'epoch');
  assert.deepEqual(epochs.map((x) => [x.epoch, x.step]), [[1, 8], [2, 16]]);
  assert.deepEqual(rows.filter((x) => x.kind === 'steps').map((x) => x.step), [2, 4, 6, 8, 10, 12, 14, 16]);
  for (const e of epochs) {
    assert.ok(e.eval && e.eval.fd > 0 && e.eval.confidence > 0 && e.eval.confidence <= 1 && e.eval.coverage >= 0, JSON.stringify(e));
    assert.ok(e.samplesPerSecond > 0 && e.seconds > 0 && e.lr >= 0); // the cosine reaches 0 at the last update
  }

  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('requestfailed', (q) => errors.push(`failed: ${q.url()}`));
  await page.goto(pathToFileURL(path.join(dir, 'report.html')).href, { waitUntil: 'load' });
  // (page code as a string: it runs in the browser, not under this file's Node types)
  const seen = (await page.evaluate(`(() => {
    const svg = document.getElementById('loss');
    const box = svg.getBoundingClientRect();
    const line = svg.querySelector('path.steps');
    return {
      svg: [box.width, box.height],
      lineLength: line ? line.getTotalLength() : 0,
      points: line ? line.getAttribute('d').split(/[ML]/).filter(Boolean).length : 0,
      dots: svg.querySelectorAll('circle').length,
      images: Array.from(document.querySelectorAll('#grids img')).map((i) => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]),
      rows: Array.from(document.querySelectorAll('#epochs tbody tr')).map((tr) => Array.from(tr.children).map((td) => td.textContent)),
    };
  })()`)) as { svg: number[]; lineLength: number; points: number; dots: number; images: [string, boolean, number, number][]; rows: string[][] };
  await page.close();
  assert.deepEqual(errors, []);
  assert.ok(seen.svg[0] > 300 && seen.svg[1] > 100, `the curve is drawn at ${seen.svg}`);
  assert.ok(seen.lineLength > 100, `the loss line has length ${seen.lineLength}`);
  assert.equal(seen.points, 8);
  assert.equal(seen.dots, 2);
  assert.deepEqual(seen.images.map((i) => i[0]), ['samples-epoch-0001.png', 'samples-epoch-0002.png']);
  for (const [src, complete, w, h] of seen.images) assert.ok(complete && w > 200 && h > 200, `${src} loaded at ${w}x${h}`);
  assert.equal(seen.rows.length, 2);
  assert.ok(Number(seen.rows[1][6]) > 0, `FD cell: ${seen.rows[1][6]}`);

  // Resume to 3 epochs: the history and the report go on from there.
  const again = runCli(['train', '--epochs', '3', '--resume', '--log-every', '2', '--out', dir]);
  assert.equal(again.status, 0, again.stderr);
  rows = readHistory(dir);
  assert.deepEqual(rows.filter((x) => x.kind === 'epoch').map((x) => x.epoch), [1, 2, 3]);
  assert.equal(rows.filter((x) => x.kind === 'steps').length, 12);
  assert.match(fs.readFileSync(path.join(dir, 'report.html'), 'utf8'), /3 epochs, 24 updates/);
});

test('--eval-every on images the digit classifier cannot judge fails before training', () => {
  const images = tempDir();
  const dir = path.join(tempDir(), 'run');
  assertCleanFailure(runCli(['train', '--data', images, '--model', 'unet', '--eval-every', '1', '--out', dir]), /--eval-every: the digit classifier scores MNIST digits/);
  assert.equal(fs.existsSync(dir), false);
});
