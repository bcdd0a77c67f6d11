/**
 * `report.html` in a run folder: one self-contained page (inline SVG, relative links to the run's
 * sample grids) with the loss curve, the per-epoch table (loss, speed, scores), the grids and the run
 * record, rewritten after every epoch so a browser open on it shows the run so far.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunRecord } from '../config/runRecord';
import { writeAtomically } from '../files';
import { HistoryRow } from './history';

export const REPORT_FILE = 'report.html';

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** The loss over updates, log scale: the --log-every rows as a line, epoch means as dots. */
export function lossCurve(rows: readonly HistoryRow[], width = 720, height = 300): string {
  const points = rows.filter((r) => r.loss > 0 && Number.isFinite(r.loss));
  const pad = { left: 56, right: 12, top: 12, bottom: 36 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  if (points.length === 0) return `<svg id="loss" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><text x="${width / 2}" y="${height / 2}" text-anchor="middle">no updates yet</text></svg>`;
  const maxStep = Math.max(1, ...points.map((r) => r.step));
  const logs = points.map((r) => Math.log10(r.loss));
  let lo = Math.floor(Math.min(...logs) * 10) / 10;
  let hi = Math.ceil(Math.max(...logs) * 10) / 10;
  if (hi - lo < 0.1) [lo, hi] = [lo - 0.05, hi + 0.05];
  const x = (step: number) => pad.left + (step / maxStep) * w;
  const y = (loss: number) => pad.top + ((hi - Math.log10(loss)) / (hi - lo)) * h;
  const steps = points.filter((r) => r.kind === 'steps');
  const epochs = points.filter((r) => r.kind === 'epoch');
  const line = steps.map((r, i) => `${i ? 'L' : 'M'}${x(r.step).toFixed(1)},${y(r.loss).toFixed(1)}`).join('');
  const radius = Math.max(1.5, Math.min(3.5, 150 / Math.max(1, epochs.length))); // many epochs: small dots, the line stays visible
  const dots = epochs.map((r) => `<circle cx="${x(r.step).toFixed(1)}" cy="${y(r.loss).toFixed(1)}" r="${radius.toFixed(1)}"><title>epoch ${r.epoch}: ${r.loss.toFixed(4)}</title></circle>`).join('');
  const ticks: string[] = [];
  for (let e = Math.ceil(lo * 10) / 10; e <= hi + 1e-9; e += (hi - lo) / 4) {
    const v = 10 ** e;
    ticks.push(`<line x1="${pad.left}" x2="${pad.left + w}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="grid"/><text x="${pad.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toPrecision(2)}</text>`);
  }
  return (
    `<svg id="loss" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    ticks.join('') +
    `<line x1="${pad.left}" x2="${pad.left + w}" y1="${pad.top + h}" y2="${pad.top + h}" class="axis"/>` +
    `<text x="${pad.left}" y="${height - 8}">0</text><text x="${pad.left + w}" y="${height - 8}" text-anchor="end">${maxStep} updates</text>` +
    `<text x="${pad.left + w / 2}" y="${height - 8}" text-anchor="middle">training loss (log scale)</text>` +
    `<g class="epochs">${dots}</g>` +
    (line ? `<path d="${line}" class="steps"/>` : '') +
    '</svg>'
  );
}

export interface ReportInput {
  record: RunRecord;
  rows: readonly HistoryRow[];
  /** Grid files in the run folder, by epoch. */
  grids: { epoch: number; file: string }[];
  /** Machine and backend the run trained on. */
  machine: string;
}

/** The run record as rows of dotted names and values (the generator state left out: it is bulk, not configuration). */
function recordRows(value: unknown, prefix = ''): [string, string][] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [[prefix, Array.isArray(value) ? value.join(', ') : String(value)]];
  return Object.entries(value as Record<string, unknown>)
    .filter(([k]) => k !== 'rng')
    .flatMap(([k, v]) => recordRows(v, prefix ? `${prefix}.${k}` : k));
}

export function renderReport({ record, rows, grids, machine }: ReportInput): string {
  const epochs = rows.filter((r) => r.kind === 'epoch');
  const last = epochs[epochs.length - 1];
  const totalSeconds = epochs.reduce((s, r) => s + r.seconds, 0);
  const scored = epochs.some((r) => r.eval);
  const fmt = (v: number | undefined, digits: number) => (v === undefined || !Number.isFinite(v) ? '' : v.toFixed(digits));
  const scoreCells = (r: HistoryRow) => (scored ? `<td>${fmt(r.eval?.fd, 1)}</td><td>${fmt(r.eval ? r.eval.kid * 1000 : undefined, 2)}</td><td>${fmt(r.eval?.confidence, 3)}</td><td>${fmt(r.eval?.coverage, 3)}</td>` : '');
  const table = epochs
    .map((r) => `<tr><td>${r.epoch}</td><td>${r.step}</td><td>${fmt(r.loss, 4)}</td><td>${r.lr.toPrecision(3)}</td><td>${fmt(r.samplesPerSecond, 0)}</td><td>${fmt(r.seconds, 1)}</td>${scoreCells(r)}</tr>`)
    .join('\n');
  const figures = grids
    .map((g) => `<figure><img src="${escape(encodeURI(g.file))}" alt="samples after epoch ${g.epoch}"><figcaption>epoch ${g.epoch}</figcaption></figure>`)
    .join('\n');
  const m = record.model;
  const summary = last
    ? `${last.epoch} epoch${last.epoch === 1 ? '' : 's'}, ${last.step} updates, ${(totalSeconds / 60).toFixed(1)} min of training, last epoch ${Math.round(last.samplesPerSecond)} samples/s, loss ${last.loss.toFixed(4)}`
    : 'no epoch completed yet';
  const config = recordRows(record)
    .map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>diffuse run: ${escape(m.kind)} on ${escape(record.data.dataset)}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 960px; padding: 0 1em; color: #222; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
svg .steps { fill: none; stroke: #3465a4; stroke-width: 1.3; }
svg .epochs circle { fill: #cc0000; }
svg .grid { stroke: #e4e4e4; } svg .axis { stroke: #888; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }
#record th, #record td { text-align: left; font-weight: normal; font-size: 13px; } #record th { color: #666; }
figure { display: inline-block; margin: 0 1em 1em 0; } figure img { width: 256px; image-rendering: pixelated; }
</style></head>
<body>
<h1>diffuse run</h1>
<p id="summary">${escape(summary)}. ${escape(machine)}.</p>
<h2>Loss</h2>
${lossCurve(rows)}
<p>Blue: the mean loss of every <code>--log-every</code> updates; red: each epoch's mean. Per-update figures: <a href="history.csv">history.csv</a>.</p>
<h2>Samples</h2>
<div id="grids">${figures || '<p>none yet (<code>--sample-every K</code> writes a grid every K epochs)</p>'}</div>
<h2>Epochs</h2>
<table id="epochs"><thead><tr><th>epoch</th><th>updates</th><th>loss</th><th>lr</th><th>samples/s</th><th>seconds</th>${scored ? '<th>FD</th><th>KID×10³</th><th>confidence</th><th>coverage</th>' : ''}</tr></thead>
<tbody>
${table}
</tbody></table>
${scored ? '<p>FD, KID, confidence and coverage: <code>--eval-every</code> epochs, 200 samples with the checkpoint\'s sampler against 200 MNIST test digits (the project\'s classifier; <code>diffuse evaluate</code> with a larger <code>--n</code> gives steadier figures).</p>' : ''}
<h2>Configuration</h2>
<table id="record">
${config}
</table>
</body></html>
`;
}

/** The grids `--sample-every` wrote into `dir`, oldest first. */
export function sampleGrids(dir: string): { epoch: number; file: string }[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((file) => ({ file, m: /^samples-epoch-(\d+)\.png$/.exec(file) }))
    .filter((g) => g.m !== null)
    .map((g) => ({ epoch: Number(g.m![1]), file: g.file }))
    .sort((a, b) => a.epoch - b.epoch);
}

export function writeReport(dir: string, input: Omit<ReportInput, 'grids'>): string {
  const file = path.join(dir, REPORT_FILE);
  writeAtomically(file, renderReport({ ...input, grids: sampleGrids(dir) }));
  return file;
}
