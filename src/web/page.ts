/**
 * The page `diffuse export --web` writes, built on the module it writes beside it (diffuse.mjs, the
 * browser API: src/api/browser.ts), as a page of one's own would be: loads the exported model and
 * samples with the same model, scheduler and sampler code as `diffuse sample`, drawing the grid as the
 * images form; with autoguidance where it was exported with a guide (?guidance=W changes its weight, 1
 * turns it off). A class-conditional model gets a class picker (unconditional, one class, or one row per
 * class) and classifier-free guidance's weight, sampled as `diffuse sample --class --cfg` samples (?class=
 * and ?cfg= set them). Backends: WebGL where the browser has it, else wasm, else cpu (or as ?backend= says).
 * Editing: a sample clicked (or an image opened) becomes the source; painting over it (or a mask image)
 * marks what `inpaint` regenerates; `image to image` redraws it at the strength chosen (SDEdit), as the
 * commands `diffuse inpaint` and `diffuse edit` do, with the seed and count above.
 */
import { BROWSER_BACKENDS, BrowserModel, Images, SAMPLERS, SAMPLING_DEFAULTS, SamplerName, SamplingStep, loadModel } from '../api/browser';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
/** The class picker's value for one row per class (`diffuse sample --class all --per-class K`); a class's is its index. */
const EVERY_CLASS = '*';

function status(text: string): void {
  $('status').textContent = text;
}

function describe(model: BrowserModel): string {
  const web = model.web;
  const { model: arch, data, training, schedule } = web.record;
  const kind = arch.kind === 'fc-unet' ? `fully connected U-net, width ${arch.width}` : `convolutional U-net, ${arch.baseChannels} x [${arch.channelMults}] channels${arch.patchSize > 1 ? ` on ${arch.patchSize}x${arch.patchSize} patches` : ''}, attention at ${arch.attentionResolutions} px`;
  const source = data.dataset === 'folder' ? `a folder of ${data.count} images` : `${data.dataset === 'mnist' ? 'MNIST' : 'MNIST-32'} (${data.count} images)`;
  const guided = web.guide ? `; guided by its epoch ${web.guide.record.training.epoch} (w ${model.guidance})` : '';
  const names = model.classes;
  const classes = names.length > 0 ? `; conditional on ${names.length} classes (${names.slice(0, 12).join(', ')}${names.length > 12 ? ', …' : ''})` : '';
  return `${kind}; ${(web.parameters / 1e6).toFixed(2)} M parameters; ${arch.height}x${arch.imageWidth}x${arch.channels}; trained ${training.epoch} epochs on ${source}${classes}; predicts ${schedule.prediction}; ${web.averaged ? 'averaged weights' : 'raw weights'}${guided}`;
}

function draw(images: Images): void {
  const { data, width, height } = images.toRGBA();
  const canvas = $<HTMLCanvasElement>('grid');
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d')!.putImageData(new ImageData(data, width, height), 0, 0);
}

/**
 * What the class picker and the guidance weight ask for, as `diffuse sample --class SPEC --cfg W
 * [--per-class K]` takes them: none (unconditional), one class, or every class with `count` each.
 */
function classOptions(model: BrowserModel, count: number): { class?: string | number; perClass?: number; cfg?: number } {
  if (model.classes.length === 0) return {};
  const picked = $<HTMLSelectElement>('class').value;
  if (picked === '') return {};
  const text = $<HTMLInputElement>('cfg').value.trim();
  const cfg = text === '' ? SAMPLING_DEFAULTS.cfg : Number(text);
  if (!Number.isFinite(cfg) || cfg < 0) throw new Error(`guidance weight ${text}: give a number ≥ 0 (1 is plain conditional sampling)`);
  return picked === EVERY_CLASS ? { class: 'all', perClass: count, cfg } : { class: Number(picked), cfg };
}

/** Samples as `diffuse sample` does with the same options (the API's sample), drawing the grid as the images form. */
async function sample(model: BrowserModel): Promise<void> {
  const seed = Number($<HTMLInputElement>('seed').value) || 0;
  const asked = Math.max(1, Math.min(64, Number($<HTMLInputElement>('n').value) || 16));
  const sampler = $<HTMLSelectElement>('sampler').value as SamplerName;
  const stepsValue = $<HTMLInputElement>('steps').value;
  const classes = classOptions(model, asked);
  const { height, imageWidth, channels } = model.record.model;
  const pixels = height * imageWidth * channels;
  document.body.dataset.state = 'sampling';
  const started = performance.now();
  let last = 0;
  let shown: Float32Array | null = null;
  const onStep = ({ first, batch, step, of, n, x }: SamplingStep) => {
    shown ??= new Float32Array(n * pixels);
    shown.set(x, first * pixels);
    if (step !== of && performance.now() - last <= 100) return;
    draw(new Images(shown, n, height, imageWidth, channels, classes.perClass));
    const part = n > batch ? ` images ${first + 1}..${first + batch} of ${n},` : '';
    status(`${model.backend}:${part} ${sampler} step ${step}/${of}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
    last = performance.now();
    return new Promise<void>((r) => setTimeout(r, 0)); // let the page paint
  };
  const images = await model.sample({ n: asked, seed, sampler, ...(stepsValue && sampler !== 'ancestral' ? { steps: Number(stepsValue) } : {}), ...classes, onStep });
  draw(images);
  editing.shown = images;
  const settings = images.settings!;
  const names = settings.classes ? (classes.perClass ? `${classes.perClass} of each class` : `class ${settings.classes.join(',')}`) : '';
  const by = settings.classes ? `, ${names} (guidance ${settings.cfg})` : '';
  status(`${model.backend}: ${images.count} images${by}, ${settings.sampler}${settings.steps ? ` ${settings.steps} steps` : ''}, seed ${seed}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
  document.body.dataset.state = 'done';
}

/**
 * A conditional model's controls: the class picker (unconditional, each class, one row per class; the
 * images field then counts each class's images) and the guidance weight, set from ?class= and ?cfg=
 * where given; an unconditional model's page has neither.
 */
function classControls(model: BrowserModel): void {
  if (model.classes.length === 0) {
    $('class-label').remove();
    $('cfg-label').remove();
    return;
  }
  const picker = $<HTMLSelectElement>('class');
  picker.add(new Option('any (unconditional)', ''));
  model.classes.forEach((name, i) => picker.add(new Option(name, String(i))));
  picker.add(new Option('one row per class', EVERY_CLASS));
  const weight = $<HTMLInputElement>('cfg');
  weight.value = String(SAMPLING_DEFAULTS.cfg);
  if (params.has('cfg')) weight.value = params.get('cfg')!;
  const wanted = params.get('class');
  if (wanted !== null && wanted.trim() !== '') {
    // as --class takes it: a name, an index, or all (one row per class here)
    const [index, more] = model.classIndices(wanted);
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

/** What editing works on: the source image and the mask painted or opened (1: regenerate). */
const editing = { image: null as Float32Array | null, mask: null as Float32Array | null, shown: null as Images | null };

/** The source with the mask over it (red), scaled up on the page. */
function drawSource(model: BrowserModel): void {
  const { height, imageWidth, channels } = model.record.model;
  const canvas = $<HTMLCanvasElement>('source');
  if (!editing.image) return;
  const { data } = new Images(editing.image, 1, height, imageWidth, channels).toRGBA();
  if (editing.mask) editing.mask.forEach((m, p) => m > 0 && data.set([255, Math.round(data[4 * p + 1] / 3), Math.round(data[4 * p + 2] / 3)], 4 * p));
  canvas.width = imageWidth;
  canvas.height = height;
  canvas.getContext('2d')!.putImageData(new ImageData(data, imageWidth, height), 0, 0);
  canvas.dataset.masked = String(editing.mask ? editing.mask.reduce((a, b) => a + b, 0) : 0); // pixels to regenerate
}

/** Editing's controls: the source from a clicked sample or a file, the mask painted or opened, the two editors. */
function editControls(model: BrowserModel): void {
  const { height, imageWidth, channels } = model.record.model;
  const pixels = height * imageWidth;
  const setSource = (image: Float32Array) => {
    editing.image = image;
    editing.mask = null;
    $<HTMLDetailsElement>('editing').open = true;
    drawSource(model);
  };
  // a click on a sample of the grid (tiles of the model's size with 2-px gaps)
  $<HTMLCanvasElement>('grid').onclick = (e) => {
    const shown = editing.shown;
    if (!shown) return;
    const canvas = e.currentTarget as HTMLCanvasElement;
    const x = ((e.offsetX * canvas.width) / canvas.clientWidth) | 0, y = ((e.offsetY * canvas.height) / canvas.clientHeight) | 0;
    const columns = shown.columns ?? Math.ceil(Math.sqrt(shown.count));
    const k = Math.floor(y / (height + 2)) * columns + Math.floor(x / (imageWidth + 2));
    if (k < shown.count) setSource(shown.data.slice(k * pixels * channels, (k + 1) * pixels * channels));
  };
  $<HTMLInputElement>('edit-image').onchange = async (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (file) setSource(await model.readImage(file));
  };
  $<HTMLInputElement>('edit-mask').onchange = async (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (!file) return;
    try {
      editing.mask = await model.readMask(file);
      drawSource(model);
    } catch (error) {
      fail(error);
    }
  };
  $<HTMLButtonElement>('clear-mask').onclick = () => {
    editing.mask = null;
    drawSource(model);
  };
  // painting: a round brush of 1/16 of the image's side
  const source = $<HTMLCanvasElement>('source');
  let painting = false;
  const paint = (e: PointerEvent) => {
    if (!painting || !editing.image) return;
    const x = (e.offsetX * imageWidth) / source.clientWidth, y = (e.offsetY * height) / source.clientHeight;
    const r = Math.max(1, imageWidth / 16);
    editing.mask ??= new Float32Array(pixels);
    for (let py = Math.max(0, Math.floor(y - r)); py < Math.min(height, Math.ceil(y + r)); py++)
      for (let px = Math.max(0, Math.floor(x - r)); px < Math.min(imageWidth, Math.ceil(x + r)); px++) if ((px + 0.5 - x) ** 2 + (py + 0.5 - y) ** 2 <= r * r) editing.mask[py * imageWidth + px] = 1;
    drawSource(model);
  };
  source.onpointerdown = (e) => {
    painting = true;
    source.setPointerCapture(e.pointerId);
    paint(e);
  };
  source.onpointermove = paint;
  source.onpointerup = () => (painting = false);
  const strength = $<HTMLInputElement>('strength');
  if (params.has('strength')) strength.value = params.get('strength')!;
  strength.oninput = () => ($('strength-value').textContent = strength.value);
  strength.oninput(new Event('input'));
  $<HTMLButtonElement>('inpaint').onclick = () => void edit(model, 'inpaint').catch(fail);
  $<HTMLButtonElement>('edit').onclick = () => void edit(model, 'edit').catch(fail);
}

/** Inpaints the source's mask or redraws the source at the strength, as `diffuse inpaint` / `diffuse edit` with the seed and count above; one row: the source (and what was masked) then the results. */
async function edit(model: BrowserModel, kind: 'inpaint' | 'edit'): Promise<void> {
  const { image, mask } = editing;
  if (!image) throw new Error('click a sample, or open an image, to edit first');
  if (kind === 'inpaint' && !mask) throw new Error('paint over what to regenerate (or open a mask) first');
  const seed = Number($<HTMLInputElement>('seed').value) || 0;
  const n = Math.max(1, Math.min(16, Number($<HTMLInputElement>('n').value) || 4));
  const strength = Number($<HTMLInputElement>('strength').value);
  document.body.dataset.state = 'sampling';
  status(`${model.backend}: ${kind === 'inpaint' ? 'inpainting' : `image to image at strength ${strength}`}, ${n} images…`);
  await new Promise((r) => setTimeout(r, 0));
  const started = performance.now();
  const results = kind === 'inpaint' ? await model.inpaint({ image, mask: mask!, n, seed }) : await model.edit({ image, strength, n, seed });
  const { height, imageWidth, channels } = model.record.model;
  const shown = kind === 'inpaint' ? [image, image.map((v, i) => (mask![Math.floor(i / channels)] > 0.5 ? 0 : v))] : [image];
  const row = new Float32Array((shown.length + n) * image.length);
  shown.forEach((x, i) => row.set(x, i * image.length));
  row.set(results.data, shown.length * image.length);
  draw(new Images(row, shown.length + n, height, imageWidth, channels, shown.length + n));
  status(`${model.backend}: ${kind === 'inpaint' ? `original | masked | ${n} inpaintings` : `original | ${n} images at strength ${strength}`}, seed ${seed}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
  document.body.dataset.state = 'done';
}

async function main(): Promise<void> {
  if ('serviceWorker' in navigator && location.protocol !== 'file:') navigator.serviceWorker.register('sw.js').catch(() => {});
  for (const [id, key] of [['seed', 'seed'], ['n', 'n'], ['steps', 'steps']] as const) if (params.has(key)) $<HTMLInputElement>(id).value = params.get(key)!;
  const samplerSelect = $<HTMLSelectElement>('sampler');
  for (const name of SAMPLERS) samplerSelect.add(new Option(name, name));
  status('loading the model');
  const backend = (params.get('backend') ?? 'auto') as (typeof BROWSER_BACKENDS)[number];
  const w = Number(params.get('guidance'));
  const model = await loadModel('./', { backend, ...(params.has('guidance') && w > 0 ? { guidance: w } : {}) });
  const recorded = model.record.sampling;
  samplerSelect.value = params.get('sampler') ?? recorded.sampler;
  if (!params.has('steps') && recorded.steps) $<HTMLInputElement>('steps').value = String(recorded.steps);
  $('info').textContent = describe(model);
  classControls(model);
  editControls(model);
  document.body.dataset.backend = model.backend;
  status(`ready on ${model.backend}`);
  document.body.dataset.state = 'ready';
  $<HTMLButtonElement>('run').onclick = () => void sample(model).catch(fail);
  $<HTMLButtonElement>('save').onclick = () =>
    $<HTMLCanvasElement>('grid').toBlob((blob) => {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob!);
      a.download = `diffuse-seed-${$<HTMLInputElement>('seed').value}.png`;
      a.click();
    });
  if (params.get('autorun') === '1') await sample(model);
}

function fail(e: unknown): void {
  status(`error: ${e instanceof Error ? e.message : String(e)}`);
  document.body.dataset.state = 'error';
}

main().catch(fail);
