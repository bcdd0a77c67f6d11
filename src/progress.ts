/**
 * What a command says on stderr as it works: a cli-progress bar on a terminal (on a pipe or log file,
 * no bar, only the one summary line each task ends with), and notices held until the command's first
 * line of its own.
 */
import { SingleBar } from 'cli-progress';

export interface Progress {
  start(total: number, payload: Record<string, string | number>): void;
  update(value: number, payload: Record<string, string | number>): void;
  /** Ends the bar and prints `summary` as its own line. */
  stop(summary: string): void;
}

const held: string[] = [];

/**
 * A line that is worth saying but not before an error (which backend runs): it waits for the command's
 * next line or progress bar, so an error that ends a command before it works is its first line on stderr.
 */
export function notice(message: string): void {
  held.push(message);
}

/** Writes the notices held so far. */
export function flushNotices(stream: NodeJS.WritableStream = process.stderr): void {
  for (const message of held.splice(0)) stream.write(message + '\n');
}

export function createProgress(format: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) {
    return { start: () => flushNotices(stream), update() {}, stop: (summary) => (flushNotices(stream), stream.write(summary + '\n')) };
  }
  const bar = new SingleBar({ format, stream, hideCursor: true, clearOnComplete: true, etaBuffer: 20, fps: 5 });
  return {
    start: (total, payload) => {
      flushNotices(stream);
      bar.start(total, 0, payload);
    },
    update: (value, payload) => bar.update(value, payload),
    stop: (summary) => {
      bar.stop();
      stream.write(summary + '\n');
    },
  };
}

export const silentProgress: Progress = { start() {}, update() {}, stop() {} };

/** The progress bar over the reverse process's steps. */
export function samplingProgress(): Progress {
  return createProgress('sampling |{bar}| {value}/{total} steps | ETA {eta_formatted}');
}
