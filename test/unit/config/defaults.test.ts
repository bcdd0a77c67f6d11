/** The defaults table is what runs get and what `--help` says. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULTS, RECIPES, UnetArchitecture, recipeFor, unetArchitecture, unetDefaultText } from '../../../src/config/defaults';
import { resolveNewRun } from '../../../src/config/resolve';
import { samplerSettings } from '../../../src/config/sampling';
import { trainCommand } from '../../../src/cli/commands/train';

const help = trainCommand(() => {}).helpInformation().replace(/\s+/g, ' ');
const FLAGS: Record<string, keyof UnetArchitecture> = { '--base-channels': 'baseChannels', '--channel-mults': 'channelMults', '--blocks': 'blocksPerStage', '--patch-size': 'patchSize', '--attention': 'attentionResolutions' };

test("a new U-net run gets the table's shape for its image size, and `train --help` says so", () => {
  const mnist32 = resolveNewRun('default', { model: 'unet' }).model;
  assert.equal(mnist32.kind, 'unet');
  for (const [flag, field] of Object.entries(FLAGS)) {
    assert.deepEqual(mnist32.kind === 'unet' && mnist32[field], unetArchitecture(32)[field], field);
    const said = help.slice(help.indexOf(flag)).match(/\(default: ([^)]*)\)/)?.[1];
    assert.equal(said, unetDefaultText(field), flag);
    const shown = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));
    assert.ok(said!.startsWith(`${shown(unetArchitecture(32)[field])} `) || said === shown(unetArchitecture(32)[field]), `${flag}: ${said}`);
  }
  // the MNIST-32 net has two blocks and 1,2,6; the 64-px net one block and four stages
  assert.match(unetDefaultText('blocksPerStage'), /^2 below 64 px, 1 from 64 px$/);
  assert.match(unetDefaultText('channelMults'), /^1,2,6 below 64 px, 1,2,2,4 from 64 px$/);
});

test('a new run takes every other default from the table', () => {
  const fc = resolveNewRun('default', {});
  assert.equal(fc.model.kind, 'fc-unet');
  assert.equal(fc.model.kind === 'fc-unet' && fc.model.width, DEFAULTS.width);
  assert.equal(fc.data.dataset, DEFAULTS.data.fc);
  assert.deepEqual({ ...fc.schedule }, { kind: 'linear', ...DEFAULTS.schedule, prediction: RECIPES.default.prediction });
  assert.deepEqual(fc.training.optimizer, { kind: 'adam', lr: RECIPES.default.lr, ...DEFAULTS.adam });
  assert.equal(fc.training.seed, DEFAULTS.seed);
  assert.equal(fc.data.limit, DEFAULTS.limit);
  const unet = resolveNewRun('default', { model: 'unet' });
  const recipe = recipeFor('default', 'unet', 32);
  assert.equal(unet.data.dataset, DEFAULTS.data.unet);
  assert.equal(unet.training.batchSize, recipe.batchSize);
  assert.equal(unet.training.ema, recipe.ema);
  assert.deepEqual(unet.sampling, { clipDenoised: recipe.clipDenoised, sampler: recipe.sampler, steps: recipe.steps });
  assert.match(help, new RegExp(`--batch-size <n> images per optimizer step \\(default recipe: ${RECIPES.default.batchSize}, ${recipe.batchSize} for unet; seed: ${RECIPES.seed.batchSize}\\)`));
  for (const size of [32, 64]) {
    const run = resolveNewRun('default', { model: 'unet', data: size === 64 ? 'test-images' : 'mnist32', ...(size === 64 ? { imageSize: 64 } : {}) });
    const r = recipeFor('default', 'unet', size);
    assert.deepEqual([run.training.weighting.kind, run.training.levels.kind], [r.weighting, r.levels], `${size} px`);
    if (run.training.weighting.kind === 'min-snr') assert.equal(run.training.weighting.gamma, DEFAULTS.weighting.minSnrGamma);
  }
  assert.equal(resolveNewRun('seed', { model: 'unet' }).training.weighting.kind, RECIPES.seed.weighting);
  const weighting = recipeFor('default', 'unet', 64).weighting;
  assert.ok(help.includes(`--weighting <kind>`) && help.includes(`(default recipe: ${RECIPES.default.weighting}`), 'help names the weighting default');
  assert.ok(help.includes(weighting), `help names ${weighting}`);
});

test("the sampler settings fill DDIM's eta and DPM-Solver++'s spacing from the table, and only theirs", () => {
  const record = resolveNewRun('default', {});
  assert.deepEqual(samplerSettings(record), { sampler: 'ddim', steps: 100, eta: DEFAULTS.sampling.eta, clipDenoised: false });
  assert.deepEqual(samplerSettings(record, { sampler: 'dpmpp-2m' }), { sampler: 'dpmpp-2m', steps: DEFAULTS.sampling.usualSteps['dpmpp-2m'], spacing: DEFAULTS.sampling.spacing, clipDenoised: false });
  assert.deepEqual(samplerSettings(record, { sampler: 'ancestral' }), { sampler: 'ancestral', clipDenoised: false });
});
