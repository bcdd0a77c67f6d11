/**
 * A run's history in its folder, `history.csv`: a row per --log-every updates (the mean loss over
 * them) and a row per completed epoch (its mean loss, speed and, with --eval-every, its scores). Rows
 * are appended as they happen; on resume, rows past the checkpoint's step (work a crash lost and the
 * run repeats) are dropped, so the file always describes the weights on disk and what led to them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeAtomically } from '../files';

export const HISTORY_FILE = 'history.csv';

export interface EvalFigures {
  fd: number;
  kid: number;
  confidence: number;
  coverage: number;
}

export interface HistoryRow {
  /** ISO time the row was written. */
  time: string;
  kind: 'steps' | 'epoch';
  /** Epoch the row belongs to (1-based; an epoch row: the epoch it completes). */
  epoch: number;
  /** Optimizer updates taken when the row was written. */
  step: number;
  /** Mean training loss over the row's updates. */
  loss: number;
  /** Learning rate at the row's last update. */
  lr: number;
  samplesPerSecond: number;
  /** Seconds the row's updates took (an epoch row: the whole epoch). */
  seconds: number;
  /** Scores of the averaged (or raw) weights, epoch rows with --eval-every only. */
  eval?: EvalFigures;
}

const COLUMNS = ['time', 'kind', 'epoch', 'step', 'loss', 'lr', 'samples_per_s', 'seconds', 'fd', 'kid', 'confidence', 'coverage'] as const;

function formatRow(r: HistoryRow): string {
  const e = r.eval;
  const cells = [r.time, r.kind, r.epoch, r.step, r.loss.toPrecision(6), r.lr.toPrecision(4), r.samplesPerSecond.toFixed(1), r.seconds.toFixed(2)];
  const scores = e ? [e.fd.toFixed(3), e.kid.toPrecision(4), e.confidence.toFixed(4), e.coverage.toFixed(4)] : ['', '', '', ''];
  return [...cells, ...scores].join(',');
}

function parseRow(line: string): HistoryRow | null {
  const c = line.split(',');
  if (c.length !== COLUMNS.length || (c[1] !== 'steps' && c[1] !== 'epoch')) return null;
  const num = (s: string) => (s === '' ? NaN : Number(s));
  const [fd, kid, confidence, coverage] = c.slice(8).map(num);
  const row: HistoryRow = { time: c[0], kind: c[1], epoch: num(c[2]), step: num(c[3]), loss: num(c[4]), lr: num(c[5]), samplesPerSecond: num(c[6]), seconds: num(c[7]) };
  if (![row.epoch, row.step, row.loss].every(Number.isFinite)) return null;
  if (Number.isFinite(fd)) row.eval = { fd, kid, confidence, coverage };
  return row;
}

export class TrainingHistory {
  readonly file: string;
  readonly rows: HistoryRow[];

  private constructor(dir: string, rows: HistoryRow[]) {
    this.file = path.join(dir, HISTORY_FILE);
    this.rows = rows;
  }

  /** A new run's history (an older file in the folder is replaced). */
  static start(dir: string): TrainingHistory {
    const h = new TrainingHistory(dir, []);
    writeAtomically(h.file, COLUMNS.join(',') + '\n');
    return h;
  }

  /** The history of a run resumed at `step`: the rows up to it (a run from before histories: none). */
  static resume(dir: string, step: number): TrainingHistory {
    const rows = readHistory(dir).filter((r) => r.step <= step);
    const h = new TrainingHistory(dir, rows);
    writeAtomically(h.file, [COLUMNS.join(','), ...rows.map(formatRow)].join('\n') + '\n');
    return h;
  }

  append(row: HistoryRow): void {
    this.rows.push(row);
    fs.appendFileSync(this.file, formatRow(row) + '\n');
  }
}

/** The rows of `dir`'s history; none where there is no file. Lines that do not parse are skipped. */
export function readHistory(dir: string): HistoryRow[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, HISTORY_FILE), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .slice(1)
    .map(parseRow)
    .filter((r): r is HistoryRow => r !== null);
}
