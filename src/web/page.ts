/**
 * The page `diffuse export --web` writes: loads the exported model and samples in the browser with the
 * same model, scheduler and sampler code as `diffuse sample` (bundled by esbuild), drawing the grid as
 * the images form; with autoguidance where it was exported with a guide (?guidance=W changes its weight,
 * 1 turns it off). A class-conditional model gets a class picker (unconditional, one class, or one row
 * per class) and classifier-free guidance's weight, sampled as `diffuse sample --class --cfg` samples
 * (?class= and ?cfg= set them). Backends: WebGL where the browser has it, else wasm, else cpu (or as
 * ?backend= says).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { DEFAULTS } from '../config/defaults';
import { labelsFor, parseClasses, samplerSettings } from '../config/sampling';
import { SAMPLERS, SamplerName, denoiseSteps } from '../diffusion/sampler';
import { DDPMScheduler } from '../diffusion/schedule';
import { colourBytes, gridPixels } from '../io/grid';
import { AutoGuided } from '../models/autoguidance';
import { buildModel } from '../models/build';
import { ClassifierFree } from '../models/classifierFree';
import { Denoiser, ModelConfig, imageSize } from '../models/denoiser';
import { Rng } from '../rng';
import { assignCopy } from '../tensors';
import { WEB_GUIDE_WEIGHTS_FILE, WEB_MODEL_FILE, WEB_WEIGHTS_FILE, WebModel, WebWeights } from './format';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
/** The class picker's value for one row per class (`diffuse sample --class all --per-class K`); a class's is its index. */
const EVERY_CLASS = '*';
/** `diffuse sample`'s --batch-size default: the page draws its starting noise batch by batch as that does. */
const SAMPLE_BATCH = DEFAULTS.sampling.batchSize;

function status(text: string): void {
  $('status').textContent = text;
}

async function startBackend(wanted: string): Promise<string> {
  setWasmPaths('./');
  for (const name of wanted === 'auto' ? ['webgl', 'wasm', 'cpu'] : [wanted]) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
    } catch {
      /* the next one */
    }
  }
  throw new Error(`no tfjs backend could start (${wanted})`);
}

function describe(web: WebModel): string {
  const { model, data, training, schedule } = web.record;
  const arch = model.kind === 'fc-unet' ? `fully connected U-net, width ${model.width}` : `convolutional U-net, ${model.baseChannels} x [${model.channelMults}] channels${model.patchSize > 1 ? ` on ${model.patchSize}x${model.patchSize} patches` : ''}, attention at ${model.attentionResolutions} px`;
  const source = data.dataset === 'folder' ? `a folder of ${data.count} images` : `${data.dataset === 'mnist' ? 'MNIST' : 'MNIST-32'} (${data.count} images)`;
  const guided = web.guide ? `; guided by its epoch ${web.guide.record.training.epoch} (w ${guidance(web)})` : '';
  const names = data.classes;
  const classes = conditional(web) ? `; conditional on ${names.length} classes (${names.slice(0, 12).join(', ')}${names.length > 12 ? ', …' : ''})` : '';
  return `${arch}; ${(web.parameters / 1e6).toFixed(2)} M parameters; ${model.height}x${model.imageWidth}x${model.channels}; trained ${training.epoch} epochs on ${source}${classes}; predicts ${schedule.prediction}; ${web.averaged ? 'averaged weights' : 'raw weights'}${guided}`;
}

/** Whether the model draws by class (a checkpoint trained with --conditional). */
function conditional(web: WebModel): boolean {
  return web.record.model.classes > 0;
}

/** Autoguidance's weight: ?guidance= where given, else the exported one. */
function guidance(web: WebModel): number {
  const w = Number(params.get('guidance'));
  return params.has('guidance') && w > 0 ? w : web.guide!.weight;
}

/** A model of `config` holding the weights `index` describes in `buffer`. */
function loadedModel(config: ModelConfig, index: WebWeights, buffer: ArrayBuffer): Denoiser {
  const model = buildModel(config, new Rng(0));
  const floats = new Float32Array(buffer);
  let offset = 0;
  for (const t of index.tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    assignCopy(model.variables.get(t.name)!, floats.subarray(offset, offset + size));
    offset += size;
  }
  return model;
}

function draw(x: Float32Array, n: number, web: WebModel, columns?: number): void {
  const { height, imageWidth, channels } = web.record.model;
  const grid = gridPixels(x, n, height, imageWidth, channels, columns);
  const canvas = $<HTMLCanvasElement>('grid');
  canvas.width = grid.width;
  canvas.height = grid.height;
  const rgba = Uint8ClampedArray.from(colourBytes(grid.pixels, channels, 4));
  canvas.getContext('2d')!.putImageData(new ImageData(rgba, grid.width, grid.height), 0, 0);
}

/**
 * What the class picker and the guidance weight ask for, as `diffuse sample --class SPEC --cfg W
 * [--per-class K]` takes them: none (unconditional), one class, or every class with `perClass` each.
 */
function classChoice(web: WebModel, count: number): { classes: number[]; weight: number; perClass?: number } | undefined {
  if (!conditional(web)) return undefined;
  const picked = $<HTMLSelectElement>('class').value;
  if (picked === '') return undefined;
  const text = $<HTMLInputElement>('cfg').value.trim();
  const weight = text === '' ? DEFAULTS.sampling.cfg : Number(text);
  if (!Number.isFinite(weight) || weight < 0) throw new Error(`guidance weight ${text}: give a number ≥ 0 (1 is plain conditional sampling)`);
  if (picked === EVERY_CLASS) return { classes: web.record.data.classes.map((_, i) => i), weight, perClass: count };
  return { classes: [Number(picked)], weight };
}

async function sample(model: Denoiser, web: WebModel): Promise<void> {
  const seed = Number($<HTMLInputElement>('seed').value) || 0;
  const asked = Math.max(1, Math.min(64, Number($<HTMLInputElement>('n').value) || 16));
  const sampler = $<HTMLSelectElement>('sampler').value as SamplerName;
  const stepsValue = $<HTMLInputElement>('steps').value;
  const settings = samplerSettings(web.record, { sampler, ...(stepsValue && sampler !== 'ancestral' ? { steps: Number(stepsValue) } : {}) });
  const scheduler = new DDPMScheduler(web.record.schedule);
  // As `diffuse sample` does: the images divided among the classes in order (labelsFor), or perClass of
  // each class one row per class, predicted uncond + w·(cond − uncond) (ClassifierFree).
  const classes = classChoice(web, asked);
  const n = classes?.perClass ? classes.perClass * classes.classes.length : asked;
  const labels = classes ? labelsFor(classes.classes, n) : undefined;
  const guided = classes ? new ClassifierFree(model, classes.weight) : model;
  const columns = classes?.perClass;
  const rng = new Rng(seed);
  // As `diffuse sample` draws each batch: its starting noise, then each step's noise, from one stream.
  const pixels = imageSize(model.config);
  const x = new Float32Array(n * pixels);
  document.body.dataset.state = 'sampling';
  const started = performance.now();
  let last = 0;
  for (let first = 0; first < n; first += SAMPLE_BATCH) {
    const batch = Math.min(SAMPLE_BATCH, n - first);
    const xb = rng.fillNormal(new Float32Array(batch * pixels));
    const options = { n, rng, ...settings, ...(labels ? { labels: labels.subarray(first, first + batch) } : {}) };
    for (const { step, of } of denoiseSteps(guided, scheduler, xb, batch, options)) {
      if (step === of || performance.now() - last > 100) {
        x.set(xb, first * pixels);
        draw(x, n, web, columns);
        const part = n > SAMPLE_BATCH ? ` images ${first + 1}..${first + batch} of ${n},` : '';
        status(`${tf.getBackend()}:${part} ${settings.sampler} step ${step}/${of}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
        last = performance.now();
        await new Promise((r) => setTimeout(r, 0)); // let the page paint
      }
    }
    x.set(xb, first * pixels);
  }
  draw(x, n, web, columns);
  const names = classes ? (classes.perClass ? `${classes.perClass} of each class` : `class ${classes.classes.map((c) => web.record.data.classes[c]).join(',')}`) : '';
  const by = classes ? `, ${names} (guidance ${classes.weight})` : '';
  status(`${tf.getBackend()}: ${n} images${by}, ${settings.sampler}${settings.steps ? ` ${settings.steps} steps` : ''}, seed ${seed}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
  document.body.dataset.state = 'done';
}

/**
 * A conditional model's controls: the class picker (unconditional, each class, one row per class; the
 * images field then counts each class's images) and the guidance weight, set from ?class= and ?cfg=
 * where given; an unconditional model's page has neither.
 */
function classControls(web: WebModel): void {
  if (!conditional(web)) {
    $('class-label').remove();
    $('cfg-label').remove();
    return;
  }
  const picker = $<HTMLSelectElement>('class');
  picker.add(new Option('any (unconditional)', ''));
  web.record.data.classes.forEach((name, i) => picker.add(new Option(name, String(i))));
  picker.add(new Option('one row per class', EVERY_CLASS));
  const weight = $<HTMLInputElement>('cfg');
  weight.value = String(DEFAULTS.sampling.cfg);
  if (params.has('cfg')) weight.value = params.get('cfg')!;
  const wanted = params.get('class');
  if (wanted !== null && wanted.trim() !== '') {
    // as --class takes it: a name, an index, or all (one row per class here)
    const [index, more] = parseClasses(web.record, wanted);
    if (wanted.trim() === 'all') picker.value = EVERY_CLASS;
    else if (more === undefined) picker.value = String(index);
    else throw new Error(`?class=${wanted}: the page draws one class, or all`);
  }
  const update = () => {
    weight.disabled = picker.value === ''; // as --cfg weighs only the classes drawn
    $('n-label').textContent = picker.value === EVERY_CLASS ? 'per class' : 'images';
  };
  picker.onchange = update;
  update();
  $('class-label').hidden = false;
  $('cfg-label').hidden = false;
}

async function main(): Promise<void> {
  if ('serviceWorker' in navigator && location.protocol !== 'file:') navigator.serviceWorker.register('sw.js').catch(() => {});
  for (const [id, key] of [['seed', 'seed'], ['n', 'n'], ['steps', 'steps']] as const) if (params.has(key)) $<HTMLInputElement>(id).value = params.get(key)!;
  const samplerSelect = $<HTMLSelectElement>('sampler');
  for (const name of SAMPLERS) samplerSelect.add(new Option(name, name));
  status('loading the model');
  const [web, weights] = await Promise.all([
    fetch(WEB_MODEL_FILE).then((r) => r.json() as Promise<WebModel>),
    fetch(WEB_WEIGHTS_FILE).then((r) => r.arrayBuffer()),
  ]);
  samplerSelect.value = params.get('sampler') ?? web.record.sampling.sampler;
  if (!params.has('steps') && web.record.sampling.steps) $<HTMLInputElement>('steps').value = String(web.record.sampling.steps);
  $('info').textContent = describe(web);
  classControls(web);
  const backend = await startBackend(params.get('backend') ?? 'auto');
  document.body.dataset.backend = backend;
  let model = loadedModel(web.record.model, web, weights);
  if (web.guide) {
    const guide = loadedModel(web.guide.record.model, web.guide, await fetch(WEB_GUIDE_WEIGHTS_FILE).then((r) => r.arrayBuffer()));
    model = new AutoGuided(model, guide, guidance(web)); // as `diffuse sample --guide`
  }
  status(`ready on ${backend}`);
  document.body.dataset.state = 'ready';
  $<HTMLButtonElement>('run').onclick = () => void sample(model, web).catch(fail);
  $<HTMLButtonElement>('save').onclick = () =>
    $<HTMLCanvasElement>('grid').toBlob((blob) => {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob!);
      a.download = `diffuse-seed-${$<HTMLInputElement>('seed').value}.png`;
      a.click();
    });
  if (params.get('autorun') === '1') await sample(model, web);
}

function fail(e: unknown): void {
  status(`error: ${e instanceof Error ? e.message : String(e)}`);
  document.body.dataset.state = 'error';
}

main().catch(fail);
