/**
 * The attention-augmented convolutional U-net (Ho et al. 2020, as lucidrains/denoising-diffusion-pytorch
 * lays it out): a 3×3 input convolution; per stage, residual blocks (GroupNorm, SiLU, 3×3 convolution,
 * twice, with the time embedding added in between) followed by self-attention at the chosen
 * resolutions, then a 2× downsampling; a middle of block, attention, block; the mirror image upwards,
 * each block taking the matching down block's output as a skip input; a last block that also takes the
 * input convolution's output; 3×3 convolution out.
 */
import { UserError } from '../errors';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../rng';
import { variableFrom } from '../tensors';
import { Denoiser, UnetConfig, classOneHot, imageSize } from './denoiser';
import { conv2d, depthToSpace, fusesAddends, groupNorm, selfAttention, silu, spaceToDepth, timestepEmbedding, upsampleNearest } from './convLayers';
import { dense } from './layers';
import { AttentionBlockWeights, ResidualBlockWeights, attentionBlock, residualBlock } from './unetBlocks';

/** The 32-px shape of the PyTorch twin (../shared/reference/torch_unet_ddpm.py), which the bench times: 0.53 M parameters. */
export const TWIN_32 = { baseChannels: 16, channelMults: [1, 2, 4], blocksPerStage: 1, patchSize: 1, attentionResolutions: [8] } satisfies Partial<UnetConfig>;

export function validateUnetConfig(c: UnetConfig): void {
  const fail = (why: string) => {
    throw new UserError(`invalid U-net: ${why}`);
  };
  if (c.height !== c.imageWidth) fail(`images must be square, not ${c.height}x${c.imageWidth}`);
  if (c.channelMults.length < 1) fail('at least one stage is needed');
  if (!Number.isInteger(c.patchSize) || c.patchSize < 1) fail(`the patch size must be a positive integer, not ${c.patchSize}`);
  if (c.height % c.patchSize !== 0) fail(`${c.height} px cannot be cut into ${c.patchSize}x${c.patchSize} patches`);
  const factor = 2 ** (c.channelMults.length - 1);
  if ((c.height / c.patchSize) % factor !== 0) fail(`${c.height / c.patchSize} px${c.patchSize > 1 ? ` (${c.height} px in ${c.patchSize}x${c.patchSize} patches)` : ''} cannot be halved ${c.channelMults.length - 1} times`);
  for (const m of c.channelMults) {
    const ch = c.baseChannels * m;
    if (!Number.isInteger(m) || m < 1) fail(`channel multipliers must be positive integers, not ${m}`);
    if (ch % c.groups !== 0) fail(`${c.groups} groups do not divide ${ch} channels`);
    if (ch % c.heads !== 0) fail(`${c.heads} heads do not divide ${ch} channels`);
  }
  if (c.baseChannels % 2 !== 0) fail('base channels must be even (the time embedding has sines and cosines)');
  if (!Number.isInteger(c.blocksPerStage) || c.blocksPerStage < 1) fail('at least one block per stage is needed');
  // attention is asked for by a stage's side: a side no stage has would silently mean no attention
  const sides = c.channelMults.map((_, s) => c.height / c.patchSize / 2 ** s);
  const nowhere = c.attentionResolutions.filter((r) => !sides.includes(r));
  if (nowhere.length > 0) fail(`no stage is ${nowhere.join(' or ')} px for attention; this net's stages are ${sides.join(', ')} px${c.patchSize > 1 ? ` (in ${c.patchSize}x${c.patchSize} patches)` : ''}`);
}

type Init = 'fan-in' | 'ones' | 'zeros';

export class ConvUnet implements Denoiser {
  readonly config: UnetConfig;
  readonly variables = new Map<string, tf.Variable>();
  /** Draws the initial weights while the constructor's first pass declares them; null afterwards. */
  private init: Rng | null;

  constructor(config: UnetConfig, rng: Rng) {
    validateUnetConfig(config);
    this.config = config;
    this.init = rng;
    // One pass on a dummy image declares every weight, in the order the forward pass uses them.
    tf.tidy(() => {
      this.predict(tf.zeros([1, imageSize(config)]), tf.zeros([1]));
    });
    this.init = null;
  }

  /** The weight `name`, created on the first pass: PyTorch's default U(±1/√fan_in), or ones, or zeros. */
  private param<R extends tf.Rank>(name: string, shape: number[], init: Init, fanIn = 1): tf.Tensor<R> {
    let v = this.variables.get(name);
    if (!v) {
      if (!this.init) throw new Error(`weight ${name} was not declared`);
      const rng = this.init;
      const size = shape.reduce((a, b) => a * b, 1);
      const bound = 1 / Math.sqrt(fanIn);
      const values = init === 'fan-in' ? Float32Array.from({ length: size }, () => (2 * rng.uniform() - 1) * bound) : new Float32Array(size).fill(init === 'ones' ? 1 : 0);
      v = variableFrom(values, shape, true);
      this.variables.set(name, v);
    }
    return v as unknown as tf.Tensor<R>;
  }

  private conv(x: tf.Tensor4D, name: string, cout: number, k = 3): tf.Tensor4D {
    return conv2d(x, ...this.convWeights(name, k, x.shape[3], cout));
  }

  /** A k×k convolution's filter and bias. */
  private convWeights(name: string, k: number, cin: number, cout: number): [tf.Tensor4D, tf.Tensor1D] {
    const fanIn = k * k * cin;
    return [this.param(`${name}/kernel`, [k, k, cin, cout], 'fan-in', fanIn), this.param(`${name}/bias`, [cout], 'fan-in', fanIn)];
  }

  private linear(x: tf.Tensor2D, name: string, out: number): tf.Tensor2D {
    const { kernel, bias } = this.linearWeights(name, x.shape[1], out);
    return dense(x, kernel, bias);
  }

  /** A dense layer's [in, out] kernel and bias. */
  private linearWeights(name: string, cin: number, out: number): { kernel: tf.Tensor2D; bias: tf.Tensor1D } {
    return { kernel: this.param(`${name}/kernel`, [cin, out], 'fan-in', cin), bias: this.param(`${name}/bias`, [out], 'fan-in', cin) };
  }

  /** GroupNorm, then SiLU where `thenSilu` (one fused kernel on blas). */
  private norm(x: tf.Tensor4D, name: string, thenSilu = false): tf.Tensor4D {
    const { gamma, beta } = this.normWeights(name, x.shape[3]);
    return groupNorm(x, this.config.groups, gamma, beta, thenSilu);
  }

  /** A GroupNorm's scale γ (ones) and offset β (zeros) over c channels. */
  private normWeights(name: string, c: number): { gamma: tf.Tensor1D; beta: tf.Tensor1D } {
    return { gamma: this.param(`${name}/gamma`, [c], 'ones'), beta: this.param(`${name}/beta`, [c], 'zeros') };
  }

  /**
   * `time`: SiLU of the time embedding (the same for every block). Where the backend adds a bias per
   * image or of the output's shape as a convolution stores its outputs (blas), the block is
   * residualBlock(): the time shift in conv1's bias, conv2's output in the skip convolution's, and one
   * operation on the gradient tape. Elsewhere, op by op.
   */
  private resBlock(x: tf.Tensor4D, time: tf.Tensor2D, name: string, cout: number): tf.Tensor4D {
    if (fusesAddends()) return residualBlock(x, time, this.resBlockWeights(name, x.shape[3], cout, time.shape[1]), this.config.groups);
    const normed = this.norm(x, `${name}/norm1`, true);
    const [w1, b1] = this.convWeights(`${name}/conv1`, 3, x.shape[3], cout);
    const shift = tf.reshape(this.linear(time, `${name}/time`, cout), [-1, 1, 1, cout]) as tf.Tensor4D;
    let h = tf.add<tf.Tensor4D>(conv2d(normed, w1, b1), shift);
    h = this.norm(h, `${name}/norm2`, true);
    const [w2, b2] = this.convWeights(`${name}/conv2`, 3, cout, cout);
    if (x.shape[3] === cout) return tf.add<tf.Tensor4D>(conv2d(h, w2, b2), x);
    const [ws, bs] = this.convWeights(`${name}/skip`, 1, x.shape[3], cout);
    return tf.add<tf.Tensor4D>(conv2d(h, w2, b2), conv2d(x, ws, bs));
  }

  /** A residual block's weights, declared in the order the block uses them (as the op-by-op path does). */
  private resBlockWeights(name: string, cin: number, cout: number, timeChannels: number): ResidualBlockWeights {
    const conv = (part: string, k: number, ci: number) => {
      const [kernel, bias] = this.convWeights(`${name}/${part}`, k, ci, cout);
      return { kernel, bias };
    };
    const norm1 = this.normWeights(`${name}/norm1`, cin);
    const conv1 = conv('conv1', 3, cin);
    const time = this.linearWeights(`${name}/time`, timeChannels, cout);
    const norm2 = this.normWeights(`${name}/norm2`, cout);
    const conv2 = conv('conv2', 3, cout);
    return { norm1, conv1, time, norm2, conv2, ...(cin === cout ? {} : { skip: conv('skip', 1, cin) }) };
  }

  private attention(x: tf.Tensor4D, name: string): tf.Tensor4D {
    const c = x.shape[3];
    const norm = this.normWeights(`${name}/norm`, c);
    const kernel = (part: string) => this.param<tf.Rank.R2>(`${name}/${part}/kernel`, [c, c], 'fan-in', c);
    const weights: AttentionBlockWeights = { norm, q: kernel('q'), k: kernel('k'), v: kernel('v'), out: this.linearWeights(`${name}/out`, c, c) };
    if (fusesAddends()) return attentionBlock(x, weights, this.config.groups, this.config.heads);
    const normed = groupNorm(x, this.config.groups, norm.gamma, norm.beta);
    return tf.add(x, selfAttention(normed, this.config.heads, { q: weights.q, k: weights.k, v: weights.v, out: weights.out.kernel, outBias: weights.out.bias }));
  }

  predict(x: tf.Tensor2D, tFrac: tf.Tensor1D, labels?: tf.Tensor1D): tf.Tensor2D {
    const { height, imageWidth, channels, patchSize, baseChannels, channelMults, blocksPerStage, attentionResolutions, classes } = this.config;
    return tf.tidy(() => {
      const batch = x.shape[0];
      // The model sees t/T like the FC net; the sinusoids want the step's scale, so ×1000.
      const sinusoids = timestepEmbedding(tf.mul(tFrac, 1000), baseChannels);
      let embedding = this.linear(silu(this.linear(sinusoids, 'time/dense1', 4 * baseChannels)), 'time/dense2', 4 * baseChannels);
      // a conditional net adds its class's learned vector to the time embedding (as lucidrains' and diffusers' do)
      if (classes > 0) embedding = tf.add(embedding, tf.matMul(classOneHot(labels, batch, classes), this.param<tf.Rank.R2>('class/embedding', [classes + 1, 4 * baseChannels], 'fan-in', 1)));
      const time = silu(embedding); // every block's projection reads SiLU(embedding): computed once here

      const image = tf.reshape(x, [batch, height, imageWidth, channels]) as tf.Tensor4D;
      let h = this.conv(patchSize > 1 ? spaceToDepth(image, patchSize) : image, 'init', baseChannels);
      const initial = h; // joins the last block again, as in lucidrains' U-net: a short path from input to output
      const skips: tf.Tensor4D[] = [];
      // Each block in a tidy of its own: its intermediate tensors go back to the backend's buffer pool as
      // the block ends (the tape keeps what the gradient needs), so a pass without gradients holds one
      // block's intermediates at a time, not the whole net's, and the next block reuses their buffers.
      const block = (f: () => tf.Tensor4D) => tf.tidy(f);
      channelMults.forEach((mult, stage) => {
        for (let i = 0; i < blocksPerStage; i++) {
          h = block(() => this.resBlock(h, time, `down${stage}/block${i}`, baseChannels * mult));
          if (attentionResolutions.includes(h.shape[1])) h = block(() => this.attention(h, `down${stage}/attn${i}`));
          skips.push(h);
        }
        if (stage < channelMults.length - 1) h = block(() => this.conv(spaceToDepth(h), `down${stage}/downsample`, h.shape[3], 1));
      });
      const midChannels = baseChannels * channelMults[channelMults.length - 1];
      h = block(() => this.resBlock(h, time, 'mid/block1', midChannels));
      h = block(() => this.attention(h, 'mid/attn'));
      h = block(() => this.resBlock(h, time, 'mid/block2', midChannels));
      for (let stage = channelMults.length - 1; stage >= 0; stage--) {
        for (let i = 0; i < blocksPerStage; i++) {
          h = block(() => this.resBlock(tf.concat([h, skips.pop()!], 3), time, `up${stage}/block${i}`, baseChannels * channelMults[stage]));
          if (attentionResolutions.includes(h.shape[1])) h = block(() => this.attention(h, `up${stage}/attn${i}`));
        }
        if (stage > 0) h = block(() => this.conv(upsampleNearest(h), `up${stage}/upsample`, h.shape[3]));
      }
      h = block(() => this.resBlock(tf.concat([h, initial], 3), time, 'final/block', baseChannels));
      const out = this.conv(this.config.outputNorm ? this.norm(h, 'out/norm', true) : h, 'out/conv', channels * patchSize * patchSize);
      return tf.reshape(patchSize > 1 ? depthToSpace(out, patchSize) : out, [batch, height * imageWidth * channels]);
    });
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
  }
}
