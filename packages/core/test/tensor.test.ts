// Tensor: bad input first, then construction, typed views, conversions through native code.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { dtypeSize, DTYPES, fromSafetensorsDType, isStreamlineError, shapeNumel, Tensor, toSafetensorsDType, type DType } from '../src/index.js';
import { native } from '../src/native.js';

const code = (c: string) => (e: unknown) => isStreamlineError(e, c);

test('bad input: unknown dtype, bad shapes, wrong byte length, bad conversions', () => {
  assert.throws(() => new Tensor('f64' as DType, [1], new Uint8Array(8)), code('E_DTYPE'));
  assert.throws(() => new Tensor('f32', [-1], new Uint8Array(0)), code('E_SHAPE'));
  assert.throws(() => new Tensor('f32', [1.5], new Uint8Array(6)), code('E_SHAPE'));
  assert.throws(() => new Tensor('f32', [2], new Uint8Array(7)), code('E_SHAPE'));
  assert.throws(() => new Tensor('f32', [2], new Float32Array(2) as unknown as Uint8Array), code('E_SHAPE'));
  assert.throws(() => Tensor.fromFloat32([1, 2, 3], [2, 2]), code('E_SHAPE'));
  assert.throws(() => Tensor.fromFloat32([1], [1], 'i32'), code('E_DTYPE'));
  assert.throws(() => Tensor.zeros('f32', [2]).convert('i32'), code('E_DTYPE'));
  assert.throws(() => Tensor.zeros('f32', [2, 3]).reshape([4]), code('E_SHAPE'));
  assert.throws(() => shapeNumel([2 ** 30, 2 ** 30, 2 ** 30]), code('E_SHAPE'));
});

test('dtype names and sizes; safetensors names map both ways', () => {
  assert.equal([...DTYPES], ['f32', 'f16', 'bf16', 'i32', 'i64', 'u8', 'bool']);
  assert.equal(DTYPES.map(dtypeSize), [4, 2, 2, 4, 8, 1, 1]);
  for (const d of DTYPES) assert.is(fromSafetensorsDType(toSafetensorsDType(d)), d);
  assert.is(fromSafetensorsDType('F64'), undefined);
});

test('fromFloat32 and toFloat32 round-trip exactly representable values; scalars and empty tensors work', () => {
  const vals = [0, -0, 1, -2.5, 65280, 0.125, -1024];
  for (const d of ['f32', 'f16', 'bf16'] as const) {
    const t = Tensor.fromFloat32(vals, [7], d);
    assert.is(t.nbytes, 7 * dtypeSize(d));
    assert.equal([...t.toFloat32()], vals, d);
  }
  assert.is(Tensor.fromFloat32([3], []).numel, 1);
  assert.is(Tensor.fromFloat32([], [0, 4], 'bf16').toFloat32().length, 0);
});

test('convert rounds to nearest even in native code (same bytes as the reference converter)', () => {
  const src = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 1e3);
  const t = Tensor.fromFloat32(src, [10, 100]);
  for (const d of ['f16', 'bf16'] as const) {
    const c = t.convert(d);
    const ref = new Uint16Array(1000);
    native().convertFloatsRef(ref, d, src, 'f32');
    assert.equal([...(c.typed() as Uint16Array)], [...ref], d);
    assert.equal([...c.shape], [10, 100]);
    const back = c.convert('f32').toFloat32();
    for (let i = 0; i < 1000; i++) assert.ok(Math.abs(back[i]! - src[i]!) <= Math.abs(src[i]!) * (d === 'bf16' ? 2 ** -8 : 2 ** -11), `${d} ${i}`);
  }
  const same = t.convert('f32');
  assert.ok(same.data !== t.data && Buffer.from(same.data).equals(Buffer.from(t.data)), 'same-dtype convert copies');
});

test('integer and bool tensors convert to floats; typed views are zero-copy when aligned, copies otherwise', () => {
  const i = Tensor.fromTyped(new Int32Array([1, -2, 3]), [3]);
  assert.equal([...i.convert('bf16').toFloat32()], [1, -2, 3]);
  const q = Tensor.fromTyped(new BigInt64Array([5n, -7n]), [2]);
  assert.equal([...q.toFloat32()], [5, -7]);
  const b = new Tensor('bool', [3], new Uint8Array([1, 0, 1]));
  assert.equal([...b.toFloat32()], [1, 0, 1]);
  const buf = new Uint8Array(13);
  const aligned = new Tensor('f32', [3], buf.subarray(0, 12));
  const view = aligned.typed() as Float32Array;
  view[0] = 2;
  assert.is(aligned.toFloat32()[0], 2, 'aligned typed() is a view');
  const odd = new Tensor('f32', [3], buf.subarray(1, 13));
  assert.not.ok(odd.isAligned());
  assert.is((odd.typed() as Float32Array).length, 3, 'misaligned typed() copies instead of throwing');
});

test('a Tensor is a native tensor argument as is ({data, dtype, shape})', () => {
  const t = Tensor.fromFloat32([1, 2, 3, 4], [2, 2], 'bf16');
  const out = new Float32Array(4);
  native().convertFloats(out, 'f32', t.data, t.dtype);
  assert.equal([...out], [1, 2, 3, 4]);
  assert.equal(Object.keys({ data: t.data, dtype: t.dtype, shape: t.shape }).sort(), ['data', 'dtype', 'shape']);
  assert.ok(t.data instanceof Uint8Array && Array.isArray(t.shape));
});

test.run();
