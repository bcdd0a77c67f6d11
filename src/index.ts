/**
 * diffuse for programs (Node): `const { loadModel } = require('diffuse')`, then
 * `const model = await loadModel('checkpoints'); const images = await model.sample({ n: 16, seed: 1 });`.
 * The browser's module is written by `diffuse export --web` (diffuse.mjs; src/api/browser.ts).
 */
export { loadModel, NodeModel, NodeImages } from './api/node';
export type { LoadOptions } from './api/node';
export { DiffusionModel, Images } from './api/model';
export type { SampleOptions, DenoiseOptions, DrawSettings, SamplingStep, SamplerName, Spacing, RunRecord } from './api/model';
export { UserError, OptionError, CheckpointError, UnsupportedModelError } from './errors';
export { BACKENDS } from './backend/select';
export type { BackendChoice } from './backend/select';
