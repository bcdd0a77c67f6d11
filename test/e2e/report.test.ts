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
  const stepRows = rows.filter((x) => x.kind === 'steps');
  // The rate at each row's step: 1e-3 peak, warm-up of min(1000, 16 / 10) = 1 update, then a cosine to 0 at update 16.
  const rate = (step: number) => (step <= 1 ? 1e-3 * step : 0.5e-3 * (1 + Math.cos((Math.PI * (step - 1)) / 15)));
  for (const x of rows) assert.ok(Math.abs(x.lr - rate(x.step)) <= 1e-3 * rate(x.step) + 1e-12, `lr at step ${x.step}: ${x.lr}, expected ${rate(x.step)}`);
  assert.equal(epochs[1].lr, 0, 'the cosine reaches 0 at the last update');
  for (const e of epochs) {
    // The epoch's loss is the mean of its updates' (four rows of two updates each), as the log says.
    const mine = stepRows.filter((x) => x.epoch === e.epoch).map((x) => x.loss);
    assert.equal(mine.length, 4);
    assert.ok(Math.abs(e.loss - mine.reduce((a, b) => a + b, 0) / 4) < 1e-5 * e.loss, `epoch ${e.epoch}: loss ${e.loss}, its rows ${mine}`);
    assert.match(r.stderr, new RegExp(`^epoch ${e.epoch}/2: loss ${e.loss.toFixed(4)}, `, 'm'));
    // The scores written are the scores logged.
    assert.ok(e.eval, `epoch ${e.epoch} has scores`);
    assert.match(r.stderr, new RegExp(`^epoch ${e.epoch}: FD ${e.eval.fd.toFixed(1)}, confidence ${e.eval.confidence.toFixed(3)}, coverage ${e.eval.coverage.toFixed(3)} \\(200 samples\\)$`, 'm'));
    assert.ok(e.eval.confidence > 0.1 && e.eval.confidence <= 1 && e.eval.coverage >= 0 && e.eval.coverage <= 1 && Number.isFinite(e.eval.kid), JSON.stringify(e));
    assert.ok(e.samplesPerSecond > 0 && e.seconds > 0);
    // (history.csv keeps seconds to 0.01 s)
    assert.ok(Math.abs(e.samplesPerSecond * e.seconds - 512) <= e.samplesPerSecond * 0.0051 + 1, `epoch ${e.epoch}: ${e.samplesPerSecond} samples/s for ${e.seconds} s is its 512 images`);
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
      path: line ? line.getAttribute('d') : '',
      summary: document.getElementById('summary').textContent,
      dots: svg.querySelectorAll('circle').length,
      images: Array.from(document.querySelectorAll('#grids img')).map((i) => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]),
      rows: Array.from(document.querySelectorAll('#epochs tbody tr')).map((tr) => Array.from(tr.children).map((td) => td.textContent)),
    };
  })()`)) as { svg: number[]; lineLength: number; points: number; path: string; summary: string; dots: number; images: [string, boolean, number, number][]; rows: string[][] };
  await page.close();
  assert.deepEqual(errors, []);
  assert.ok(seen.svg[0] > 300 && seen.svg[1] > 100, `the curve is drawn at ${seen.svg}`);
  assert.ok(seen.lineLength > 100, `the loss line has length ${seen.lineLength}`);
  assert.equal(seen.points, 8);
  assert.equal(seen.dots, 2);
  assert.deepEqual(seen.images.map((i) => i[0]), ['samples-epoch-0001.png', 'samples-epoch-0002.png']);
  for (const [src, complete, w, h] of seen.images) assert.ok(complete && w > 200 && h > 200, `${src} loaded at ${w}x${h}`);
  // The epoch table shows the history's figures, each to its cell's digits.
  assert.equal(seen.rows.length, 2);
  const near = (cell: string, value: number, digits: number, what: string) => assert.ok(Math.abs(Number(cell) - value) <= 0.51 * 10 ** -digits, `${what}: cell ${cell}, history ${value}`);
  epochs.forEach((e, i) => {
    const [epoch, step, loss, lr, speed, seconds, fd, kid, confidence, coverage] = seen.rows[i];
    assert.deepEqual([Number(epoch), Number(step)], [e.epoch, e.step]);
    near(loss, e.loss, 4, 'loss');
    assert.ok(Math.abs(Number(lr) - e.lr) <= 5e-3 * e.lr, `lr: cell ${lr}, history ${e.lr}`);
    near(speed, e.samplesPerSecond, 0, 'samples/s');
    near(seconds, e.seconds, 1, 'seconds');
    near(fd, e.eval!.fd, 1, 'FD');
    assert.ok(Math.abs(Number(kid) - e.eval!.kid * 1000) <= 5e-4 * Math.abs(e.eval!.kid * 1000) + 0.0051, `KID x 1000: cell ${kid}, history ${e.eval!.kid}`); // (4 digits in history.csv)
    near(confidence, e.eval!.confidence, 3, 'confidence');
    near(coverage, e.eval!.coverage, 3, 'coverage');
  });
  // The loss curve: one point per row, left to right by step, and lower where the loss is lower.
  const ys = seen.path.split(/[ML]/).filter(Boolean).map((p) => p.split(',').map(Number));
  assert.deepEqual(ys.map(([x]) => x), [...ys.map(([x]) => x)].sort((a, b) => a - b));
  for (let i = 0; i < stepRows.length; i++) {
    for (let j = 0; j < stepRows.length; j++) {
      if (stepRows[i].loss < stepRows[j].loss) assert.ok(ys[i][1] > ys[j][1], `row ${i} (loss ${stepRows[i].loss}) is drawn below row ${j} (loss ${stepRows[j].loss})`);
    }
  }
  assert.match(seen.summary, /^2 epochs, 16 updates, /);

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
