// Float conversions: every f16 and bf16 bit pattern through the fast path and the scalar reference, plus
// f32 values at rounding boundaries (ties to even, subnormals, overflow, NaN).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';

const n = native();

test('addon loads and reports the CPU level', () => {
  const c = n.cpuInfo();
  assert.ok(['scalar', 'avx2', 'avx512', 'avx512bf16', 'amx'].includes(c.level));
  assert.ok(c.threads >= 1);
  const g = n.cudaInfo();
  assert.type(g.available, 'boolean');
  if (!g.available) assert.ok(g.reason.length > 0, 'an unavailable GPU comes with a reason');
});

for (const half of ['f16', 'bf16']) {
  test(`${half} -> f32 -> ${half} is the identity on all 65536 patterns (fast == reference)`, () => {
    const src = new Uint16Array(65536).map((_, i) => i);
    const f = new Float32Array(65536), fr = new Float32Array(65536);
    n.convertFloats(f, 'f32', src, half);
    n.convertFloatsRef(fr, 'f32', src, half);
    const fb = new Uint32Array(f.buffer), frb = new Uint32Array(fr.buffer);
    for (let i = 0; i < 65536; i++) assert.is(fb[i], frb[i], `pattern ${i}`);
    const back = new Uint16Array(65536);
    n.convertFloats(back, half, f, 'f32');
    for (let i = 0; i < 65536; i++) {
      const isNaN = Number.isNaN(f[i]);
      if (isNaN) assert.ok(Number.isNaN(half === 'bf16' ? new Float32Array(new Uint32Array([back[i]! << 16]).buffer)[0] : f[i]), `NaN ${i}`);
      else assert.is(back[i], i, `pattern ${i}`);
    }
  });
}

test('f32 -> bf16 rounds to nearest even (fast == reference == exact rule)', () => {
  const bits = new Uint32Array([
    0x3f808000, // exactly halfway, lower is even -> down
    0x3f818000, // halfway, lower odd -> up
    0x3f808001, // just above half -> up
    0x7f7fffff, // max float -> inf
    0x00000001, // smallest subnormal
    0x7fc00001, 0xff800001, // NaNs
    0x80000000,
  ]);
  const want = [0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x0000, null, null, 0x8000];
  const src = new Float32Array(bits.buffer);
  const a = new Uint16Array(src.length), b = new Uint16Array(src.length);
  n.convertFloats(a, 'bf16', src, 'f32');
  n.convertFloatsRef(b, 'bf16', src, 'f32');
  for (let i = 0; i < src.length; i++) {
    assert.is(a[i], b[i]);
    if (want[i] === null) assert.ok((a[i]! & 0x7f80) === 0x7f80 && (a[i]! & 0x7f) !== 0, 'NaN stays NaN');
    else assert.is(a[i], want[i]);
  }
});

test('f32 -> f16 fast path equals the reference on random and boundary values', () => {
  const N = 200_000;
  const u = new Uint32Array(N);
  let s = 12345;
  for (let i = 0; i < N; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; u[i] = (s ^ (s << 7)) >>> 0; }
  const specials = [0x477ff000, 0x477fefff, 0x33000000, 0x33000001, 0x38800000, 0x387fffff, 0x7f800000, 0xff800000];
  specials.forEach((v, i) => (u[i] = v));
  const src = new Float32Array(u.buffer);
  const a = new Uint16Array(N), b = new Uint16Array(N);
  n.convertFloats(a, 'f16', src, 'f32');
  n.convertFloatsRef(b, 'f16', src, 'f32');
  for (let i = 0; i < N; i++) assert.is(a[i], b[i], `value bits ${u[i]!.toString(16)}`);
  assert.is(b[0], 0x7c00); // 65520 -> inf
  assert.is(b[1], 0x7bff); // just below -> 65504
  assert.is(b[2], 0x0000); // 2^-25 ties to even (0)
  assert.is(b[3], 0x0001);
  assert.is(b[4], 0x0400); // 2^-14 smallest normal
});

test('bad arguments are typed errors', () => {
  assert.throws(() => n.convertFloats(new Float32Array(2), 'f32', new Uint16Array(3), 'bf16'), (e: any) => e.code === 'E_SHAPE');
  assert.throws(() => n.convertFloats(new Float32Array(2), 'q4', new Uint16Array(2), 'bf16'), (e: any) => e.code === 'E_DTYPE');
  assert.throws(() => n.convertFloats(new Int32Array(2), 'i32', new Uint16Array(2), 'bf16'), (e: any) => e.code === 'E_DTYPE');
});

test('convertFloatsAsync does not block and gives the same bytes', async () => {
  const src = new Float32Array(1 << 20).map((_, i) => Math.sin(i) * 1000);
  const a = new Uint16Array(src.length), b = new Uint16Array(src.length);
  await n.convertFloatsAsync(a, 'bf16', src, 'f32');
  n.convertFloatsRef(b, 'bf16', src, 'f32');
  assert.equal(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), true);
});

test.run();
