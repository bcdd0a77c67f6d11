/** The `blas` backend's convolution kernels over native/conv*.c (Conv2D, its two gradients, FusedConv2D with a bias). */
import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon } from '../addon';
import { BlasBackend, cpuValues } from '../bufferPool';

/**
 * tfjs's computeConv2DInfo, kept by its arguments: it is JavaScript work at every call (twice for a
 * fused convolution), and a model runs the same few shapes at every step.
 */
const convInfos = new Map<string, tf.backend_util.Conv2DInfo>();
function conv2DInfo(inShape: [number, number, number, number], filterShape: [number, number, number, number], attrs: ConvAttrs): tf.backend_util.Conv2DInfo {
  const key = JSON.stringify([inShape, filterShape, attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode ?? null]);
  let info = convInfos.get(key);
  if (!info) {
    info = tf.backend_util.computeConv2DInfo(inShape, filterShape, attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
    if (convInfos.size >= 1024) convInfos.clear();
    convInfos.set(key, info);
  }
  return info;
}

/** The geometry the native conv takes, from tfjs's own computation of it. */
function convGeometry(info: tf.backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left,
    info.dilationHeight, info.dilationWidth,
  ]);
}

interface ConvAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape?: number[];
  filterShape?: number[];
}

/**
 * Conv2D and its two gradients (which wasm lacks and the cpu backend runs as plain loops) in the addon:
 * direct loops for stride 1, else im2col + sgemm; NCHW goes to the cpu kernels.
 */
export function convKernel(native: NativeAddon, mode: 0 | 1 | 2, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const attrs = args.attrs as unknown as ConvAttrs;
    const inputs = args.inputs as Record<string, tf.TensorInfo>;
    if (attrs.dataFormat === 'NCHW' || Object.values(inputs).some((t) => t.dtype !== 'float32')) return fallback(args);
    const cpu = args.backend as BlasBackend;
    const [first, second] = mode === 0 ? [inputs.x, inputs.filter] : mode === 1 ? [inputs.dy, inputs.filter] : [inputs.x, inputs.dy];
    const inShape = (mode === 1 ? attrs.inputShape! : inputs.x.shape) as [number, number, number, number];
    const filterShape = (mode === 2 ? attrs.filterShape! : inputs.filter.shape) as [number, number, number, number];
    const info = conv2DInfo(inShape, filterShape, attrs);
    const outShape = mode === 0 ? info.outShape : mode === 1 ? inShape : filterShape;
    const out = cpu.allocate(tf.util.sizeFromShape(outShape));
    const bias = mode === 0 && inputs.bias ? [cpuValues(cpu, inputs.bias)] : []; // FusedConv2D's (below)
    native.conv(mode, convGeometry(info), cpuValues(cpu, first), cpuValues(cpu, second), out, ...bias);
    return cpu.makeTensorInfo(outShape, 'float32', out);
  };
}

/**
 * A convolution with its bias (tfjs's FusedConv2D without an activation): the native convolution adds
 * the bias as the Winograd tiles store their outputs (other paths: one pass after), instead of a second
 * kernel with an output of its own. The bias may be one per channel [c], per image and channel
 * [b, 1, 1, c] (the U-net's time embedding), or of the output's shape (a residual); tfjs's gradient of a
 * fused bias sums over its broadcast axes, so all three differentiate. Else the cpu kernel.
 */
export function fusedConvKernel(native: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  const conv = convKernel(native, 0, fallback);
  return (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { activation, dataFormat } = args.attrs as unknown as { activation?: string; dataFormat?: string };
    const plain = !preluActivationWeights && (activation === undefined || activation === 'linear') && dataFormat !== 'NCHW';
    if (!plain || !x || !filter || !bias || bias.dtype !== 'float32' || x.dtype !== 'float32' || filter.dtype !== 'float32') return fallback(args);
    const attrs = args.attrs as unknown as ConvAttrs;
    const { outShape } = conv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number], attrs);
    const [batch, , , channels] = outShape;
    const perChannel = bias.shape.length === 1 && bias.shape[0] === channels;
    const perImage = tf.util.arraysEqual(bias.shape, [batch, 1, 1, channels]);
    if (!perChannel && !perImage && !tf.util.arraysEqual(bias.shape, outShape)) return fallback(args);
    return conv({ ...args, inputs: { x, filter, bias } }) as tf.TensorInfo;
  };
}
