/**
 * Progress reporting: a cli-progress bar on a terminal; on a pipe or log file (CI), no bar, only the
 * one summary line each task ends with.
 */
import { SingleBar } from 'cli-progress';

export interface Progress {
  start(total: number, payload: Record<string, string | number>): void;
  update(value: number, payload: Record<string, string | number>): void;
  /** Ends the bar and prints `summary` as its own line. */
  stop(summary: string): void;
}

export function createProgress(format: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) {
    return { start() {}, update() {}, stop: (summary) => stream.write(summary + '\n') };
  }
  const bar = new SingleBar({ format, stream, hideCursor: true, clearOnComplete: true, etaBuffer: 20, fps: 5 });
  return {
    start: (total, payload) => bar.start(total, 0, payload),
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
