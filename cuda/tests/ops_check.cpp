// Op-level checks: each CUDA op against its CPU reference over shapes (odd sizes, single rows, large rows), weight
// dtypes, padding masks and NaN inputs. Outputs are poisoned (NaN) before every launch.
#include "activation.cuh"
#include "attention.cuh"
#include "cosine.cuh"
#include "cpu_ref.h"
#include "cublaslt_loader.h"
#include "embedding.cuh"
#include "gemm.cuh"
#include "harness.h"
#include "logsoftmax.cuh"
#include "norm.cuh"
#include "rope.cuh"
#include "streamline/matmul.h"

namespace harness {

namespace sc = streamline::cuda;
using streamline::Activation;
using streamline::DType;

namespace {
const cudaStream_t S = nullptr;

// Weights as bytes in the given dtype, plus the f32 values they represent.
struct W {
  std::vector<uint8_t> bytes;
  std::vector<float> f;
};
W make_w(size_t n, DType dt, Rng& r, float scale = 1.f, float offset = 0.f) {
  W w;
  w.f = randn(n, r, scale);
  for (auto& x : w.f) x += offset;
  if (dt == DType::F32) {
    w.bytes.resize(n * 4);
    std::memcpy(w.bytes.data(), w.f.data(), n * 4);
  } else {
    std::vector<uint16_t> h = dt == DType::BF16 ? to_bf16(w.f) : to_f16(w.f);
    for (size_t i = 0; i < n; i++) w.f[i] = ref::wget(h.data(), dt, i);
    w.bytes.resize(n * 2);
    std::memcpy(w.bytes.data(), h.data(), n * 2);
  }
  return w;
}

std::vector<uint8_t> make_mask(size_t B, size_t T, int kind, Rng& r) {
  std::vector<uint8_t> m(B * T, 1);
  for (size_t b = 0; b < B; b++) {
    const size_t len = T - (b * 7 % (T + 1 > 1 ? T : 1));  // right padding of varying length
    for (size_t t = 0; t < T; t++) {
      if (kind == 1) m[b * T + t] = t < (len ? len : 1);
      else if (kind == 2) m[b * T + t] = t >= T - (len ? len : 1);  // left padding
      else if (kind == 3) m[b * T + t] = (r.next() % 4) != 0;
    }
  }
  return m;
}

// make_mask's kinds by name, for the records.
const char* mask_name(int mk) { return mk == 0 ? "none" : mk == 1 ? "right" : mk == 2 ? "left" : "random"; }

const char* dn(DType d) { return streamline::dtype_name(d); }

void check_norms(bool quick) {
  Rng r(11);
  const size_t shapes[][2] = {{1, 1}, {3, 7}, {17, 256}, {5, 5000}, {64, 4096}, {2, 12288}};
  for (auto& sh : shapes) {
    const size_t M = sh[0], D = sh[1];
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      W w = make_w(D, dt, r, 0.2f, 1.f), b = make_w(D, dt, r, 0.1f);
      std::vector<float> x = randn(M * D, r, 2.f), delta = randn(M * D, r), dbias = randn(D, r, 0.1f);
      if (M * D > 4) x[M * D / 2] = NAN;  // one NaN row must stay NaN, the others unaffected
      DevBuf dx = dev(x), dw = dev(w.bytes), db = dev(b.bytes), dd = dev(delta), ddb = dev(dbias), dy(M * D * 4),
             dr(M * D * 4), dyb(M * D * 2);
      std::vector<float> ref(M * D);
      for (int kind = 0; kind < 2; kind++) {
        const std::string nm = fmt("%s M=%zu D=%zu w=%s", kind ? "layernorm" : "rmsnorm", M, D, dn(dt));
        dy.poison();
        if (kind == 0) {
          sc::rmsnorm_forward(dy.as<float>(), dx.as<float>(), dw.p, dt, M, D, 1e-5f, S);
          ref::rmsnorm_forward(ref.data(), x.data(), w.bytes.data(), dt, M, D, 1e-5f);
        } else {
          sc::layernorm_forward(dy.as<float>(), dx.as<float>(), dw.p, db.p, dt, M, D, 1e-5f, S);
          ref::layernorm_forward(ref.data(), x.data(), w.bytes.data(), b.bytes.data(), dt, M, D, 1e-5f);
        }
        H_CHECK(cudaGetLastError());
        check("norm", nm, compare(host<float>(dy, M * D).data(), ref.data(), M * D), kTolF32);
        // Fused residual variant with bf16 output, and the residual written back.
        std::vector<float> rr(M * D);
        for (size_t i = 0; i < M * D; i++) rr[i] = x[i] + delta[i] + dbias[i % D];
        std::vector<float> ref2(M * D);
        if (kind == 0) ref::rmsnorm_forward(ref2.data(), rr.data(), w.bytes.data(), dt, M, D, 1e-5f);
        else ref::layernorm_forward(ref2.data(), rr.data(), w.bytes.data(), b.bytes.data(), dt, M, D, 1e-5f);
        dyb.poison();
        dr.poison();
        sc::norm_rows(kind ? sc::NormKind::Layer : sc::NormKind::RMS, nullptr, dyb.as<sc::bf16>(), dr.as<float>(),
                      dx.as<float>(), dd.as<float>(), ddb.as<float>(), dw.p, kind ? db.p : nullptr, dt, M, D, 1e-5f, S);
        std::vector<float> yb = from_bf16(host<uint16_t>(dyb, M * D));
        check("norm", "fused add+" + nm + " (bf16 out)", compare(yb.data(), ref2.data(), M * D), kTolBf16Out);
        check("norm", "fused add+" + nm + " (residual)", compare(host<float>(dr, M * D).data(), rr.data(), M * D), kTolExactish);
      }
      if (quick) break;
    }
  }
  // No weight (nullptr).
  {
    const size_t M = 9, D = 300;
    std::vector<float> x = randn(M * D, r), ref(M * D);
    DevBuf dx = dev(x), dy(M * D * 4);
    dy.poison();
    sc::rmsnorm_forward(dy.as<float>(), dx.as<float>(), nullptr, DType::F32, M, D, 1e-6f, S);
    ref::rmsnorm_forward(ref.data(), x.data(), nullptr, DType::F32, M, D, 1e-6f);
    check("norm", "rmsnorm without weight", compare(host<float>(dy, M * D).data(), ref.data(), M * D), kTolF32);
  }
}

void check_embedding() {
  Rng r(12);
  const size_t cases[][3] = {{1, 1, 1}, {7, 50, 33}, {300, 1000, 256}, {64, 32000, 4096}};
  for (auto& c : cases) {
    const size_t M = c[0], V = c[1], D = c[2];
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      W t = make_w(V * D, dt, r);
      std::vector<int32_t> ids(M);
      for (auto& id : ids) id = int32_t(r.next() % V);
      DevBuf dt_ = dev(t.bytes), di = dev(ids), dout(M * D * 4);
      dout.poison();
      const bool ok = sc::embedding_forward(dout.as<float>(), di.as<int32_t>(), dt_.p, dt, M, V, D, S);
      std::vector<float> ref(M * D);
      ref::embedding_forward(ref.data(), ids.data(), t.bytes.data(), dt, M, V, D);
      record("embedding", fmt("M=%zu V=%zu D=%zu w=%s returns true", M, V, D, dn(dt)), ok, 0, 0);
      check("embedding", fmt("M=%zu V=%zu D=%zu w=%s", M, V, D, dn(dt)), compare(host<float>(dout, M * D).data(), ref.data(), M * D), 0.0);
    }
  }
  // Out-of-range ids: false, and those rows are left untouched (still poisoned), the others written.
  const size_t M = 5, V = 10, D = 8;
  W t = make_w(V * D, DType::F32, r);
  std::vector<int32_t> ids = {3, -1, 9, 10, 0};
  DevBuf dt_ = dev(t.bytes), di = dev(ids), dout(M * D * 4);
  dout.poison();
  const bool ok = sc::embedding_forward(dout.as<float>(), di.as<int32_t>(), dt_.p, DType::F32, M, V, D, S);
  std::vector<float> o = host<float>(dout, M * D);
  bool rows_ok = std::isnan(o[1 * D]) && std::isnan(o[3 * D]) && o[0] == t.f[3 * D] && o[4 * D] == t.f[0];
  record("embedding", "out-of-range ids: returns false, rows untouched", !ok && rows_ok, 0, 0);
}

void check_rope() {
  Rng r(13);
  const size_t cases[][3] = {{1, 1, 2}, {5, 3, 6}, {37, 8, 64}, {129, 32, 128}, {16, 4, 256}};
  for (auto& c : cases) {
    const size_t M = c[0], nh = c[1], Dh = c[2], half = Dh / 2;
    std::vector<int32_t> pos(M);
    for (size_t m = 0; m < M; m++) pos[m] = int32_t(r.next() % 4096);
    std::vector<float> inv(half);
    for (size_t i = 0; i < half; i++) inv[i] = float(1.0 / std::pow(500000.0, 2.0 * double(i) / double(Dh)));
    std::vector<float> cr(M * half), sr(M * half);
    ref::rope_tables(cr.data(), sr.data(), pos.data(), inv.data(), M, half, 1.25f);
    DevBuf dp = dev(pos), dinv = dev(inv), dc(M * half * 4), ds(M * half * 4);
    dc.poison(); ds.poison();
    sc::rope_tables(dc.as<float>(), ds.as<float>(), dp.as<int32_t>(), dinv.as<float>(), M, half, 1.25f, S);
    check("rope", fmt("tables M=%zu half=%zu (cos)", M, half), compare(host<float>(dc, M * half).data(), cr.data(), M * half), kTolF32);
    check("rope", fmt("tables M=%zu half=%zu (sin)", M, half), compare(host<float>(ds, M * half).data(), sr.data(), M * half), kTolF32);
    // Application on the reference tables (isolates the rotation from the tables).
    std::vector<float> x = randn(M * nh * Dh, r);
    DevBuf dx = dev(x), dcr = dev(cr), dsr = dev(sr);
    sc::rope_forward(dx.as<float>(), dcr.as<float>(), dsr.as<float>(), M, nh, Dh, S);
    ref::rope_forward(x.data(), cr.data(), sr.data(), M, nh, Dh, Dh);
    check("rope", fmt("apply M=%zu heads=%zu Dh=%zu", M, nh, Dh), compare(host<float>(dx, x.size()).data(), x.data(), x.size()), kTolExactish);
  }
}

// q, k, v rows packed as the layer lays them out ([M, H+2Hk, Dh]: q | k | v per token), rounded to bf16.
std::vector<float> packed_qkv_bf16(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                   size_t M, size_t Hd, size_t Kd) {
  const size_t W = Hd + 2 * Kd;
  std::vector<float> packed(M * W);
  for (size_t m = 0; m < M; m++) {
    std::memcpy(&packed[m * W], &q[m * Hd], Hd * 4);
    std::memcpy(&packed[m * W + Hd], &k[m * Kd], Kd * 4);
    std::memcpy(&packed[m * W + Hd + Kd], &v[m * Kd], Kd * 4);
  }
  return round_bf16(packed);
}

// Sliding-window attention (query i sees keys i - W < j <= i): f32 and bf16 on every path against the reference
// with the same window. Windows of one key, inside a tile (16 keys scalar, 64 wmma), straddling tiles, over a
// tile, and >= T (bitwise the same as no window: the kernels take it as none). Masks leave windows with no real key
// (zeros, lse = -inf). Then non-finite values stored in keys outside a query's window.
void check_attention_window(bool quick, Rng& r) {
  struct C { size_t B, T, H, Hk, Dh, W; };
  const C cases[] = {{2, 130, 4, 2, 64, 1},  {2, 130, 4, 2, 64, 10}, {2, 130, 4, 2, 64, 40}, {2, 130, 4, 2, 64, 70},
                     {2, 130, 4, 2, 64, 130}, {1, 200, 2, 1, 128, 64}, {2, 77, 2, 1, 80, 33}, {2, 45, 4, 2, 40, 7},
                     {1, 150, 2, 1, 256, 100}, {1, 100, 2, 2, 96, 1000}, {3, 70, 4, 4, 32, 17}};
  for (const C& c : cases) {
    for (int mk = 0; mk < 4; mk++) {
      if (quick && (mk == 1 || mk == 2)) continue;
      const size_t M = c.B * c.T, Hd = c.H * c.Dh, Kd = c.Hk * c.Dh;
      const float scale = 1.f / std::sqrt(float(c.Dh));
      std::vector<float> q = randn(M * Hd, r), k = randn(M * Kd, r), v = randn(M * Kd, r);
      std::vector<uint8_t> mask = make_mask(c.B, c.T, mk, r);
      const uint8_t* mp = mk ? mask.data() : nullptr;
      const std::string base = fmt("B=%zu T=%zu H=%zu Hk=%zu Dh=%zu mask=%s window=%zu", c.B, c.T, c.H, c.Hk, c.Dh,
                                   mask_name(mk), c.W);
      DevBuf dm = dev(mask);
      const uint8_t* gm = mk ? dm.as<uint8_t>() : nullptr;
      {
        std::vector<float> ref(M * Hd), lse(c.B * c.H * c.T);
        ref::attention_forward(ref.data(), Hd, lse.data(), q.data(), Hd, k.data(), v.data(), Kd, mp, c.B, c.T, c.H, c.Hk,
                               c.Dh, scale, c.W);
        DevBuf dq = dev(q), dk = dev(k), dv = dev(v), dout(M * Hd * 4), dl(lse.size() * 4);
        dout.poison(); dl.poison();
        sc::attention_forward(dout.as<float>(), dl.as<float>(), dq.as<float>(), dk.as<float>(), dv.as<float>(), gm, c.B,
                              c.T, c.H, c.Hk, c.Dh, scale, c.W, S);
        const std::vector<float> o = host<float>(dout, M * Hd);
        check("attention", "f32 " + base, compare(o.data(), ref.data(), M * Hd), kTolF32);
        check("attention", "f32 lse " + base, compare(host<float>(dl, lse.size()).data(), lse.data(), lse.size()), kTolF32);
        if (c.W >= c.T) {
          dout.poison();
          sc::attention_forward(dout.as<float>(), nullptr, dq.as<float>(), dk.as<float>(), dv.as<float>(), gm, c.B, c.T,
                                c.H, c.Hk, c.Dh, scale, 0, S);
          const size_t bad = bit_mismatches(host<float>(dout, M * Hd).data(), o.data(), M * Hd);
          record("attention", "f32 window >= T is bitwise no window " + base, bad == 0, double(bad), 0);
        }
      }
      const size_t W_ = Hd + 2 * Kd;
      const std::vector<float> packed = packed_qkv_bf16(q, k, v, M, Hd, Kd);
      std::vector<float> ref(M * Hd), lse(c.B * c.H * c.T);
      ref::attention_forward(ref.data(), Hd, lse.data(), packed.data(), W_, packed.data() + Hd, packed.data() + Hd + Kd,
                             W_, mp, c.B, c.T, c.H, c.Hk, c.Dh, scale, c.W);
      DevBuf dp = dev(to_bf16(packed)), dout(M * Hd * 2), dl(lse.size() * 4);
      const sc::bf16* pq = dp.as<sc::bf16>();
      for (int variant = 0; variant < 2; variant++) {
        sc::set_attention_variant(variant == 0);
        const char* path = sc::attention_bf16_path(c.Dh, W_, W_, Hd, pq, pq + Hd, pq + Hd + Kd, dout.p);
        if (variant == 1 && std::string(path) == "scalar") break;
        dout.poison(); dl.poison();
        sc::attention_forward_bf16(dout.as<sc::bf16>(), Hd, dl.as<float>(), pq, W_, pq + Hd, pq + Hd + Kd, W_, gm, c.B,
                                   c.T, c.H, c.Hk, c.Dh, scale, c.W, S);
        const std::vector<uint16_t> ob = host<uint16_t>(dout, M * Hd);
        const std::vector<float> o = from_bf16(ob);
        check("attention", fmt("bf16 %s ", path) + base, compare(o.data(), ref.data(), M * Hd), kTolBf16);
        check("attention", fmt("bf16 %s lse ", path) + base,
              compare(host<float>(dl, lse.size()).data(), lse.data(), lse.size()), kTolBf16Out);
        if (c.W >= c.T) {
          dout.poison();
          sc::attention_forward_bf16(dout.as<sc::bf16>(), Hd, nullptr, pq, W_, pq + Hd, pq + Hd + Kd, W_, gm, c.B, c.T,
                                     c.H, c.Hk, c.Dh, scale, 0, S);
          const bool same = host<uint16_t>(dout, M * Hd) == ob;
          record("attention", fmt("bf16 %s window >= T is bitwise no window ", path) + base, same, same ? 0 : 1, 0);
        }
      }
      sc::set_attention_variant(true);
    }
  }
  // Non-finite values outside a query's window (batch 0, all real keys, W = 20): +inf in key 10's k (a score of +inf,
  // NaN row, or -inf, key left out, by the sign of q) and NaN in key 12's v (dim 3 of the group's heads NaN). Queries
  // 10..31 see one of them, the later ones must equal the reference, finite. No kernel multiplies an out-of-window
  // key, so the f32 and scalar bf16 kernels match the reference element for element, and so does the wmma kernel
  // from query 12 on (rows 32..47 take key 12's chunk through chunk_pv, rows 48..63 skip it, later tiles never load
  // it); before 12 its causal-diagonal caveat stands (key 12's NaN value row times an exact 0 in the earlier rows of
  // its 16-key chunk): required there is every NaN of the reference.
  for (const size_t Dh : {size_t(64), size_t(40)}) {  // 64: wmma paths, 40: the scalar bf16 kernel
    const size_t B = 2, T = 150, H = 2, Hk = 1, W = 20, M = B * T, Hd = H * Dh, Kd = Hk * Dh;
    std::vector<float> q = randn(M * Hd, r), k = randn(M * Kd, r), v = randn(M * Kd, r);
    k[10 * Kd + 1] = INFINITY;
    v[12 * Kd + 3] = NAN;
    const float scale = 0.125f;
    std::vector<float> ref(M * Hd);
    ref::attention_forward(ref.data(), Hd, nullptr, q.data(), Hd, k.data(), v.data(), Kd, nullptr, B, T, H, Hk, Dh, scale, W);
    // The case itself: dim 3 of head 0 NaN on every query that sees key 12 (12..31), nothing non-finite outside
    // 10..31.
    size_t ref_nan_rows = 0, ref_nonfinite_outside = 0;
    for (size_t i = 0; i < T; i++) {
      ref_nan_rows += i >= 12 && i <= 31 && std::isnan(ref[i * Hd + 3]);
      for (size_t e = 0; e < Hd; e++) ref_nonfinite_outside += (i < 10 || i > 31) && !std::isfinite(ref[i * Hd + e]);
    }
    record("attention", fmt("window NaN/inf case: the reference's NaN rows are those that see the keys (Dh=%zu)", Dh),
           ref_nan_rows == 20 && ref_nonfinite_outside == 0, double(ref_nonfinite_outside), 0,
           fmt("%zu of 20 NaN rows", ref_nan_rows));
    if (Dh == 64) {
      DevBuf dq = dev(q), dk = dev(k), dv = dev(v), dout(M * Hd * 4);
      dout.poison();
      sc::attention_forward(dout.as<float>(), nullptr, dq.as<float>(), dk.as<float>(), dv.as<float>(), nullptr, B, T, H,
                            Hk, Dh, scale, W, S);
      check("attention", "f32 window: inf/NaN in out-of-window keys stays out",
            compare(host<float>(dout, M * Hd).data(), ref.data(), M * Hd), kTolF32);
    }
    std::vector<float> qb = round_bf16(q), kb = round_bf16(k), vb = round_bf16(v);
    ref::attention_forward(ref.data(), Hd, nullptr, qb.data(), Hd, kb.data(), vb.data(), Kd, nullptr, B, T, H, Hk, Dh, scale, W);
    DevBuf bq = dev(to_bf16(qb)), bk = dev(to_bf16(kb)), bv = dev(to_bf16(vb)), bout(M * Hd * 2);
    for (int variant = 0; variant < 2; variant++) {
      sc::set_attention_variant(variant == 0);
      const char* path = sc::attention_bf16_path(Dh, Hd, Kd, Hd, bq.p, bk.p, bv.p, bout.p);
      if (variant == 1 && std::string(path) == "scalar") break;
      bout.poison();
      sc::attention_forward_bf16(bout.as<sc::bf16>(), Hd, nullptr, bq.as<sc::bf16>(), Hd, bk.as<sc::bf16>(),
                                 bv.as<sc::bf16>(), Kd, nullptr, B, T, H, Hk, Dh, scale, W, S);
      const std::vector<float> o = from_bf16(host<uint16_t>(bout, M * Hd));
      const std::string nm = fmt("bf16 %s window: inf/NaN in out-of-window keys stays out", path);
      if (std::string(path) == "scalar") {
        check("attention", nm, compare(o.data(), ref.data(), M * Hd), kTolBf16);
      } else {
        size_t missing = 0;
        for (size_t i = 0; i < 12 * Hd; i++) missing += std::isnan(ref[i]) && !std::isnan(o[i]);
        const Compare later = compare(o.data() + 12 * Hd, ref.data() + 12 * Hd, (M - 12) * Hd);
        const bool ok = missing == 0 && later.nan_mismatch == 0 && later.rel_l2 <= kTolBf16;
        record("attention", nm + " (queries >= 12 exactly the reference's NaN/inf)", ok, later.rel_l2, kTolBf16,
               fmt("%zu missing NaN before query 12, %zu NaN/inf mismatches from 12 on", missing, later.nan_mismatch));
      }
    }
    sc::set_attention_variant(true);
  }
}

// Attention: f32 contract and bf16 (packed strides, wmma and scalar paths) against the f64-accumulating reference.
void check_attention(bool quick) {
  Rng r(14);
  struct C { size_t B, T, H, Hk, Dh; };
  const C cases[] = {{1, 1, 1, 1, 8},   {2, 17, 4, 2, 16},  {1, 70, 2, 1, 64},  {2, 33, 8, 2, 40},
                     {1, 130, 4, 4, 128}, {2, 64, 4, 1, 256}, {2, 65, 4, 2, 64},  {1, 257, 2, 1, 128},
                     {3, 200, 4, 2, 128}, {2, 63, 2, 2, 64},  {2, 45, 4, 2, 32},   {1, 100, 2, 2, 96},
                     {1, 77, 2, 1, 80}};
  for (const C& c : cases) {
    for (int mk = 0; mk < 4; mk++) {
      if (quick && mk > 1) break;
      const size_t M = c.B * c.T, Hd = c.H * c.Dh, Kd = c.Hk * c.Dh;
      const float scale = 1.f / std::sqrt(float(c.Dh));
      std::vector<float> q = randn(M * Hd, r), k = randn(M * Kd, r), v = randn(M * Kd, r);
      std::vector<uint8_t> mask = make_mask(c.B, c.T, mk, r);
      const uint8_t* mp = mk ? mask.data() : nullptr;
      const std::string base = fmt("B=%zu T=%zu H=%zu Hk=%zu Dh=%zu mask=%s", c.B, c.T, c.H, c.Hk, c.Dh,
                                   mask_name(mk));
      // f32
      {
        std::vector<float> ref(M * Hd), lse(c.B * c.H * c.T);
        ref::attention_forward(ref.data(), Hd, lse.data(), q.data(), Hd, k.data(), v.data(), Kd, mp, c.B, c.T, c.H, c.Hk, c.Dh, scale);
        DevBuf dq = dev(q), dk = dev(k), dv = dev(v), dm = dev(mask), dout(M * Hd * 4), dl(lse.size() * 4);
        dout.poison(); dl.poison();
        sc::attention_forward(dout.as<float>(), dl.as<float>(), dq.as<float>(), dk.as<float>(), dv.as<float>(),
                              mk ? dm.as<uint8_t>() : nullptr, c.B, c.T, c.H, c.Hk, c.Dh, scale, 0, S);
        check("attention", "f32 " + base, compare(host<float>(dout, M * Hd).data(), ref.data(), M * Hd), kTolF32);
        check("attention", "f32 lse " + base, compare(host<float>(dl, lse.size()).data(), lse.data(), lse.size()), kTolF32);
      }
      // bf16, packed [M, H+2Hk, Dh] rows as the layer lays them out.
      {
        const size_t W_ = Hd + 2 * Kd;
        const std::vector<float> packed = packed_qkv_bf16(q, k, v, M, Hd, Kd);
        std::vector<float> ref(M * Hd), lse(c.B * c.H * c.T);
        ref::attention_forward(ref.data(), Hd, lse.data(), packed.data(), W_, packed.data() + Hd, packed.data() + Hd + Kd,
                               W_, mp, c.B, c.T, c.H, c.Hk, c.Dh, scale);
        DevBuf dp = dev(to_bf16(packed)), dm = dev(mask), dout(M * Hd * 2), dl(lse.size() * 4);
        const sc::bf16* pq = dp.as<sc::bf16>();
        for (int variant = 0; variant < 2; variant++) {  // tensor-core output in registers, then in shared memory
          sc::set_attention_variant(variant == 0);
          const char* path = sc::attention_bf16_path(c.Dh, W_, W_, Hd, pq, pq + Hd, pq + Hd + Kd, dout.p);
          if (variant == 1 && std::string(path) == "scalar") break;
          dout.poison(); dl.poison();
          sc::attention_forward_bf16(dout.as<sc::bf16>(), Hd, dl.as<float>(), pq, W_, pq + Hd, pq + Hd + Kd, W_,
                                     mk ? dm.as<uint8_t>() : nullptr, c.B, c.T, c.H, c.Hk, c.Dh, scale, 0, S);
          std::vector<float> o = from_bf16(host<uint16_t>(dout, M * Hd));
          check("attention", fmt("bf16 %s ", path) + base, compare(o.data(), ref.data(), M * Hd), kTolBf16);
          check("attention", fmt("bf16 %s lse ", path) + base, compare(host<float>(dl, lse.size()).data(), lse.data(), lse.size()), kTolBf16Out);
        }
        sc::set_attention_variant(true);
      }
    }
  }
  // NaN in one key of batch 0 that is real: every later query of that batch (all heads of the group) is NaN,
  // batch 1 is unaffected; NaN in a padding key changes nothing.
  for (int pad : {0, 1}) {
    const size_t B = 2, T = 80, H = 2, Hk = 1, Dh = 64, M = B * T, Hd = H * Dh, Kd = Hk * Dh;
    std::vector<float> q = randn(M * Hd, r), k = randn(M * Kd, r), v = randn(M * Kd, r);
    std::vector<uint8_t> mask(M, 1);
    const size_t j = 40;
    if (pad) mask[j] = 0;
    v[j * Kd + 3] = NAN;
    std::vector<float> ref(M * Hd);
    ref::attention_forward(ref.data(), Hd, nullptr, q.data(), Hd, k.data(), v.data(), Kd, mask.data(), B, T, H, Hk, Dh, 0.125f);
    DevBuf dq = dev(q), dk = dev(k), dv = dev(v), dm = dev(mask), dout(M * Hd * 4);
    dout.poison();
    sc::attention_forward(dout.as<float>(), nullptr, dq.as<float>(), dk.as<float>(), dv.as<float>(), dm.as<uint8_t>(), B, T, H, Hk, Dh, 0.125f, 0, S);
    check("attention", pad ? "f32 NaN in a padding value is ignored" : "f32 NaN in a real value propagates",
          compare(host<float>(dout, M * Hd).data(), ref.data(), M * Hd), kTolF32);
    std::vector<float> qb = round_bf16(q), kb = round_bf16(k), vb = round_bf16(v);
    ref::attention_forward(ref.data(), Hd, nullptr, qb.data(), Hd, kb.data(), vb.data(), Kd, mask.data(), B, T, H, Hk, Dh, 0.125f);
    DevBuf bq = dev(to_bf16(qb)), bk = dev(to_bf16(kb)), bv = dev(to_bf16(vb)), bout(M * Hd * 2);
    bout.poison();
    sc::attention_forward_bf16(bout.as<sc::bf16>(), Hd, nullptr, bq.as<sc::bf16>(), Hd, bk.as<sc::bf16>(), bv.as<sc::bf16>(), Kd,
                               dm.as<uint8_t>(), B, T, H, Hk, Dh, 0.125f, 0, S);
    std::vector<float> o = from_bf16(host<uint16_t>(bout, M * Hd));
    if (pad) {
      check("attention", "bf16 wmma NaN in a padding value is ignored", compare(o.data(), ref.data(), M * Hd), kTolBf16);
    } else {
      // The tensor-core P.V product multiplies future keys by an exact 0, so a NaN in a real value row reaches the
      // earlier queries of its 64-query tile too (0 * NaN). Required: every NaN of the reference is NaN here, and
      // the other batch stays finite.
      size_t missing = 0, leaked_other_batch = 0;
      for (size_t i = 0; i < M * Hd; i++) {
        if (std::isnan(ref[i]) && !std::isnan(o[i])) missing++;
        if (i >= T * Hd && !std::isfinite(o[i])) leaked_other_batch++;
      }
      record("attention", "bf16 wmma NaN in a real value propagates (not into other sequences)",
             missing == 0 && leaked_other_batch == 0, double(missing + leaked_other_batch), 0,
             fmt("%zu missing NaN, %zu non-finite in batch 1", missing, leaked_other_batch));
    }
  }
  check_attention_window(quick, r);
}

void check_activations() {
  Rng r(15);
  const Activation acts[] = {Activation::SiLU, Activation::ReLU, Activation::GELU, Activation::GELUTanh};
  const char* names[] = {"silu", "relu", "gelu", "gelu_tanh"};
  for (size_t n : {size_t(1), size_t(7), size_t(1000), size_t(1 << 20) + 3}) {
    std::vector<float> x = randn(n, r, 4.f), g = randn(n, r, 3.f);
    x[n / 2] = NAN;
    if (n > 4) { x[1] = INFINITY; x[2] = -INFINITY; }
    DevBuf dx = dev(x), dg = dev(g), dy(n * 4);
    for (int a = 0; a < 4; a++) {
      std::vector<float> ref(n), ref2(n);
      for (size_t i = 0; i < n; i++) { ref[i] = ref::act(x[i], acts[a]); ref2[i] = ref::act(g[i], acts[a]) * x[i]; }
      dy.poison();
      sc::activation_forward(dy.as<float>(), dx.as<float>(), n, acts[a], S);
      check("activation", fmt("%s n=%zu (with NaN/inf)", names[a], n), compare(host<float>(dy, n).data(), ref.data(), n), kTolExactish);
      dy.poison();
      sc::gated_forward(dy.as<float>(), dg.as<float>(), dx.as<float>(), n, acts[a], S);
      check("activation", fmt("gated %s n=%zu", names[a], n), compare(host<float>(dy, n).data(), ref2.data(), n), kTolExactish);
    }
  }
  // Row forms on bf16 with biases.
  const size_t M = 33, F = 301;
  std::vector<float> gu = round_bf16(randn(M * 2 * F, r, 2.f)), ub = randn(F, r, 0.2f), ref(M * F);
  for (size_t m = 0; m < M; m++)
    for (size_t f = 0; f < F; f++) ref[m * F + f] = ref::act(gu[m * 2 * F + f], Activation::SiLU) * (gu[m * 2 * F + F + f] + ub[f]);
  DevBuf dgu = dev(to_bf16(gu)), dub = dev(ub), dy(M * F * 2);
  dy.poison();
  sc::gated_rows_bf16(dy.as<sc::bf16>(), dgu.as<sc::bf16>(), nullptr, dub.as<float>(), M, F, Activation::SiLU, S);
  std::vector<float> o = from_bf16(host<uint16_t>(dy, M * F));
  check("activation", "gated rows bf16 silu + up bias", compare(o.data(), ref.data(), M * F), kTolBf16Out);
  std::vector<float> xr = round_bf16(randn(M * F, r, 2.f)), ref3(M * F);
  for (size_t i = 0; i < M * F; i++) ref3[i] = ref::act(xr[i] + ub[i % F], Activation::ReLU);
  DevBuf dxr = dev(to_bf16(xr));
  sc::activation_rows_bf16(dxr.as<sc::bf16>(), dub.as<float>(), M, F, Activation::ReLU, S);
  o = from_bf16(host<uint16_t>(dxr, M * F));
  check("activation", "activation rows bf16 relu + bias", compare(o.data(), ref3.data(), M * F), kTolBf16Out);
}

void check_logsoftmax(bool quick) {
  Rng r(16);
  const size_t cases[][2] = {{1, 1}, {3, 1000}, {7, 50257}, {2, 128256}, {300, 2048}};
  for (auto& c : cases) {
    const size_t M = c[0], V = c[1];
    std::vector<float> x = randn(M * V, r, 5.f);
    if (M > 2) x[2 * V + V / 3] = NAN;  // row 2 all NaN
    std::vector<int32_t> tg(M);
    for (size_t m = 0; m < M; m++) tg[m] = m % 4 == 1 ? -1 : int32_t(r.next() % V);
    std::vector<float> ref(M * V), lp(M);
    ref::log_softmax_forward(ref.data(), x.data(), M, V);
    ref::token_logprobs(lp.data(), x.data(), tg.data(), M, V);
    DevBuf dx = dev(x), dy(M * V * 4), dt = dev(tg), dl(M * 4);
    dy.poison(); dl.poison();
    sc::log_softmax_forward(dy.as<float>(), dx.as<float>(), M, V, S);
    check("logsoftmax", fmt("M=%zu V=%zu", M, V), compare(host<float>(dy, M * V).data(), ref.data(), M * V), kTolF32);
    sc::token_logprobs(dl.as<float>(), dx.as<float>(), dt.as<int32_t>(), M, V, S);
    check("logsoftmax", fmt("token logprobs M=%zu V=%zu (targets -1 -> 0)", M, V), compare(host<float>(dl, M).data(), lp.data(), M), kTolF32);
    // In place (y == x).
    sc::log_softmax_forward(dx.as<float>(), dx.as<float>(), M, V, S);
    check("logsoftmax", fmt("in place M=%zu V=%zu", M, V), compare(host<float>(dx, M * V).data(), ref.data(), M * V), kTolF32);
    if (quick && V > 60000) break;
  }
}

void check_cosine() {
  Rng r(17);
  const size_t cases[][2] = {{1, 4}, {37, 4096}, {100, 257}, {1000, 256}, {3, 1}, {2048, 2048}};
  for (auto& c : cases) {
    const size_t M = c[0], D = c[1];
    std::vector<float> a = randn(M * D, r), b = randn(M * D, r);
    for (size_t i = 0; i < M * D; i++) b[i] = 0.7f * a[i] + 0.3f * b[i];
    if (M > 3) for (size_t d = 0; d < D; d++) a[2 * D + d] = 0.f;  // a zero row
    std::vector<uint8_t> mask(M);
    for (auto& m : mask) m = (r.next() % 5) != 0;
    for (int masked = 0; masked < 2; masked++) {
      ref::Cos rc;
      ref::cosine_accumulate(&rc, a.data(), b.data(), masked ? mask.data() : nullptr, M, D);
      DevBuf da = dev(a), db = dev(b), dm = dev(mask), dacc(sizeof(sc::CosineAccum));
      H_CHECK(cudaMemset(dacc.p, 0, sizeof(sc::CosineAccum)));
      sc::cosine_accumulate(dacc.as<sc::CosineAccum>(), da.as<float>(), db.as<float>(), masked ? dm.as<uint8_t>() : nullptr, M, D, S);
      sc::CosineAccum g{};
      dacc.download(&g, sizeof g);
      const double err = std::fabs(g.sum - rc.sum) / std::max(1.0, std::fabs(rc.sum));
      record("cosine", fmt("f32 M=%zu D=%zu%s", M, D, masked ? " masked" : ""),
             err <= kTolCosine && g.count == rc.count && g.zeros == rc.zeros, err, kTolCosine,
             fmt("count %llu/%llu zeros %llu/%llu", g.count, (unsigned long long)rc.count, g.zeros, (unsigned long long)rc.zeros));
      // bf16 inputs: the reference on the rounded values.
      std::vector<float> ab = round_bf16(a), bb = round_bf16(b);
      ref::Cos rb;
      ref::cosine_accumulate(&rb, ab.data(), bb.data(), masked ? mask.data() : nullptr, M, D);
      DevBuf dab = dev(to_bf16(ab)), dbb = dev(to_bf16(bb));
      H_CHECK(cudaMemset(dacc.p, 0, sizeof(sc::CosineAccum)));
      sc::cosine_accumulate_bf16(dacc.as<sc::CosineAccum>(), dab.as<sc::bf16>(), dbb.as<sc::bf16>(), masked ? dm.as<uint8_t>() : nullptr, M, D, S);
      dacc.download(&g, sizeof g);
      const double eb = std::fabs(g.sum - rb.sum) / std::max(1.0, std::fabs(rb.sum));
      record("cosine", fmt("bf16 M=%zu D=%zu%s", M, D, masked ? " masked" : ""), eb <= kTolCosine && g.count == rb.count && g.zeros == rb.zeros, eb, kTolCosine);
    }
  }
  // Deterministic: the same inputs give bit-identical sums. NaN propagates.
  {
    const size_t M = 4096, D = 1024;
    std::vector<float> a = randn(M * D, r), b = randn(M * D, r);
    DevBuf da = dev(a), db = dev(b), dacc(sizeof(sc::CosineAccum));
    double first = 0;
    bool same = true;
    for (int i = 0; i < 3; i++) {
      H_CHECK(cudaMemset(dacc.p, 0, sizeof(sc::CosineAccum)));
      sc::cosine_accumulate(dacc.as<sc::CosineAccum>(), da.as<float>(), db.as<float>(), nullptr, M, D, S);
      sc::CosineAccum g{};
      dacc.download(&g, sizeof g);
      if (i == 0) first = g.sum;
      else same &= std::memcmp(&first, &g.sum, sizeof first) == 0;
    }
    record("cosine", "deterministic over repeated runs", same, 0, 0);
    a[5 * D + 7] = NAN;
    da.upload(a.data(), a.size() * 4);
    H_CHECK(cudaMemset(dacc.p, 0, sizeof(sc::CosineAccum)));
    sc::cosine_accumulate(dacc.as<sc::CosineAccum>(), da.as<float>(), db.as<float>(), nullptr, M, D, S);
    sc::CosineAccum g{};
    dacc.download(&g, sizeof g);
    record("cosine", "NaN in one row makes the sum NaN", std::isnan(g.sum), 0, 0);
  }
}

void check_gemm(bool quick) {
  Rng r(18);
  const size_t cases[][3] = {{1, 1, 1}, {3, 5, 7}, {64, 64, 64}, {100, 300, 257}, {37, 1024, 512}, {256, 1536, 1024}};
  sc::Gemm fb(false), lt(true);
  for (auto& c : cases) {
    const size_t M = c[0], N = c[1], K = c[2];
    std::vector<float> x = round_bf16(randn(M * K, r)), w = round_bf16(randn(N * K, r, 0.05f)), bias = randn(N, r);
    std::vector<float> ref(M * N), y0 = randn(M * N, r);
    streamline::ref::linear_forward(ref.data(), x.data(), w.data(), DType::F32, nullptr, M, N, K);
    DevBuf dx = dev(to_bf16(x)), dw = dev(to_bf16(w)), dy(M * N * 4), dyb(M * N * 2), db = dev(bias);
    for (int which = 0; which < 2; which++) {
      sc::Gemm& g = which ? lt : fb;
      if (which && !g.uses_cublaslt()) {
        record("gemm", fmt("cublaslt M=%zu N=%zu K=%zu", M, N, K), true, 0, 0, "skipped: " + streamline::cuda::lt::reason());
        continue;
      }
      const char* nm = which ? "cublaslt" : "fallback";
      dy.poison();
      g.run(dy.p, DType::F32, dx.as<sc::bf16>(), dw.as<sc::bf16>(), M, N, K, 0.f, S);
      check("gemm", fmt("%s f32 out M=%zu N=%zu K=%zu", nm, M, N, K), compare(host<float>(dy, M * N).data(), ref.data(), M * N), kTolF32Gemm * 10);
      dyb.poison();
      g.run(dyb.p, DType::BF16, dx.as<sc::bf16>(), dw.as<sc::bf16>(), M, N, K, 0.f, S);
      std::vector<float> ob = from_bf16(host<uint16_t>(dyb, M * N));
      check("gemm", fmt("%s bf16 out M=%zu N=%zu K=%zu", nm, M, N, K), compare(ob.data(), ref.data(), M * N), kTolBf16Out);
      dy.upload(y0.data(), M * N * 4);
      g.run(dy.p, DType::F32, dx.as<sc::bf16>(), dw.as<sc::bf16>(), M, N, K, 1.f, S);
      std::vector<float> racc(M * N);
      for (size_t i = 0; i < M * N; i++) racc[i] = ref[i] + y0[i];
      check("gemm", fmt("%s y += M=%zu N=%zu K=%zu", nm, M, N, K), compare(host<float>(dy, M * N).data(), racc.data(), M * N), kTolF32Gemm * 10);
    }
    // The f32 contract linear_forward with every weight dtype, bias and accumulate.
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      W wt = make_w(N * K, dt, r, 0.05f);
      std::vector<float> xf = randn(M * K, r), rf(M * N);
      streamline::ref::linear_forward(rf.data(), xf.data(), wt.f.data(), DType::F32, bias.data(), M, N, K);
      DevBuf dxf = dev(xf), dwt = dev(wt.bytes);
      dy.poison();
      sc::linear_forward(dy.as<float>(), dxf.as<float>(), dwt.p, dt, db.as<float>(), M, N, K, false, S);
      check("gemm", fmt("linear_forward w=%s bias M=%zu N=%zu K=%zu", dn(dt), M, N, K), compare(host<float>(dy, M * N).data(), rf.data(), M * N), kTolF32Gemm * 10);
      if (quick) break;
    }
  }
}

// The backward products (training step): dx = dy · W (overwrite and +=) and dw += dy^T · x, against
// streamline::ref::linear_backward on bf16-representable operands, so only the summation order differs.
void check_gemm_backward(bool quick) {
  Rng r(19);
  const size_t cases[][3] = {{1, 1, 1}, {3, 5, 7}, {100, 300, 257}, {37, 1024, 512}, {4099, 17, 65}, {512, 768, 96}};
  sc::Gemm fb(false), lt(true);
  for (auto& c : cases) {
    const size_t M = c[0], N = c[1], K = c[2];
    std::vector<float> x = round_bf16(randn(M * K, r)), w = round_bf16(randn(N * K, r, 0.05f)),
                       dy = round_bf16(randn(M * N, r)), dw0 = randn(N * K, r, 0.1f), dx0 = randn(M * K, r);
    std::vector<float> rdx(M * K), rdw(dw0);
    streamline::ref::linear_backward(rdx.data(), rdw.data(), nullptr, dy.data(), x.data(), w.data(), M, N, K);
    std::vector<float> rdx_acc(M * K);
    for (size_t i = 0; i < M * K; i++) rdx_acc[i] = rdx[i] + dx0[i];
    DevBuf dxb = dev(to_bf16(x)), dwb = dev(to_bf16(w)), ddy = dev(to_bf16(dy)), ddx(M * K * 4), ddw(N * K * 4);
    for (int which = 0; which < 2; which++) {
      sc::Gemm& g = which ? lt : fb;
      if (which && !g.uses_cublaslt()) {
        record("gemm", fmt("cublaslt backward M=%zu N=%zu K=%zu", M, N, K), true, 0, 0, "skipped: " + streamline::cuda::lt::reason());
        continue;
      }
      const char* nm = which ? "cublaslt" : "fallback";
      ddx.poison();
      g.run_dx(ddx.as<float>(), ddy.as<sc::bf16>(), dwb.as<sc::bf16>(), M, N, K, 0.f, S);
      check("gemm", fmt("%s dx = dy.W M=%zu N=%zu K=%zu", nm, M, N, K), compare(host<float>(ddx, M * K).data(), rdx.data(), M * K), kTolF32Gemm * 10);
      ddx.upload(dx0.data(), M * K * 4);
      g.run_dx(ddx.as<float>(), ddy.as<sc::bf16>(), dwb.as<sc::bf16>(), M, N, K, 1.f, S);
      check("gemm", fmt("%s dx += dy.W M=%zu N=%zu K=%zu", nm, M, N, K), compare(host<float>(ddx, M * K).data(), rdx_acc.data(), M * K), kTolF32Gemm * 10);
      ddw.upload(dw0.data(), N * K * 4);
      g.run_dw(ddw.as<float>(), ddy.as<sc::bf16>(), dxb.as<sc::bf16>(), M, N, K, S);
      check("gemm", fmt("%s dw += dy^T.x M=%zu N=%zu K=%zu", nm, M, N, K), compare(host<float>(ddw, N * K).data(), rdw.data(), N * K), kTolF32Gemm * 10);
    }
    if (quick && M > 1000) break;
  }
  // NaN in one dy element reaches exactly its row of dx and its row (n) of dw, as in the reference.
  {
    const size_t M = 33, N = 20, K = 40;
    std::vector<float> x = round_bf16(randn(M * K, r)), w = round_bf16(randn(N * K, r, 0.05f)), dy = round_bf16(randn(M * N, r));
    dy[5 * N + 7] = NAN;
    std::vector<float> rdx(M * K), rdw(N * K, 0.f);
    streamline::ref::linear_backward(rdx.data(), rdw.data(), nullptr, dy.data(), x.data(), w.data(), M, N, K);
    DevBuf dxb = dev(to_bf16(x)), dwb = dev(to_bf16(w)), ddy = dev(to_bf16(dy)), ddx(M * K * 4), ddw(N * K * 4);
    for (int which = 0; which < 2; which++) {
      sc::Gemm& g = which ? lt : fb;
      if (which && !g.uses_cublaslt()) continue;
      const char* nm = which ? "cublaslt" : "fallback";
      ddx.poison();
      g.run_dx(ddx.as<float>(), ddy.as<sc::bf16>(), dwb.as<sc::bf16>(), M, N, K, 0.f, S);
      check("gemm", fmt("%s dx with a NaN in dy", nm), compare(host<float>(ddx, M * K).data(), rdx.data(), M * K), kTolF32Gemm * 10);
      H_CHECK(cudaMemset(ddw.p, 0, N * K * 4));
      g.run_dw(ddw.as<float>(), ddy.as<sc::bf16>(), dxb.as<sc::bf16>(), M, N, K, S);
      check("gemm", fmt("%s dw with a NaN in dy", nm), compare(host<float>(ddw, N * K).data(), rdw.data(), N * K), kTolF32Gemm * 10);
    }
  }
}

}  // namespace

void run_op_checks(bool quick) {
  std::printf("op checks%s\n", quick ? " (quick)" : "");
  // Each op family on its own: an exception fails that family only (a sticky device error will fail the rest).
  auto guard = [](const char* name, auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      record(name, "uncaught exception", false, NAN, 0, e.what());
    }
  };
  guard("embedding", [] { check_embedding(); });
  guard("norm", [&] { check_norms(quick); });
  guard("rope", [] { check_rope(); });
  guard("activation", [] { check_activations(); });
  guard("logsoftmax", [&] { check_logsoftmax(quick); });
  guard("cosine", [] { check_cosine(); });
  guard("gemm", [&] { check_gemm(quick); });
  guard("gemm", [&] { check_gemm_backward(quick); });
  guard("attention", [&] { check_attention(quick); });
  std::fflush(stdout);
}

}  // namespace harness
