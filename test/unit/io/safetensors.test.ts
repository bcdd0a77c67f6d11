import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSafetensors, encodeSafetensors, SafeTensor } from '../../../src/io/safetensors';
import { fromTorchLayout, fromTorchTensors, toTorchLayout, toTorchTensors, torchName, torchShape } from '../../../src/io/torchWeights';
import { TrainChoices, resolveNewRun } from '../../../src/config/resolve';
import { Rng } from '../../../src/rng';
import { ConvUnet } from '../../../src/models/unet';
import { buildModel } from '../../../src/models/build';
import { RunRecord } from '../../../src/config/runRecord';
import { UnetConfig } from '../../../src/models/denoiser';
import { useBackend } from '../../helpers';

const t = (shape: number[], seed: number): SafeTensor => ({ shape, values: new Rng(seed).fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))) });

/** A file built by hand: header JSON (padded as given) and data bytes. */
function file(header: object | string, data: Uint8Array, pad = 0): Uint8Array {
  const json = Buffer.concat([Buffer.from(typeof header === 'string' ? header : JSON.stringify(header)), Buffer.alloc(pad, 0x20)]);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

test('safetensors: a round trip keeps names, shapes, order, values and metadata; the data starts 8-byte aligned', () => {
  const tensors = new Map([['b.weight', t([3, 5], 1)], ['a.bias', t([7], 2)], ['scalar', t([], 3)], ['empty', { shape: [0, 4], values: new Float32Array(0) }]]);
  const bytes = encodeSafetensors(tensors, { format: 'pt', note: 'é ✓' });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + headerLength) % 8, 0);
  const back = decodeSafetensors(bytes);
  assert.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
  for (const [name, v] of tensors) {
    assert.deepEqual(back.tensors.get(name)!.shape, v.shape);
    assert.deepEqual(back.tensors.get(name)!.values, v.values);
  }
  assert.deepEqual(back.metadata, { format: 'pt', note: 'é ✓' });
  // empty metadata: no __metadata__ key at all
  const plain = decodeSafetensors(encodeSafetensors(new Map([['x', t([2], 4)]])));
  assert.deepEqual(plain.metadata, {});
  // a header padded with more spaces, and a file of no tensors, are valid
  assert.equal(decodeSafetensors(file({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4), 13)).tensors.get('x')!.values[0], 0);
  assert.equal(decodeSafetensors(file({}, new Uint8Array(0))).tensors.size, 0);
});

test('safetensors: F64, F16 and BF16 are read as float32', () => {
  const data = new Uint8Array(8 + 2 + 2);
  const view = new DataView(data.buffer);
  view.setFloat64(0, 1.5, true);
  view.setUint16(8, 0x3c00, true); // 1.0 in half precision
  view.setUint16(10, 0xc040, true); // -3.0 in bfloat16
  const { tensors } = decodeSafetensors(file({ d: { dtype: 'F64', shape: [1], data_offsets: [0, 8] }, h: { dtype: 'F16', shape: [1], data_offsets: [8, 10] }, b: { dtype: 'BF16', shape: [1], data_offsets: [10, 12] } }, data));
  assert.deepEqual([tensors.get('d')!.values[0], tensors.get('h')!.values[0], tensors.get('b')!.values[0]], [1.5, 1, -3]);
});

test('safetensors: truncated, overlapping, holed and malformed files are refused with the reason', () => {
  const good = encodeSafetensors(new Map([['a', t([4], 1)], ['b', t([2], 2)]]));
  const bad = (bytes: Uint8Array, why: RegExp) => assert.throws(() => decodeSafetensors(bytes, 'f.safetensors'), (e: Error) => /f\.safetensors is not a valid safetensors file/.test(e.message) && why.test(e.message));
  bad(good.subarray(0, 5), /too short/);
  bad(good.subarray(0, good.length - 4), /truncated|after the last/);
  const huge = new Uint8Array(good);
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  bad(huge, /header length .* points past the end/);
  const entry = (begin: number, end: number, shape = [1]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });
  bad(file({ a: entry(0, 8, [2]), b: entry(4, 8) }, new Uint8Array(8)), /overlaps/);
  bad(file({ a: entry(4, 8) }, new Uint8Array(8)), /hole before a/);
  bad(file({ a: entry(0, 4) }, new Uint8Array(8)), /4 bytes after the last tensor/);
  bad(file({ a: entry(0, 16, [4]) }, new Uint8Array(8)), /ends at byte 16 of 8/);
  bad(file({ a: entry(0, 8) }, new Uint8Array(8)), /8 bytes for shape \[1\] of F32/);
  bad(file({ a: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /dtype "F8"/);
  bad(file({ a: { dtype: 'I32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /holds I32, not floating-point/);
  bad(file({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), /shape/);
  bad(file({ __metadata__: { n: 3 } }, new Uint8Array(0)), /metadata n is not a string/);
  bad(file('{"a": ', new Uint8Array(0)), /not JSON/);
  bad(file('[1, 2]', new Uint8Array(0)), /not a JSON object/);
});

test('PyTorch layouts: conv kernels [kh, kw, in, out] ↔ [out, in, kh, kw], dense [in, out] ↔ [out, in], names with dots', () => {
  assert.equal(torchName('down1/block0/conv1/kernel'), 'down1.block0.conv1.weight');
  assert.equal(torchName('norm3/gamma'), 'norm3.weight');
  assert.equal(torchName('norm3/beta'), 'norm3.bias');
  assert.deepEqual(torchShape([3, 3, 8, 16]), [16, 8, 3, 3]);
  assert.deepEqual(torchShape([785, 64]), [64, 785]);
  const k = Float32Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => i);
  const tk = toTorchLayout(k, [2, 3, 4, 5]);
  // element [y=1, x=2, in=3, out=4] sits at [out=4, in=3, y=1, x=2]
  assert.equal(tk[((4 * 4 + 3) * 2 + 1) * 3 + 2], k[((1 * 3 + 2) * 4 + 3) * 5 + 4]);
  assert.deepEqual(fromTorchLayout(tk, [2, 3, 4, 5]), k);
  const d = Float32Array.from({ length: 6 }, (_, i) => i);
  assert.deepEqual([...toTorchLayout(d, [2, 3])], [0, 3, 1, 4, 2, 5]);
  assert.deepEqual(fromTorchLayout(toTorchLayout(d, [2, 3]), [2, 3]), d);
  // a conditional U-net's class vectors: an nn.Embedding's table, lucidrains' name, rows kept as they are
  assert.equal(torchName('class/embedding'), 'classes_emb.weight');
  assert.deepEqual(torchShape([11, 64], 'class/embedding'), [11, 64]);
  assert.deepEqual(toTorchLayout(d, [2, 3], 'class/embedding'), d);
  assert.deepEqual(fromTorchLayout(d, [2, 3], 'class/embedding'), d);
  assert.deepEqual(torchShape([11, 64], 'in/kernel'), [64, 11]);
});

/** A record's model's weights as checkpoint arrays (model/, and ema/ at half). */
function checkpointArrays(record: RunRecord): Map<string, { shape: number[]; values: Float32Array }> {
  const arrays = new Map<string, { shape: number[]; values: Float32Array }>();
  const model = buildModel(record.model, new Rng(1));
  for (const [name, v] of model.variables) {
    arrays.set(`model/${name}`, { shape: v.shape, values: v.dataSync() as Float32Array });
    arrays.set(`ema/${name}`, { shape: v.shape, values: (v.dataSync() as Float32Array).map((x) => x / 2) });
  }
  model.dispose();
  return arrays;
}

test("conditional models through PyTorch names: the U-net's class embedding is classes_emb.weight [classes + 1, 4 x base], the FC net's label widens in.weight; the record travels with its classes", async () => {
  await useBackend('cpu');
  const runs: Partial<TrainChoices>[] = [
    { model: 'unet', baseChannels: 8, channelMults: [1, 2], attentionResolutions: [16], conditional: true, labelDropout: 0.25 },
    { model: 'fc', width: 64, conditional: true },
  ];
  for (const given of runs) {
    const record = resolveNewRun('default', given);
    assert.equal(record.model.classes, 10);
    const arrays = checkpointArrays(record);
    const torch = toTorchTensors(record, arrays);
    const fileRecord = JSON.parse(torch.metadata['diffuse.record']) as RunRecord;
    assert.deepEqual([fileRecord.model.classes, fileRecord.data.conditional, fileRecord.data.classes, fileRecord.training.labelDropout], [10, true, record.data.classes, record.training.labelDropout]);
    if (record.model.kind === 'unet') {
      const table = arrays.get('model/class/embedding')!;
      assert.deepEqual(table.shape, [11, 32]);
      for (const prefix of ['', 'ema.']) {
        assert.deepEqual(torch.tensors.get(`${prefix}classes_emb.weight`)!.shape, [11, 32]);
        assert.deepEqual(torch.tensors.get(`${prefix}classes_emb.weight`)!.values, arrays.get(`${prefix ? 'ema' : 'model'}/class/embedding`)!.values, 'row c is class c\'s vector, the last no class');
      }
      assert.ok(![...torch.tensors.keys()].some((k) => k.startsWith('class.')));
    } else {
      assert.deepEqual(torch.tensors.get('in.weight')!.shape, [64, 784 + 1 + 11]);
      assert.ok(![...torch.tensors.keys()].some((k) => k.includes('class')));
    }
    const back = fromTorchTensors('f', decodeSafetensors(encodeSafetensors(torch.tensors, torch.metadata)).tensors, torch.metadata);
    assert.deepEqual(back.record, record);
    for (const [name, a] of arrays) assert.deepEqual(back.arrays.get(name)!.values, a.values, name);
    if (record.model.kind === 'unet') {
      const without = new Map([...torch.tensors].filter(([k]) => k !== 'classes_emb.weight'));
      assert.throws(() => fromTorchTensors('f', without, torch.metadata), /tensor classes_emb.weight \[11,32\] is missing/);
      // an unconditional record's model has no class table, so a file holding one is refused
      const plain = { ...record, model: { ...record.model, classes: 0 }, data: { ...record.data, conditional: false, classes: [] }, training: { ...record.training, labelDropout: 0 } };
      const plainMeta = { ...torch.metadata, 'diffuse.record': JSON.stringify(plain) };
      assert.throws(() => fromTorchTensors('f', torch.tensors, plainMeta), /2 unexpected tensor\(s\), e.g. classes_emb.weight/);
    } else {
      // a record that says fewer classes than the file's first layer holds
      const fewer = { ...record, model: { ...record.model, classes: 9 } };
      assert.throws(() => fromTorchTensors('f', torch.tensors, { ...torch.metadata, 'diffuse.record': JSON.stringify(fewer) }), /in.weight has shape \[64,796\], the model needs \[64,795\]/);
    }
  }
});

test('a run record and its weights through PyTorch names and back; files that do not fit their configuration are refused', async () => {
  await useBackend('cpu');
  const record = resolveNewRun('default', { model: 'unet', baseChannels: 8, channelMults: [1, 2], attentionResolutions: [16] });
  const arrays = new Map<string, { shape: number[]; values: Float32Array }>();
  const model = new ConvUnet(record.model as UnetConfig, new Rng(1));
  for (const [name, v] of model.variables) {
    arrays.set(`model/${name}`, { shape: v.shape, values: v.dataSync() as Float32Array });
    arrays.set(`ema/${name}`, { shape: v.shape, values: (v.dataSync() as Float32Array).map((x) => x / 2) });
  }
  model.dispose();
  const torch = toTorchTensors(record, arrays);
  assert.ok(torch.tensors.has('down1.block0.conv1.weight') && torch.tensors.has('ema.down1.block0.conv1.weight'));
  const back = fromTorchTensors('f', decodeSafetensors(encodeSafetensors(torch.tensors, torch.metadata)).tensors, torch.metadata);
  assert.deepEqual(back.record, record);
  for (const [name, a] of arrays) assert.deepEqual(back.arrays.get(name)!.values, a.values, name);
  const without = (drop: string) => new Map([...torch.tensors].filter(([k]) => k !== drop));
  assert.throws(() => fromTorchTensors('f', without('init.weight'), torch.metadata), /f does not match its unet configuration: tensor init.weight \[8,1,3,3\] is missing/);
  const wrong = new Map(torch.tensors);
  wrong.set('init.weight', t([8, 1, 5, 5], 9));
  assert.throws(() => fromTorchTensors('f', wrong, torch.metadata), /init.weight has shape \[8,1,5,5\], the model needs \[8,1,3,3\]/);
  const extra = new Map(torch.tensors);
  extra.set('bonus.weight', t([1], 9));
  assert.throws(() => fromTorchTensors('f', extra, torch.metadata), /1 unexpected tensor\(s\), e.g. bonus.weight/);
  assert.throws(() => fromTorchTensors('f', torch.tensors, {}), /no diffuse run record in its metadata/);
});
