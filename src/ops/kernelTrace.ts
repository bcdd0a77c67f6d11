/**
 * Record once, replay: the kernels a tensor function runs, recorded on its first call with each input's
 * origin (an argument, a variable, a constant made during the call, an earlier kernel's output), then
 * called directly on later calls with arguments of the same shapes, past tfjs's engine: no op-level
 * shape logic, tape checks, scopes or tensor bookkeeping, which were ~15% of a U-net training step on
 * one thread and are paid again by every thread of a data-parallel step (docs/backends.md). The same
 * kernels run on the same inputs in the same order, so results are bit for bit those of the function;
 * intermediates are freed at their last use.
 *
 * Only for functions whose kernels depend on nothing but their arguments' shapes (no values read back,
 * no random draws) and backends whose kernels are plain functions of their inputs: the `blas` backend.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Where a kernel's input comes from. */
type Origin = { kind: 'arg'; index: number } | { kind: 'variable'; variable: tf.Variable } | { kind: 'constant'; info: tf.TensorInfo } | { kind: 'output'; slot: number };

interface Step {
  kernel: tf.KernelFunc;
  /** Input names and origins; `list` where the kernel takes an array (Concat). */
  inputs: [string, Origin][];
  list: boolean;
  attrs: tf.NamedAttrMap;
  /** Slots of the kernel's outputs, in order. */
  outputs: number[];
  /** Slots whose last reader is this step: freed after it. */
  frees: number[];
}

type Engine = { runKernel: (name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) => tf.Tensor | tf.Tensor[]; makeTensor: (...args: unknown[]) => tf.Tensor };

let recording = false;

export class KernelTrace {
  private constructor(
    /** The backend instance it was recorded on: its kernels' outputs and its constants live there. */
    private readonly backend: tf.KernelBackend,
    private readonly steps: Step[],
    private readonly slots: number,
    /** The function's results, by origin. */
    private readonly results: Origin[],
    private readonly constants: tf.TensorInfo[],
  ) {}

  /**
   * Runs fn through tfjs, recording its kernels: the results, and the trace (null where fn read a
   * tensor that is none of args, a variable, or made during the call: replaying would freeze it).
   */
  static record(args: tf.Tensor[], fn: () => tf.Tensor[]): { results: tf.Tensor[]; trace: KernelTrace | null } {
    if (recording) return { results: fn(), trace: null };
    const engine = tf.engine() as unknown as Engine;
    const constants: tf.TensorInfo[] = [];
    // Tensors made during the call (tf.tensor(), tf.scalar(), ones(): values known before it) are
    // constants, copied as first read: a kernel's output may be read only after the kernel ends.
    const made = new Map<tf.Tensor, Origin | null>();
    const calls: { name: string; inputs: [string, tf.Tensor][]; list: boolean; attrs: tf.NamedAttrMap; outputs: tf.Tensor[] }[] = [];
    let traceable = true;
    const { runKernel, makeTensor } = engine;
    engine.makeTensor = function (...a: unknown[]) {
      const t = makeTensor.apply(this, a);
      made.set(t, null);
      return t;
    };
    let depth = 0;
    engine.runKernel = function (name, inputs, attrs) {
      // Within a kernel, tfjs's engine runs only Identity (copies of what a gradient will read, each a
      // kernel of its own on replay); any other kernel run inside one would run twice on replay.
      if (depth > 0 && name !== 'Identity') traceable = false;
      const call = { name, inputs: Object.entries(inputs).filter((e): e is [string, tf.Tensor] => e[1] != null), list: Array.isArray(inputs), attrs, outputs: [] as tf.Tensor[] };
      calls.push(call);
      for (const [, t] of call.inputs) {
        if (made.get(t) !== null) continue;
        const info: tf.TensorInfo = { dataId: tf.backend().write(t.dataSync().slice(), t.shape, t.dtype), shape: t.shape, dtype: t.dtype };
        constants.push(info);
        made.set(t, { kind: 'constant', info });
      }
      depth++;
      try {
        const out = runKernel.call(this, name, inputs, attrs);
        call.outputs = Array.isArray(out) ? out : [out];
        return out;
      } finally {
        depth--;
      }
    };
    recording = true;
    let results: tf.Tensor[];
    try {
      results = fn();
    } finally {
      recording = false;
      engine.runKernel = runKernel;
      engine.makeTensor = makeTensor;
    }
    const origins = new Map<tf.Tensor, Origin>();
    args.forEach((t, index) => origins.set(t, { kind: 'arg', index }));
    let slots = 0;
    for (const call of calls) for (const t of call.outputs) origins.set(t, { kind: 'output', slot: slots++ });
    const originOf = (t: tf.Tensor): Origin | null => origins.get(t) ?? (t instanceof tf.Variable ? { kind: 'variable', variable: t } : made.get(t) ?? null);
    const steps: Step[] = [];
    for (const call of calls) {
      const inputs = call.inputs.map(([name, t]) => [name, originOf(t)] as [string, Origin | null]);
      if (inputs.some(([, o]) => o === null)) traceable = false; // a tensor from outside: replaying would freeze it
      const first = (origins.get(call.outputs[0]) as { slot: number } | undefined)?.slot ?? 0;
      steps.push({ kernel: tf.getKernel(call.name, tf.getBackend())!.kernelFunc, inputs: inputs as [string, Origin][], list: call.list, attrs: call.attrs, outputs: call.outputs.map((_, i) => first + i), frees: [] });
    }
    const resultOrigins = results.map(originOf);
    if (!traceable || resultOrigins.some((o) => o === null)) {
      for (const info of constants) tf.backend().disposeData(info.dataId);
      return { results, trace: null };
    }
    // Each slot is freed after its last reader (or its own step, where nothing reads it), unless it is a result.
    const kept = new Set(resultOrigins.flatMap((o) => (o!.kind === 'output' ? [o!.slot] : [])));
    const lastReader = new Array<number>(slots);
    steps.forEach((step, k) => {
      for (const slot of step.outputs) lastReader[slot] = k;
      for (const [, o] of step.inputs) if (o.kind === 'output') lastReader[o.slot] = k;
    });
    lastReader.forEach((k, slot) => {
      if (!kept.has(slot)) steps[k].frees.push(slot);
    });
    return { results, trace: new KernelTrace(tf.backend(), steps, slots, resultOrigins as Origin[], constants) };
  }

  /** fn's results for these arguments (of the recorded shapes), as tensors of the current scope. */
  run(args: tf.Tensor[]): tf.Tensor[] {
    const backend = tf.backend();
    if (backend !== this.backend) throw new Error('a kernel trace runs only on the backend it was recorded on');
    const values = new Array<tf.TensorInfo | undefined>(this.slots);
    const valueOf = (o: Origin): tf.TensorInfo => {
      switch (o.kind) {
        case 'arg':
          return args[o.index];
        case 'variable':
          return o.variable;
        case 'constant':
          return o.info;
        case 'output':
          return values[o.slot]!;
      }
    };
    for (const step of this.steps) {
      let inputs: tf.NamedTensorMap | tf.TensorInfo[];
      if (step.list) inputs = step.inputs.map(([, o]) => valueOf(o));
      else {
        inputs = {};
        for (const [name, o] of step.inputs) (inputs as Record<string, tf.TensorInfo>)[name] = valueOf(o);
      }
      const out = step.kernel({ inputs: inputs as tf.NamedTensorMap, backend, attrs: step.attrs });
      const outs = Array.isArray(out) ? out : [out];
      for (let i = 0; i < outs.length; i++) values[step.outputs[i]] = outs[i];
      for (const slot of step.frees) {
        backend.disposeData(values[slot]!.dataId);
        values[slot] = undefined;
      }
    }
    // A slot that is two results (one gradient for two weights) becomes one tensor, as it was one.
    const made = new Map<Origin, tf.Tensor>();
    const engine = tf.engine() as unknown as { makeTensorFromTensorInfo(info: tf.TensorInfo, backend: tf.KernelBackend): tf.Tensor };
    return this.results.map((o) => {
      if (o.kind === 'arg') return args[o.index];
      if (o.kind === 'variable') return o.variable;
      let t = made.get(o);
      if (!t) {
        const info = valueOf(o);
        if (o.kind === 'constant') backend.incRef(info.dataId);
        t = engine.makeTensorFromTensorInfo(info, backend);
        made.set(o, t);
      }
      return t;
    });
  }

  dispose(): void {
    for (const info of this.constants) this.backend.disposeData(info.dataId);
    this.constants.length = 0;
  }
}

/**
 * Traces of one function, by its arguments' shapes (so one cache per function): the first call with
 * new shapes runs through tfjs and records, later ones replay. Calls run through tfjs unchanged where
 * the active backend is not `blas` (whose kernels are known to be plain functions of their inputs), a
 * gradient is being recorded (the tape needs the ops), or a trace is being recorded.
 */
export class TraceCache {
  private readonly traces = new Map<string, KernelTrace | null>();
  private backend: tf.KernelBackend | null = null;

  constructor(
    /** Shapes kept at once (a sampler's batch and its last, smaller one; a trainer's shares). */
    private readonly limit = 4,
  ) {}

  run(args: tf.Tensor[], fn: () => tf.Tensor[]): tf.Tensor[] {
    if (tf.getBackend() !== 'blas' || tf.engine().isTapeOn() || recording) return fn();
    const key = args.map((t) => `${t.dtype}[${t.shape}]`).join();
    if (this.traces.size > 0 && this.backend !== tf.backend()) this.dispose(); // blas registered again: a new instance
    this.backend = tf.backend();
    const known = this.traces.get(key);
    if (known) return known.run(args);
    if (known === null) return fn();
    const { results, trace } = KernelTrace.record(args, fn);
    if (this.traces.size >= this.limit) {
      const [oldest, old] = this.traces.entries().next().value as [string, KernelTrace | null];
      old?.dispose();
      this.traces.delete(oldest);
    }
    this.traces.set(key, trace);
    return results;
  }

  dispose(): void {
    for (const trace of this.traces.values()) trace?.dispose();
    this.traces.clear();
  }
}
