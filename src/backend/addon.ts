/**
 * The optional native addon (native/*.c over OpenBLAS), built by `npm ci` where a C compiler
 * and OpenBLAS are present. Everything works without it; it is what makes training fast on the CPU.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface NativeAddon {
  /** The instruction set of the kernels chosen at load time: avx512, avx2 or generic (native/isa.h; DIFFUSE_ISA forces one). */
  readonly isa: string;
  /** c[m×n] = op(a)·op(b) (+ bias on every row), row-major; op transposes when the flag is set. */
  /** c = op(a)·op(b) (+ bias per row); with `batches`, that many products, the i-th from a + i·strideA and b + i·strideB (0 broadcasts) into c + i·m·n. */
  sgemm(transA: boolean, transB: boolean, m: number, n: number, k: number, a: Float32Array, b: Float32Array, c: Float32Array, bias?: Float32Array | null, batches?: number, strideA?: number, strideB?: number): void;
  /** One Adam update in place of every parameter ps[i] with its gradient gs[i] and moments ms[i], vs[i] (torch.optim.Adam's formula). */
  adam(ps: Float32Array[], gs: Float32Array[], ms: Float32Array[], vs: Float32Array[], lr: number, beta1: number, beta2: number, eps: number, correction1: number, correction2: number): void;
  /** shadow ← d·shadow + (1 − d)·p in place. */
  lerp(shadow: Float32Array, p: Float32Array, d: number): void;
  /** y = LayerNorm(GELU(x))·γ + β over rows of `cols`; saves the normalized x̂ and each row's 1/σ. */
  geluLayerNorm(x: Float32Array, gamma: Float32Array, beta: Float32Array, rows: number, cols: number, y: Float32Array, xhat: Float32Array, rstd: Float32Array): void;
  /** Gradients of geluLayerNorm with respect to x, γ and β. */
  geluLayerNormGrad(dy: Float32Array, x: Float32Array, xhat: Float32Array, gamma: Float32Array, rstd: Float32Array, rows: number, cols: number, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array): void;
  /** out[c] = Σ_r x[r, c]. */
  columnSums(x: Float32Array, rows: number, cols: number, out: Float32Array): void;
  /**
   * out = a op b (op 0 add, 1 subtract, 2 multiply), b of out's length, 1, or a divisor of it that
   * repeats (a broadcast row); with `swap`, b op a. With `outer`, out is [outer, middle, inner] and b
   * [outer, inner], repeated over the middle.
   */
  binary(op: 0 | 1 | 2, a: Float32Array, b: Float32Array, out: Float32Array, swap: boolean, outer?: number): void;
  /** out[o, i] = Σ_m x[o, m, i] for x as [outer, middle, inner]. */
  middleSums(x: Float32Array, outer: number, middle: number, inner: number, out: Float32Array): void;
  /**
   * An NHWC convolution: for stride 1 and channels in multiples of 16, Winograd F(4x4, 3x3) tiles (3x3,
   * 8+ input channels; DIFFUSE_WINOGRAD=2 for 2x2 tiles, =0 off) or direct loops; else im2col + sgemm
   * (mode 0: y from x and filter; 1: dx from dy and filter; 2: dfilter from x and dy); geom = batch,
   * inH, inW, inC, outH, outW, outC, kH, kW, strides, padTop, padLeft, dilations.
   */
  conv(mode: 0 | 1 | 2, geom: Int32Array, a: Float32Array, b: Float32Array, out: Float32Array, bias?: Float32Array): void;
  /** GroupNorm over [batch, pixels, channels] in `groups` groups (then SiLU where `silu`); x̂ (unless xhat is empty) and each (image, group)'s 1/σ kept for the gradient. */
  groupNorm(x: Float32Array, gamma: Float32Array, beta: Float32Array, batch: number, pixels: number, channels: number, groups: number, y: Float32Array, xhat: Float32Array, rstd: Float32Array, silu?: boolean): void;
  /** y = x·σ(x), and its gradient dx from dy and x. */
  silu(x: Float32Array, y: Float32Array): void;
  siluGrad(dy: Float32Array, x: Float32Array, dx: Float32Array): void;
  /** y = softmax of each row of `cols` values, times `scale` (default 1, > 0) first. */
  softmaxRows(x: Float32Array, cols: number, y: Float32Array, scale?: number): void;
  /** dx = the gradient of y = softmax(scale·x) over rows of `cols`, given dy and y. */
  softmaxRowsGrad(dy: Float32Array, y: Float32Array, cols: number, scale: number, dx: Float32Array): void;
  /**
   * Copies a run of `run` values for every index i of the `outer` shape, from srcFirst + Σ i·srcStrides
   * to outFirst + Σ i·outStrides.
   */
  copyRuns(src: Float32Array, srcFirst: number, srcStrides: Int32Array, out: Float32Array, outFirst: number, outStrides: Int32Array, outer: Int32Array, run: number): void;
  /** Nearest-neighbour 2x upsampling of NHWC images x of geometry [batch, height, width, channels] (the input's) into out. */
  upsample2x(x: Float32Array, geometry: Int32Array, out: Float32Array): void;
  /** The gradient of upsample2x: each 2x2 block of dy summed into out (the input's geometry). */
  upsample2xGrad(dy: Float32Array, geometry: Int32Array, out: Float32Array): void;
  /**
   * Multi-head attention o = softmax(scale·q kᵀ) v per head without the attention matrices; q, k, v, o
   * [batch, tokens, channels] (head h in channels h·d..), lse [batch, heads, tokens] the rows' log-sum-exp
   * (for the gradient); geometry [batch, tokens, channels, heads].
   */
  attention(q: Float32Array, k: Float32Array, v: Float32Array, geometry: Int32Array, scale: number, o: Float32Array, lse: Float32Array): void;
  /** The gradient of attention: dq, dk, dv from dO and the forward pass's inputs, output and lse. */
  attentionGrad(dO: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, o: Float32Array, lse: Float32Array, geometry: Int32Array, scale: number, dq: Float32Array, dk: Float32Array, dv: Float32Array): void;
  /** Sets the calling thread's OpenMP team size and OpenBLAS's threads (n ≥ 1); returns the thread's previous team size. */
  setThreads(n: number): number;
  /** The gradient of groupNorm; with `silu`, of GroupNorm then SiLU (beta needed then). */
  groupNormGrad(dy: Float32Array, xhat: Float32Array, gamma: Float32Array, rstd: Float32Array, batch: number, pixels: number, channels: number, groups: number, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, beta?: Float32Array | null, silu?: boolean): void;
}

/** How to get the kernels built: a C compiler and a CBLAS, then the build (in a checkout) or `npm rebuild` (where installed). */
export const NATIVE_BUILD_HINT = nativeBuildHint();

function nativeBuildHint(platform = process.platform, checkout = fs.existsSync(path.join(__dirname, '..', '..', '..', '.git'))): string {
  const build = checkout ? 'npm run build:native' : 'npm rebuild diffuse (-g where installed globally)';
  if (platform === 'darwin') return `xcode-select --install, then ${build}`;
  if (platform === 'linux') return `apt-get install -y build-essential libopenblas-dev (or your distribution's OpenBLAS and C compiler), then ${build}`;
  return `a C compiler and OpenBLAS, then ${build}`;
}

/**
 * OpenBLAS picks its kernels from the CPU model name and falls back to generic SSE3 ones ("Prescott")
 * on CPUs it does not know, such as virtual machines reporting a plain "Intel Xeon Processor": several
 * times slower. Where the user has not chosen, name the core type from the instruction sets the CPU has.
 * And threads of either library that spin after their work would steal the two cores from the other's.
 * These are read when the libraries load, so this runs before the addon is required.
 */
export function tuneNativeEnvironment(env: NodeJS.ProcessEnv = process.env, cpuinfo = readCpuFlags()): void {
  if (!env.OPENBLAS_CORETYPE) {
    if (cpuinfo.has('avx512f') && cpuinfo.has('avx512bw') && cpuinfo.has('avx512vl')) env.OPENBLAS_CORETYPE = 'SkylakeX';
    else if (cpuinfo.has('avx2') && cpuinfo.has('fma')) env.OPENBLAS_CORETYPE = 'Haswell';
  }
  if (!env.OMP_WAIT_POLICY) env.OMP_WAIT_POLICY = 'PASSIVE';
  // OpenBLAS's workers otherwise spin ~0.1 s after each product, starving the OpenMP threads of Adam.
  if (!env.OPENBLAS_THREAD_TIMEOUT) env.OPENBLAS_THREAD_TIMEOUT = '4';
}

function readCpuFlags(): Set<string> {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return new Set(line ? line.split(':')[1].trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/** Every function the TypeScript side calls; the addon is built from the same checkout. */
export const NATIVE_FUNCTIONS = [
  'sgemm', 'adam', 'lerp', 'geluLayerNorm', 'geluLayerNormGrad', 'columnSums', 'binary', 'middleSums',
  'conv', 'groupNorm', 'groupNormGrad', 'silu', 'siluGrad', 'softmaxRows', 'softmaxRowsGrad', 'copyRuns', 'upsample2x',
  'upsample2xGrad', 'attention', 'attentionGrad', 'setThreads',
] as const satisfies readonly (keyof NativeAddon)[];

/** The names of NATIVE_FUNCTIONS that `addon` lacks. */
export function missingNativeFunctions(addon: Record<string, unknown>): string[] {
  return NATIVE_FUNCTIONS.filter((name) => typeof addon[name] !== 'function');
}

interface NativeSources {
  ADDON: string;
  sourcesHash(): string | null;
  builtHash(addon?: string): string | null;
}
// Plain JS in native/, shared with the build script (which runs before the TypeScript is compiled).
const sources = require(path.join(__dirname, '..', '..', '..', 'native', 'sources.js')) as NativeSources;

/**
 * Why the addon at `file` must not be used, or null: it must exist, be built from this checkout's
 * native sources (a build left from another checkout would run other kernels than the tests saw)
 * and have every function.
 */
export function nativeAddonProblem(file: string, load: (file: string) => Record<string, unknown> = require): string | null {
  if (!fs.existsSync(file)) return `${path.relative(process.cwd(), file) || file} not found`;
  const expected = sources.sourcesHash();
  if (expected !== null && sources.builtHash(file) !== expected) return 'the native addon was built from other sources than this checkout\'s native/ (out of date)';
  try {
    const missing = missingNativeFunctions(load(file));
    // A build left from an older checkout: refuse it whole rather than keep JS stand-ins for each kernel.
    return missing.length > 0 ? `the native addon is out of date: it lacks ${missing.join(', ')}` : null;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}

let cached: NativeAddon | null | undefined;
let loadError = '';

/** The addon, or null where it was not built or is out of date (the reason is in nativeLoadError()). */
export function loadNativeAddon(): NativeAddon | null {
  if (cached === undefined) {
    tuneNativeEnvironment();
    // DIFFUSE_NATIVE_ADDON points at another build (for developing the addon while runs use this one).
    const file = process.env.DIFFUSE_NATIVE_ADDON ?? sources.ADDON;
    const problem = nativeAddonProblem(file);
    cached = problem ? null : (require(file) as NativeAddon);
    loadError = problem ?? '';
  }
  return cached;
}

export function nativeLoadError(): string {
  return loadError;
}
