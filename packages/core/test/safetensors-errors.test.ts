// Crafted bytes, one case (or more) per safetensors error code; each error must name the file and, where there
// is one, the tensor. Valid edge cases (empty header, zero-size tensors, padding) come last.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isStreamlineError, openSafetensors, SafetensorsFile } from '../src/index.js';
import { craft, tmpDir } from './_helpers.js';

function rejects(bytes: Uint8Array, code: string, mention?: string): void {
  try {
    new SafetensorsFile(bytes, 'crafted.safetensors');
  } catch (e) {
    assert.ok(isStreamlineError(e), `expected a StreamlineError, got ${e}`);
    assert.is(e.code, code, e.message);
    assert.ok(e.message.includes('crafted.safetensors'), `message names the file: ${e.message}`);
    if (mention) assert.ok(e.message.includes(mention), `message mentions ${mention}: ${e.message}`);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

const f32 = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

test('E_SAFETENSORS_TRUNCATED: fewer than 8 bytes', () => {
  rejects(new Uint8Array(0), 'E_SAFETENSORS_TRUNCATED');
  rejects(new Uint8Array(7), 'E_SAFETENSORS_TRUNCATED');
});

test('E_SAFETENSORS_TRUNCATED: tensor data past the end of the file', () => {
  rejects(craft({ w: f32([4], 0, 16) }, 8), 'E_SAFETENSORS_TRUNCATED', "'w'");
});

test('E_SAFETENSORS_HEADER_TOO_LARGE: length above 100 MB, and 2^64 - 1', () => {
  rejects(craft({}, 0, { headerLength: 100_000_001n }), 'E_SAFETENSORS_HEADER_TOO_LARGE');
  rejects(craft({}, 0, { headerLength: 0xffffffffffffffffn }), 'E_SAFETENSORS_HEADER_TOO_LARGE');
});

test('E_SAFETENSORS_HEADER_LENGTH: header runs past the end of the file', () => {
  rejects(craft({}, 0, { headerLength: 1000n }), 'E_SAFETENSORS_HEADER_LENGTH');
  rejects(craft({}, 0, { headerLength: 100_000_000n }), 'E_SAFETENSORS_HEADER_LENGTH');
});

test('E_SAFETENSORS_UTF8: invalid UTF-8 in the header', () => {
  const b = craft('{"ab": 1}');
  b[10] = 0xff;
  rejects(b, 'E_SAFETENSORS_UTF8');
  const surrogate = craft('{"abc": 1}');
  surrogate.set([0xed, 0xa0, 0x80], 10); // an encoded UTF-16 surrogate is not UTF-8
  rejects(surrogate, 'E_SAFETENSORS_UTF8');
});

test('E_SAFETENSORS_JSON: not JSON, not an object, bad entries, leading whitespace or BOM', () => {
  rejects(craft('{"a": '), 'E_SAFETENSORS_JSON');
  rejects(craft('[]'), 'E_SAFETENSORS_JSON');
  rejects(craft(' {}'), 'E_SAFETENSORS_JSON');
  rejects(craft('\ufeff{}'), 'E_SAFETENSORS_JSON');
  rejects(craft('', 0, { pad: false }), 'E_SAFETENSORS_JSON');
  rejects(craft({ w: 3 }), 'E_SAFETENSORS_JSON', "'w'");
  rejects(craft({ w: { dtype: 'F32', shape: [1] } }), 'E_SAFETENSORS_JSON', 'data_offsets');
  rejects(craft({ w: { shape: [1], data_offsets: [0, 4] } }, 4), 'E_SAFETENSORS_JSON', 'dtype');
});

test('E_SAFETENSORS_DTYPE: unknown, unsupported and non-string dtypes', () => {
  rejects(craft({ w: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, 4), 'E_SAFETENSORS_DTYPE', "'w'");
  rejects(craft({ w: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, 8), 'E_SAFETENSORS_DTYPE', 'not supported');
  rejects(craft({ w: { dtype: 'f32', shape: [1], data_offsets: [0, 4] } }, 4), 'E_SAFETENSORS_DTYPE');
  rejects(craft({ w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }, 4), 'E_SAFETENSORS_DTYPE');
});

test('E_SAFETENSORS_SHAPE: negative, fractional, huge or non-array dimensions', () => {
  for (const shape of [[-1], [1.5], ['3'], 3, null, [2 ** 53], [1, -0.5]]) {
    rejects(craft({ w: { dtype: 'U8', shape, data_offsets: [0, 0] } }), 'E_SAFETENSORS_SHAPE', "'w'");
  }
});

test('E_SAFETENSORS_SIZE: shape × dtype differs from the byte range, including overflowing products', () => {
  rejects(craft({ w: f32([2, 2], 0, 12) }, 12), 'E_SAFETENSORS_SIZE', "'w'");
  rejects(craft({ w: f32([2 ** 40, 2 ** 40], 0, 16) }, 16), 'E_SAFETENSORS_SIZE');
  rejects(craft({ w: { dtype: 'BF16', shape: [3], data_offsets: [0, 3] } }, 3), 'E_SAFETENSORS_SIZE');
  rejects(craft({ w: f32([], 0, 0) }), 'E_SAFETENSORS_SIZE');
});

test('E_SAFETENSORS_OFFSET: malformed, reversed, gapped, overlapping, not from 0', () => {
  rejects(craft({ w: { dtype: 'U8', shape: [1], data_offsets: [0] } }, 1), 'E_SAFETENSORS_OFFSET', "'w'");
  rejects(craft({ w: { dtype: 'U8', shape: [1], data_offsets: [0, 1, 2] } }, 1), 'E_SAFETENSORS_OFFSET');
  rejects(craft({ w: { dtype: 'U8', shape: [1], data_offsets: [0.5, 1.5] } }, 2), 'E_SAFETENSORS_OFFSET');
  rejects(craft({ w: { dtype: 'U8', shape: [1], data_offsets: [-1, 0] } }, 1), 'E_SAFETENSORS_OFFSET');
  rejects(craft({ w: { dtype: 'U8', shape: [1], data_offsets: '0,1' } }, 1), 'E_SAFETENSORS_OFFSET');
  rejects(craft({ w: { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, 4), 'E_SAFETENSORS_OFFSET');
  rejects(craft({ w: f32([1], 4, 8) }, 8), 'E_SAFETENSORS_OFFSET', "'w'");
  rejects(craft({ a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12), 'E_SAFETENSORS_OFFSET', "'b'");
  rejects(craft({ a: f32([1], 0, 4), b: f32([1], 8, 12) }, 12), 'E_SAFETENSORS_OFFSET', 'gap');
  rejects(craft({ a: f32([1], 0, 4), b: f32([1], 0, 4) }, 4), 'E_SAFETENSORS_OFFSET', 'overlaps');
});

test('E_SAFETENSORS_TRAILING: bytes after the last tensor', () => {
  rejects(craft({ w: f32([1], 0, 4) }, 5), 'E_SAFETENSORS_TRAILING');
  rejects(craft({}, 1), 'E_SAFETENSORS_TRAILING');
});

test('E_SAFETENSORS_METADATA: __metadata__ must map strings to strings', () => {
  rejects(craft({ __metadata__: { format: 1 } }), 'E_SAFETENSORS_METADATA', 'format');
  rejects(craft({ __metadata__: ['a'] }), 'E_SAFETENSORS_METADATA');
  rejects(craft({ __metadata__: 'pt' }), 'E_SAFETENSORS_METADATA');
  rejects(craft({ __metadata__: { a: null } }), 'E_SAFETENSORS_METADATA');
});

test('E_SAFETENSORS_NOT_FOUND and E_IO', () => {
  const f = new SafetensorsFile(craft({ w: f32([1], 0, 4) }, 4), 'x.safetensors');
  assert.throws(() => f.tensor('v'), (e: unknown) => isStreamlineError(e, 'E_SAFETENSORS_NOT_FOUND') && e.message.includes("'v'"));
  assert.throws(() => f.info('__metadata__'), (e: unknown) => isStreamlineError(e, 'E_SAFETENSORS_NOT_FOUND'));
  const dir = tmpDir('err');
  assert.throws(() => openSafetensors(path.join(dir, 'none.safetensors')), (e: unknown) => isStreamlineError(e, 'E_IO') && e.message.includes('none.safetensors'));
  assert.throws(() => openSafetensors(dir), (e: unknown) => isStreamlineError(e, 'E_IO'));
  const empty = path.join(dir, 'empty.safetensors');
  fs.writeFileSync(empty, '');
  assert.throws(() => openSafetensors(empty), (e: unknown) => isStreamlineError(e, 'E_SAFETENSORS_TRUNCATED'));
  fs.rmSync(dir, { recursive: true });
});

test('valid edge cases: empty header, zero-size tensors, unpadded header, unknown entry keys, __proto__ names', () => {
  assert.equal(new SafetensorsFile(craft({}), 'a').names(), []);
  assert.equal(new SafetensorsFile(craft('{}', 0, { pad: false }), 'a').names(), []);
  const z = new SafetensorsFile(craft({ a: f32([0, 5], 0, 0), b: f32([], 0, 4), c: { dtype: 'BOOL', shape: [0], data_offsets: [4, 4] } }, 4), 'z');
  assert.equal(z.names().sort(), ['a', 'b', 'c']);
  assert.is(z.tensor('a').numel, 0);
  assert.is(z.tensor('b').numel, 1);
  const extra = new SafetensorsFile(craft({ w: { ...f32([1], 0, 4), note: 'x' } }, 4), 'e');
  assert.equal(extra.info('w').shape, [1]);
  const proto = new SafetensorsFile(craft('{"__proto__": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', 1), 'p');
  assert.equal(proto.names(), ['__proto__']);
  assert.is(proto.tensor('__proto__').data[0], 3);
});

test.run();
