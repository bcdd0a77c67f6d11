/**
 * The training run: under the run folder's lock, the epochs from the checkpoint's (or a new run's)
 * state to the target, a checkpoint after each, optional kept copies and sample grids, a clean stop
 * when asked (Ctrl-C) with the steps taken saved, and progress on stderr.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { withData } from '../config/resolve';
import { RunRecord } from '../config/runRecord';
import { epochBatches } from '../data/batches';
import { describeData, loadTrainingData } from '../data/dataset';
import { generate } from '../diffusion/sampler';
import { UserError } from '../errors';
import { NamedArray, checkpointExists, loadCheckpoint, saveCheckpoint } from '../io/checkpoint';
import { writeImageGrid } from '../io/images';
import { RunLock } from '../io/runLock';
import { describeModel } from '../models/build';
import { samplerSettings } from '../config/sampling';
import { Progress, createProgress, samplingProgress } from '../progress';
import { EvalFigures, HISTORY_FILE, HistoryRow, TrainingHistory } from '../report/history';
import { REPORT_FILE, writeReport } from '../report/html';
import { Rng } from '../rng';
import { DigitClassifier, getClassifier } from '../eval/classifier';
import { asDigits, mnistFrame, score, testReference } from '../eval/evaluate';
import { Reference } from '../eval/featureSets';
import { effectiveWarmup, learningRateAt } from '../optim/lrSchedule';
import { defaultWorkers } from '../parallel/dataParallel';
import { Trainer } from './trainer';

/** How a run starts: its resolved record (config/resolve.ts's resolveRun), new or resuming the checkpoint in the run folder. */
export interface RunStart {
  record: RunRecord;
  resume: boolean;
  /** A new run may replace a checkpoint in the folder. */
  overwrite: boolean;
}

export interface TrainRun {
  start: RunStart;
  /** The run folder: checkpoint, lock, kept copies and grids. */
  out: string;
  /** Total epochs to reach. */
  epochs: number;
  /** Write a 64-image grid every this many epochs (0 = never). */
  sampleEvery: number;
  /** Keep a copy of the checkpoint in out/epoch-NNNN every this many epochs (0 = never). */
  keepEvery: number;
  /** A history row every this many updates (0 = epoch rows only). */
  logEvery: number;
  /** Score 200 samples with the digit classifier every this many epochs (0 = never; MNIST runs only). */
  evalEvery: number;
  /** Threads sharing each batch (src/training/dataParallel.ts); absent: defaultWorkers. */
  workers?: number;
}

/** Samples scored per --eval-every evaluation: enough to rank epochs, few enough to cost seconds. */
export const EVAL_SAMPLES = 200;

/** --eval-every needs digits the classifier can judge: other runs are refused, naming the option. */
export function checkScorable(record: RunRecord): void {
  try {
    mnistFrame(record);
  } catch (e) {
    throw new UserError(`--eval-every: ${(e as Error).message}`);
  }
}

export interface TrainHooks {
  log(message: string): void;
  shouldStop(): boolean;
  progress?(): Progress;
}

export interface TrainResult {
  epoch: number;
  interrupted: boolean;
  lastLoss: number | null;
  samplesPerSecond: number;
}

/** A new run was asked to start in a folder that holds a checkpoint (the command line says how to go on). */
export class CheckpointExistsError extends UserError {
  constructor(readonly dir: string) {
    super(`${dir} already holds a checkpoint`);
  }
}

export async function runTraining(o: TrainRun, hooks: TrainHooks): Promise<TrainResult> {
  const made = !fs.existsSync(o.out);
  // Before any data is loaded: a second writer, or a folder that cannot take files, fails at once.
  const lock = RunLock.acquire(o.out);
  try {
    return await trainLocked(o, hooks, lock);
  } catch (e) {
    // A new run that failed before its first checkpoint leaves no history or report of nothing behind.
    if (!o.start.resume && !checkpointExists(o.out)) for (const file of [HISTORY_FILE, REPORT_FILE]) fs.rmSync(path.join(o.out, file), { force: true });
    throw e;
  } finally {
    lock.release();
    if (made) removeIfEmpty(o.out);
  }
}

function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir); // refused where anything is left in it
  } catch {
    /* it holds the run */
  }
}

async function trainLocked(o: TrainRun, hooks: TrainHooks, lock: RunLock): Promise<TrainResult> {
  let saved: Map<string, NamedArray> | undefined;
  if (o.start.resume) {
    const loaded = loadCheckpoint(o.out);
    // the record was resolved from this checkpoint's before the lock was taken: it must still be the same one
    if (loaded.meta.training.step !== o.start.record.training.step) throw new UserError(`${o.out}'s checkpoint changed while this run started (step ${o.start.record.training.step}, now ${loaded.meta.training.step}); run it again`);
    saved = loaded.tensors;
  } else if (checkpointExists(o.out) && !o.start.overwrite) {
    throw new CheckpointExistsError(o.out);
  }
  const data = await loadTrainingData(o.start.record.data, hooks.log);
  const meta = withData(o.start.record, data.count, o.epochs, data.classNames);
  if (meta.training.batchSize > data.count) hooks.log(`diffuse: note: the batch size ${meta.training.batchSize} is more than the ${data.count} training images; each step takes all of them`);
  if (meta.training.epoch >= o.epochs) {
    hooks.log(`${o.out} already holds ${meta.training.epoch} epochs (of ${o.epochs} to train); nothing to do`);
    return { epoch: meta.training.epoch, interrupted: false, lastLoss: meta.training.loss, samplesPerSecond: 0 };
  }

  const workers = o.workers ?? defaultWorkers(meta.model);
  const trainer = new Trainer(meta, saved, { workers });
  const history = o.start.resume ? TrainingHistory.resume(o.out, trainer.step) : TrainingHistory.start(o.out);
  const machine = `${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${os.cpus().length} cores, backend ${tf.getBackend()}`;
  let judge: { classifier: DigitClassifier; reference: Reference } | null = null;
  const batchSize = meta.training.batchSize;
  hooks.log(
    `training ${describeModel(trainer.model)} on ${data.count} ${describeData(meta.data)} images, batch ${batchSize}, ` +
      `lr ${meta.training.optimizer.lr} ${meta.training.lrSchedule.kind}` +
      `${effectiveWarmup(meta.training.lrSchedule) ? ` (warm-up ${effectiveWarmup(meta.training.lrSchedule)} steps)` : ''}` +
      `${meta.training.ema ? `, ema ${meta.training.ema}` : ''}${meta.schedule.prediction === 'v' ? ', v-prediction' : ''}${describeObjective(meta.training)}${workers > 1 ? `, ${workers} threads per batch` : ''}, epochs ${trainer.epoch + 1}..${o.epochs}, checkpoints in ${o.out}`,
  );
  let interrupted = false;
  let lastLoss = meta.training.loss;
  let samplesPerSecond = 0;
  // The --log-every window runs across epoch ends, so runs with short epochs get their rows too.
  let window = { loss: 0, steps: 0, started: Date.now(), images: 0 };
  try {
    while (trainer.epoch < o.epochs && !interrupted) {
      const batches = epochBatches(data.count, batchSize, trainer.rng);
      const progress = hooks.progress?.() ?? createProgress('epoch {epoch} |{bar}| {value}/{total} | loss {loss} | {sps} samples/s | ETA {eta_formatted}');
      const started = Date.now();
      let lossSum = 0;
      let seen = 0;
      const payload = (loss: number) => ({ epoch: `${trainer.epoch + 1}/${o.epochs}`, loss: loss.toFixed(4), sps: Math.round((seen * 1000) / Math.max(1, Date.now() - started)) });
      progress.start(batches.length, payload(0));
      for (let i = 0; i < batches.length; i++) {
        const loss = trainer.trainStep(data, batches[i]);
        lossSum += loss * batches[i].length;
        seen += batches[i].length;
        window.loss += loss;
        window.steps += 1;
        window.images += batches[i].length;
        if (o.logEvery > 0 && window.steps === o.logEvery) {
          const seconds = (Date.now() - window.started) / 1000;
          history.append(historyRow('steps', trainer.epoch + 1, window.loss / window.steps, seconds, window.images / Math.max(seconds, 1e-3)));
          window = { loss: 0, steps: 0, started: Date.now(), images: 0 };
        }
        progress.update(i + 1, payload(lossSum / seen));
        await new Promise(setImmediate); // lets a pending Ctrl-C handler run
        if (hooks.shouldStop()) {
          interrupted = true;
          break;
        }
      }
      const seconds = (Date.now() - started) / 1000;
      samplesPerSecond = seen / seconds;
      if (interrupted) {
        // Weights include this partial epoch; the epoch count does not, so resume repeats the epoch.
        progress.stop(`interrupted in epoch ${trainer.epoch + 1} after ${seen} images; saving`);
      } else {
        trainer.epoch += 1;
        lastLoss = lossSum / seen;
        progress.stop(`epoch ${trainer.epoch}/${o.epochs}: loss ${lastLoss.toFixed(4)}, ${Math.round(samplesPerSecond)} samples/s, ${seconds.toFixed(1)} s`);
      }
      if (!interrupted) {
        let scores: EvalFigures | undefined;
        if (o.evalEvery > 0 && (trainer.epoch % o.evalEvery === 0 || trainer.epoch === o.epochs)) {
          judge ??= loadJudge();
          scores = evaluateEpoch(trainer, meta, judge, hooks);
          hooks.log(`epoch ${trainer.epoch}: FD ${scores.fd.toFixed(1)}, confidence ${scores.confidence.toFixed(3)}, coverage ${scores.coverage.toFixed(3)} (${EVAL_SAMPLES} samples)`);
        }
        // Before the save: a crash between the two leaves a row past the checkpoint, which resume drops.
        history.append({ ...historyRow('epoch', trainer.epoch, lastLoss!, seconds, samplesPerSecond), ...(scores ? { eval: scores } : {}) });
      }
      lock.verify();
      saveCheckpoint(o.out, trainer.checkpointMeta(lastLoss), trainer.tensors());
      if (interrupted) break;
      if (o.keepEvery > 0 && trainer.epoch % o.keepEvery === 0) {
        saveCheckpoint(path.join(o.out, `epoch-${String(trainer.epoch).padStart(4, '0')}`), trainer.checkpointMeta(lastLoss), trainer.tensors());
      }
      if (o.sampleEvery > 0 && (trainer.epoch % o.sampleEvery === 0 || trainer.epoch === o.epochs)) {
        const file = path.join(o.out, `samples-epoch-${String(trainer.epoch).padStart(4, '0')}.png`);
        // The same noise at every epoch, so grids compare; the sampler as `diffuse sample` would use it.
        const images = sampleFor(trainer, meta, 64, meta.training.seed + 2, hooks);
        await writeImageGrid(file, images, 64, meta.model.height, meta.model.imageWidth, meta.model.channels);
        hooks.log(`wrote ${file}`);
      }
      writeReport(o.out, { record: trainer.checkpointMeta(lastLoss), rows: history.rows, machine });
    }
  } finally {
    trainer.dispose();
    judge?.classifier.dispose();
  }
  return { epoch: trainer.epoch, interrupted, lastLoss, samplesPerSecond };

  function historyRow(kind: 'steps' | 'epoch', epoch: number, loss: number, seconds: number, samplesPerSecond: number): HistoryRow {
    const step = trainer.step;
    return { time: new Date().toISOString(), kind, epoch, step, loss, lr: learningRateAt(meta.training.optimizer.lr, meta.training.lrSchedule, step), seconds, samplesPerSecond };
  }

  function loadJudge() {
    const classifier = getClassifier(undefined, hooks.progress?.() ?? createProgress('training the digit classifier (first use) |{bar}| {value}/{total} | ETA {eta_formatted}'));
    return { classifier, reference: testReference(classifier, EVAL_SAMPLES) };
  }
}

/** The classifier's scores of EVAL_SAMPLES images from the (averaged) weights, drawn as `diffuse sample` would. */
function evaluateEpoch(trainer: Trainer, meta: RunRecord, judge: { classifier: DigitClassifier; reference: Reference }, hooks: TrainHooks): EvalFigures {
  const images = sampleFor(trainer, meta, EVAL_SAMPLES, meta.training.seed + 3, hooks);
  const s = score(judge.classifier, asDigits(meta, images, EVAL_SAMPLES), EVAL_SAMPLES, judge.reference);
  return { fd: s.fd, kid: s.kid, confidence: s.confidence, coverage: s.coverage };
}

/** n images from the trainer's (averaged) weights, on its threads, drawn as `diffuse sample` would. */
function sampleFor(trainer: Trainer, meta: RunRecord, n: number, seed: number, hooks: TrainHooks): Float32Array {
  const averaged = trainer.averagedModel();
  try {
    const model = trainer.onWorkers(averaged ?? trainer.model);
    return generate(model, trainer.scheduler, { n, rng: new Rng(seed), progress: hooks.progress?.() ?? samplingProgress(), ...samplerSettings(meta) });
  } finally {
    averaged?.dispose();
  }
}

/** The loss weighting and noise levels as the start line names them; nothing for Ho et al.'s uniform ones. */
function describeObjective({ weighting, levels }: RunRecord['training']): string {
  return `${weighting.kind === 'min-snr' ? `, min-SNR-${weighting.gamma} weighting` : ''}${levels.kind === 'log-normal' ? `, log-normal levels (ln σ ~ N(${levels.mean}, ${levels.std}²))` : ''}`;
}
