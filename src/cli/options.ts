/** Option parsing shared by the commands, and the one map between configuration fields and flags. */
import { InvalidArgumentError, Option } from 'commander';
import { BACKENDS } from '../backend/select';
import { SAMPLERS, SPACINGS } from '../diffusion/sampler';
import { DEFAULTS } from '../config/defaults';

/**
 * Exit codes: 0 done, 1 an internal error (a bug), 2 a usage or user error, 3 a training stopped by
 * Ctrl-C or SIGTERM after saving the steps it took (resume continues it), 130 a second Ctrl-C.
 */
export const EXIT = { ok: 0, internal: 1, user: 2, stopped: 3, interrupted: 130 } as const;

export function integer(min: number, what = `an integer of at least ${min}`) {
  return (value: string): number => {
    const n = Number(value);
    // 1e9 is an integer too, written as numbers are
    if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected ${what}.`);
    return n;
  };
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of at least 0.');
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number.');
  return n;
}

/** A number in [0, 1), or in [0, 1] with `closed`. */
export function unitInterval(closed = false) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || (closed ? n > 1 : n >= 1)) throw new InvalidArgumentError(`expected a number in [0, 1${closed ? ']' : ')'}.`);
    return n;
  };
}

export function integerList(value: string, min = 1): number[] {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < min)) throw new InvalidArgumentError(`expected ${min === 0 ? 'non-negative' : 'positive'} integers separated by commas.`);
  return parts.map(Number);
}

export function fcWidth(value: string): number {
  const n = integer(4, 'an integer of at least 4')(value);
  if (n % 4 !== 0) throw new InvalidArgumentError('expected a multiple of 4 (the width is halved twice).');
  return n;
}

/** Configuration fields whose flag is not their name in kebab case. */
const FLAG_OF: Record<string, string> = { warmupSteps: 'warmup', blocksPerStage: 'blocks', attentionResolutions: 'attention' };
const FIELD_OF = Object.fromEntries(Object.entries(FLAG_OF).map(([field, flag]) => [flag, field]));

/** `--warmup` for the field `warmupSteps`, `--batch-size` for `batchSize`. */
export function flagOf(field: string): string {
  return '--' + (FLAG_OF[field] ?? field.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()));
}

/** The configuration field commander's option key (camelCase of the flag) stands for. */
export function fieldOf(key: string): string {
  return FIELD_OF[key] ?? key;
}

export const backendOption = () =>
  new Option('--backend <name>', 'tfjs backend: tensorflow is the native binding (optional package)').choices(BACKENDS).default('auto');

/** Sampler options of sample and evaluate; absent ones follow the checkpoint's recipe. */
export const samplerOptions = () => [
  new Option('--sampler <name>', "ancestral (all T steps), ddim, dpmpp-2m or dpmpp-3m (DPM-Solver++, few steps) (default: the checkpoint's; ddim where only --steps or --eta is given to an ancestral one)").choices(SAMPLERS),
  new Option('--spacing <kind>', `where DPM-Solver++ calls the model: logsnr, linspace or quadratic (default: ${DEFAULTS.sampling.spacing})`).choices(SPACINGS),
  new Option('--clip-denoised', "clamp the predicted clean image to [-1, 1] at every step (default: as the checkpoint's recipe says)"),
  new Option('--no-clip-denoised', 'do not clamp it'),
  new Option('--steps <K>', `model calls of a few-step sampler (default: the checkpoint's, else ${DEFAULTS.sampling.usualSteps.ddim} for ddim, ${DEFAULTS.sampling.usualSteps['dpmpp-2m']} for dpmpp)`).argParser(integer(1)),
  new Option('--guide <checkpoint>', 'autoguidance: a weaker checkpoint of the same run (e.g. an early epoch kept by --keep-every) whose predictions the checkpoint\'s are pushed away from; two model calls per step'),
  new Option('--guidance <w>', `weight of the guidance: 1 is none, larger sharpens (default: ${DEFAULTS.sampling.guidance} with --guide)`).argParser(positiveNumber),
  new Option('--class <list>', 'a conditional model: the classes to draw, by name or index (e.g. 7, or 0,3,7, or cat,dog), or all; the images are divided among them in order, or see --per-class (default: none, unconditional)'),
  new Option('--per-class <k>', 'with --class: draw k images of each class, one row per class (replaces --n)').argParser(integer(1)),
  new Option('--cfg <w>', `classifier-free guidance weight with --class: 1 is plain conditional sampling, larger draws each class more clearly, two predictions per step (default: ${DEFAULTS.sampling.cfg})`).argParser(nonNegativeNumber),
  new Option('--eta <eta>', `DDIM noise: ${DEFAULTS.sampling.eta} (the default) draws fresh noise at every step as the ancestral sampler does; 0 is deterministic`).argParser(unitInterval(true)),
];

/** ", guided by DIR (w 2)" where sampling was guided, for the commands' reports. */
export function guidedBy(settings: { guide?: { checkpoint: string; weight: number } }): string {
  return settings.guide ? `, guided by ${settings.guide.checkpoint} (w ${settings.guide.weight})` : '';
}
