/**
 * One writer per run folder. A training run holds `.diffuse.lock` in its --out folder from start to end:
 * a JSON record of the holder (pid, host, process start time, a random token) created with link(2), so
 * the file appears complete or not at all. A second writer fails at once, naming the holder; a lock
 * whose process is gone (killed, machine rebooted) is taken over. Readers (sample, evaluate) take no
 * lock: checkpoints are replaced atomically.
 *
 * Hand-written rather than proper-lockfile: that library marks staleness by a heartbeat on the lock's
 * mtime, which a long synchronous training step would miss, and it cannot name the holding process.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { TEMP_MARK, ensureWritableDirectory, processIsGone, removeIfEmpty } from '../files';

export const LOCK_FILE = '.diffuse.lock';

interface Holder {
  pid: number;
  host: string;
  /** The process's start time in clock ticks since boot (Linux), which tells a reused pid apart. */
  startTicks: string | null;
  since: string;
  command: string;
  token: string;
}

function processStartTicks(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the command name, which is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function describe(h: Holder): string {
  return `pid ${h.pid}${h.host !== os.hostname() ? ` on ${h.host}` : ''} since ${h.since} (${h.command})`;
}

/** Whether the holder's process is certainly gone; a holder on another host is assumed alive. */
function isStale(h: Holder): boolean {
  if (h.host !== os.hostname()) return false;
  if (processIsGone(h.pid)) return true;
  const ticks = processStartTicks(h.pid);
  return h.startTicks !== null && ticks !== null && ticks !== h.startTicks; // the pid now names another process
}

function parseHolder(text: string): Holder | null {
  try {
    const h = JSON.parse(text) as Holder;
    return Number.isInteger(h?.pid) && typeof h.host === 'string' && typeof h.token === 'string' ? h : null;
  } catch {
    return null;
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new UserError(`cannot read lock file ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

export class RunLock {
  private released = false;
  private readonly onExit = () => this.release();

  private constructor(
    readonly dir: string,
    readonly file: string,
    private readonly token: string,
    private readonly created: string[],
  ) {
    process.on('exit', this.onExit);
  }

  /**
   * Takes the lock on `dir` (created if needed, and proven writable), or fails naming the holder.
   * Folders it created are removed again on release if the run wrote nothing into them.
   */
  static acquire(dir: string): RunLock {
    const created = ensureWritableDirectory(dir, 'run folder');
    const file = path.join(dir, LOCK_FILE);
    const holder: Holder = {
      pid: process.pid,
      host: os.hostname(),
      startTicks: processStartTicks(process.pid),
      since: new Date().toISOString(),
      command: ['diffuse', ...process.argv.slice(2)].join(' '),
      token: randomBytes(12).toString('hex'),
    };
    const tmp = `${file}${TEMP_MARK}${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(holder) + '\n');
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          fs.linkSync(tmp, file);
          return new RunLock(dir, file, holder.token, created);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
            removeIfEmpty(created);
            throw new UserError(`cannot lock ${dir}: ${(e as NodeJS.ErrnoException).code}`);
          }
        }
        const text = readText(file);
        if (text === null) continue; // released meanwhile
        const other = parseHolder(text);
        if (!other) {
          throw new UserError(`cannot lock ${dir}: ${file} is not a diffuse lock; if no run uses ${dir}, delete that file`);
        }
        if (!isStale(other)) throw new UserError(`${dir} is in use by another diffuse run: ${describe(other)}`);
        // Remove the stale lock only if it is still the one judged stale (another starter may have replaced it).
        if (readText(file) === text) fs.rmSync(file, { force: true });
      }
      throw new UserError(`cannot lock ${dir}: other runs keep taking it`);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  /** Throws if the lock is no longer this run's (its file removed or replaced): saving then could destroy another run's work. */
  verify(): void {
    const h = parseHolder(readText(this.file) ?? '');
    if (h?.token !== this.token) {
      throw new UserError(`lost the lock on ${this.dir} (${h ? `now held by ${describe(h)}` : `${LOCK_FILE} was removed`}); stopping without saving`);
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    process.off('exit', this.onExit);
    try {
      if (parseHolder(fs.readFileSync(this.file, 'utf8'))?.token === this.token) fs.rmSync(this.file, { force: true });
    } catch {
      /* already gone */
    }
    removeIfEmpty(this.created);
  }
}
