import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HISTORY_FILE, HistoryRow, TrainingHistory, readHistory } from '../../../src/report/history';
import { lossCurve, renderReport, sampleGrids } from '../../../src/report/html';
import { resolveNewRun } from '../../../src/config/resolve';
import { tempDir } from '../../helpers';

const row = (kind: HistoryRow['kind'], epoch: number, step: number, loss: number, evalFigures?: HistoryRow['eval']): HistoryRow => ({
  time: '2026-01-01T00:00:00.000Z',
  kind,
  epoch,
  step,
  loss,
  lr: 1e-3,
  samplesPerSecond: 1234.5,
  seconds: 1.5,
  ...(evalFigures ? { eval: evalFigures } : {}),
});

test('the history reads back what was appended, scores included', () => {
  const dir = tempDir();
  const h = TrainingHistory.start(dir);
  h.append(row('steps', 1, 10, 0.5));
  h.append(row('epoch', 1, 20, 0.25, { fd: 12.5, kid: 0.0123, confidence: 0.9, coverage: 0.99 }));
  const back = readHistory(dir);
  assert.equal(back.length, 2);
  assert.deepEqual(back[0], row('steps', 1, 10, 0.5));
  assert.deepEqual(back[1], row('epoch', 1, 20, 0.25, { fd: 12.5, kid: 0.0123, confidence: 0.9, coverage: 0.99 }));
  const lines = fs.readFileSync(path.join(dir, HISTORY_FILE), 'utf8').split('\n');
  assert.equal(lines[0], 'time,kind,epoch,step,loss,lr,samples_per_s,seconds,fd,kid,confidence,coverage');
  assert.equal(lines[1], '2026-01-01T00:00:00.000Z,steps,1,10,0.500000,0.001000,1234.5,1.50,,,,');
  assert.equal(lines[2], '2026-01-01T00:00:00.000Z,epoch,1,20,0.250000,0.001000,1234.5,1.50,12.500,0.01230,0.9000,0.9900');
});

test('a resumed history drops the rows past the checkpoint (work a crash lost); a new run starts empty', () => {
  const dir = tempDir();
  const h = TrainingHistory.start(dir);
  for (let s = 1; s <= 5; s++) h.append(row('steps', 1, s * 10, 1 / s));
  h.append(row('epoch', 1, 50, 0.3));
  for (let s = 6; s <= 8; s++) h.append(row('steps', 2, s * 10, 1 / s)); // then killed; the checkpoint holds step 50
  const resumed = TrainingHistory.resume(dir, 50);
  assert.deepEqual(resumed.rows.map((r) => r.step), [10, 20, 30, 40, 50, 50]);
  assert.deepEqual(readHistory(dir).map((r) => r.step), [10, 20, 30, 40, 50, 50]);
  // A folder without a history (a run from before histories) resumes with none.
  assert.deepEqual(TrainingHistory.resume(tempDir(), 50).rows, []);
  assert.deepEqual(TrainingHistory.start(dir).rows, []);
  assert.deepEqual(readHistory(dir), []);
});

test('the loss curve draws one point per logged window and a dot per epoch, on a log scale', () => {
  const rows = [row('steps', 1, 10, 1), row('steps', 1, 20, 0.1), row('steps', 1, 30, 0.01), row('epoch', 1, 30, 0.2)];
  const svg = lossCurve(rows, 400, 200);
  const d = /<path d="([^"]+)" class="steps"/.exec(svg)![1];
  const points = d.split(/[ML]/).filter(Boolean).map((p) => p.split(',').map(Number));
  assert.equal(points.length, 3);
  // Equal ratios of loss are equal heights: 1 → 0.1 → 0.01 falls by the same amount twice.
  assert.ok(Math.abs(points[1][1] - points[0][1] - (points[2][1] - points[1][1])) < 0.2);
  assert.ok(points[0][0] < points[1][0] && points[1][0] < points[2][0]);
  assert.equal((svg.match(/<circle/g) ?? []).length, 1);
  assert.match(lossCurve([], 400, 200), /no updates yet/);
});

test('the report holds the epochs, scores, grids (relative links) and the configuration, escaped', () => {
  const dir = tempDir();
  for (const e of [2, 1, 10]) fs.writeFileSync(path.join(dir, `samples-epoch-${String(e).padStart(4, '0')}.png`), '');
  fs.writeFileSync(path.join(dir, 'other.png'), '');
  assert.deepEqual(sampleGrids(dir).map((g) => g.epoch), [1, 2, 10]);
  const record = resolveNewRun('default', { width: 64 });
  record.data.path = '<dir & "x">';
  const html = renderReport({ record, rows: [row('steps', 1, 10, 0.5), row('epoch', 1, 20, 0.25, { fd: 12.5, kid: 0.0123, confidence: 0.9, coverage: 0.99 })], grids: sampleGrids(dir), machine: 'test CPU' });
  // One table row per epoch, every cell the row's figure: epoch, updates, loss, rate, samples/s, seconds, FD, KID x 1000, confidence, coverage.
  assert.equal((html.match(/<tbody>[\s\S]*<\/tbody>/)![0].match(/<tr>/g) ?? []).length, 1);
  assert.match(html, /<tr><td>1<\/td><td>20<\/td><td>0\.2500<\/td><td>0\.00100<\/td><td>1235<\/td><td>1\.5<\/td><td>12\.5<\/td><td>12\.30<\/td><td>0\.900<\/td><td>0\.990<\/td><\/tr>/);
  assert.match(html, /<p id="summary">1 epoch, 20 updates, 0\.0 min of training, last epoch 1235 samples\/s, loss 0\.2500\. test CPU\.<\/p>/);
  assert.match(html, /<img src="samples-epoch-0001\.png"/);
  assert.match(html, /<tr><th>data\.path<\/th><td>&lt;dir &amp; &quot;x&quot;&gt;<\/td><\/tr>/);
  assert.match(html, /<tr><th>model\.kind<\/th><td>fc-unet<\/td><\/tr>/);
  assert.doesNotMatch(html, /training\.rng/);
  assert.doesNotMatch(html, /<dir & "x">/);
  assert.match(html, /test CPU/);
  // Without scores, no score columns.
  assert.doesNotMatch(renderReport({ record, rows: [row('epoch', 1, 20, 0.25)], grids: [], machine: '' }), /<th>FD<\/th>/);
});
