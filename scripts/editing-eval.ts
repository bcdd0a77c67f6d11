/**
 * The editors measured on MNIST test digits with a trained MNIST or MNIST-32 checkpoint (docs/results.md,
 * "Editing"): inpainting with the bottom or the left half masked, the digit classifier's label of each
 * completion against its label of the original digit (and the true label), beside the baseline of
 * unconditional samples; DDIM inversion's reconstruction error at K steps, in grey levels.
 *
 *   node dist/scripts/editing-eval.js CHECKPOINT [N=1000] [--steps K] [--jump J] [--resample R] [--halves bottom,left]
 *     [--no-baseline] [--invert 50,100 | --invert none] [--skip-inpaint]
 */
import '@tensorflow/tfjs'; // registers the gradients (the digit classifier trains on first use)
import { selectBackend } from '../src/backend/select';
import { cropImages, loadMnist, loadMnistLabels, padImages } from '../src/data/mnist';
import { ddimDecode, ddimInvert, repaint } from '../src/diffusion/editing';
import { generate } from '../src/diffusion/sampler';
import { DEFAULTS } from '../src/config/defaults';
import { getClassifier } from '../src/eval/classifier';
import { predictedLabels } from '../src/eval/classAccuracy';
import { quantize, toByte } from '../src/io/grid';
import { loadPipeline } from '../src/pipeline/load';
import { Rng } from '../src/rng';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const [checkpoint, count] = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--'));
  const n = Number(count ?? 1000);
  const steps = Number(flag('--steps', String(DEFAULTS.editing.steps)));
  const jump = Number(flag('--jump', String(DEFAULTS.editing.jump)));
  const resample = Number(flag('--resample', String(DEFAULTS.editing.resample)));
  await selectBackend('auto', { ...(await import('../src/backend/select')).defaultBackendEnv, log: () => {} });
  const { model, scheduler, record } = loadPipeline(checkpoint);
  const side = record.model.height;
  const frame = record.data.dataset === 'mnist32' ? 2 : 0;
  const test = loadMnist('test', n);
  const truth = loadMnistLabels('test', n);
  const images = frame ? padImages(test, frame).data : test.data;
  const pixels = side * side;
  const classifier = getClassifier();
  const labelsOf = (x: Float32Array, count: number) => {
    const digits = quantize(frame ? cropImages(x, count, { height: side, width: side, channels: 1 }, frame) : x);
    return predictedLabels(classifier.classify(digits, count).probabilities, count);
  };
  const originals = labelsOf(images, n);
  const agree = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).filter((v, i) => v === b[i]).length / a.length;
  console.log(`checkpoint ${checkpoint} (${record.model.kind}, epoch ${record.training.epoch}); ${n} MNIST test digits; the classifier agrees with the true labels on ${(100 * agree(originals, truth)).toFixed(1)}% of the originals`);
  const batch = 250;
  if (!process.argv.includes('--skip-inpaint')) {
    const halves = flag('--halves', 'bottom,left').split(',');
    for (const [name, masked] of [['bottom', (p: number) => Math.floor(p / side) >= side / 2], ['left', (p: number) => p % side < side / 2]] as const) {
      if (!halves.includes(name)) continue;
      const mask = Float32Array.from({ length: pixels }, (_, p) => (masked(p) ? 1 : 0));
      const out = new Float32Array(n * pixels);
      const started = Date.now();
      const rng = new Rng(1);
      for (let first = 0; first < n; first += batch) {
        const count = Math.min(batch, n - first);
        out.set(repaint(model, scheduler, images.subarray(first * pixels, (first + count) * pixels), mask, count, { rng, steps, jump, resample, clipDenoised: process.argv.includes('--clip') }), first * pixels);
      }
      const labels = labelsOf(out, n);
      console.log(`inpaint_${name} steps ${steps} jump ${jump} resample ${resample}${process.argv.includes('--clip') ? ' clip' : ''}: agreement with the original's label ${(100 * agree(labels, originals)).toFixed(1)}%, with the true label ${(100 * agree(labels, truth)).toFixed(1)}% (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
    if (process.argv.includes('--no-baseline')) return finish();
    const samples = generate(model, scheduler, { n, rng: new Rng(2), sampler: record.sampling.sampler, steps: record.sampling.steps ?? undefined, eta: DEFAULTS.sampling.eta, spacing: DEFAULTS.sampling.spacing, clipDenoised: record.sampling.clipDenoised });
    console.log(`baseline (unconditional samples, nothing kept): agreement ${(100 * agree(labelsOf(samples, n), originals)).toFixed(1)}%`);
  }
  const inverted = Math.min(n, 200);
  for (const K of flag('--invert', '50,100').split(',').filter((k) => k !== 'none').map(Number)) for (const refine of [0, 1, 2]) {
    const x0 = images.subarray(0, inverted * pixels);
    let error = 0;
    for (let first = 0; first < inverted; first += batch) {
      const count = Math.min(batch, inverted - first);
      const part = x0.subarray(first * pixels, (first + count) * pixels);
      const back = ddimDecode(model, scheduler, ddimInvert(model, scheduler, part, count, K, undefined, refine), count, K);
      for (let i = 0; i < part.length; i++) error += Math.abs(toByte(back[i]) - toByte(part[i]));
    }
    console.log(`invert K ${K} refine ${refine}: mean absolute error ${(error / x0.length).toFixed(2)} grey levels (of 255) over ${inverted} digits`);
  }
  finish();
  function finish() {
    model.dispose();
    classifier.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
