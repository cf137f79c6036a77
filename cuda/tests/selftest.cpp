// --cpu-selftest: checks that need no GPU, so CI exercises the harness itself: the CPU references against
// independent formulations, the bf16-emulating layer against the f32 layer, and the safetensors reader on good and
// crafted bad files.
#include <unistd.h>

#include <fstream>

#include "cpu_ref.h"
#include "harness.h"
#include "safetensors.h"

namespace harness {

namespace {
int g_fail = 0, g_pass = 0;
void expect(bool ok, const std::string& what) {
  (ok ? g_pass : g_fail)++;
  std::printf("%s cpu-selftest: %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

void write_st(const std::string& path, const std::string& header, const std::vector<uint8_t>& data) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(header.data(), std::streamsize(header.size()));
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}
bool throws_with(const std::string& path, const std::string& needle) {
  try {
    SafeTensors st(path);
  } catch (const std::exception& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}
}  // namespace

int run_cpu_selftest() {
  Rng r(3);
  // Attention reference: T=1 returns v; a query with only masked keys gets zeros and lse = -inf; full softmax agrees.
  {
    const size_t B = 1, T = 5, H = 2, Hk = 1, Dh = 4;
    std::vector<float> q = randn(B * T * H * Dh, r), k = randn(B * T * Hk * Dh, r), v = randn(B * T * Hk * Dh, r);
    std::vector<uint8_t> mask = {0, 1, 1, 0, 1};
    std::vector<float> out(B * T * H * Dh), lse(B * H * T);
    ref::attention_forward(out.data(), H * Dh, lse.data(), q.data(), H * Dh, k.data(), v.data(), Hk * Dh, mask.data(), B, T, H, Hk, Dh, 0.5f);
    expect(out[0] == 0.f && std::isinf(lse[0]) && lse[0] < 0, "attention ref: query with no visible key -> zeros, lse -inf");
    // Query 4, head 1: keys 1, 2, 4 visible.
    double s[3], mx = -1e30, z = 0;
    const size_t js[3] = {1, 2, 4};
    for (int a = 0; a < 3; a++) {
      double d = 0;
      for (size_t e = 0; e < Dh; e++) d += double(q[(4 * H + 1) * Dh + e]) * k[js[a] * Dh + e];
      s[a] = d * 0.5;
      mx = std::max(mx, s[a]);
    }
    for (double x : s) z += std::exp(x - mx);
    double o0 = 0;
    for (int a = 0; a < 3; a++) o0 += std::exp(s[a] - mx) / z * v[js[a] * Dh];
    expect(std::fabs(out[(4 * H + 1) * Dh] - o0) < 1e-5 && std::fabs(lse[1 * T + 4] - (mx + std::log(z))) < 1e-5,
           "attention ref: masked causal softmax and lse match a direct formula");
    std::vector<float> q1(Dh, 1.f), k1(Dh, 1.f), v1 = {1, 2, 3, 4}, o1(Dh);
    ref::attention_forward(o1.data(), Dh, nullptr, q1.data(), Dh, k1.data(), v1.data(), Dh, nullptr, 1, 1, 1, 1, Dh, 1.f);
    expect(o1 == v1, "attention ref: a single token returns its value");
  }
  // Norms: rmsnorm of a constant row is w; layernorm output has zero mean and unit variance.
  {
    std::vector<float> x(64, 3.f), y(64);
    ref::rmsnorm_forward(y.data(), x.data(), nullptr, streamline::DType::F32, 1, 64, 0.f);
    expect(std::fabs(y[7] - 1.f) < 1e-6, "rmsnorm ref: constant row -> 1");
    x = randn(64, r, 3.f);
    ref::layernorm_forward(y.data(), x.data(), nullptr, nullptr, streamline::DType::F32, 1, 64, 0.f);
    double m = 0, v = 0;
    for (float a : y) m += a;
    for (float a : y) v += (a - m / 64) * (a - m / 64);
    expect(std::fabs(m / 64) < 1e-5 && std::fabs(v / 64 - 1) < 1e-4, "layernorm ref: zero mean, unit variance");
  }
  // Log-softmax sums to one; cosine of a row with itself is 1 and a zero row is counted.
  {
    std::vector<float> x = randn(1000, r, 4.f), y(1000);
    ref::log_softmax_forward(y.data(), x.data(), 1, 1000);
    double s = 0;
    for (float a : y) s += std::exp(double(a));
    expect(std::fabs(s - 1) < 1e-5, "log_softmax ref: probabilities sum to 1");
    std::vector<float> a = randn(3 * 16, r);
    for (int d = 0; d < 16; d++) a[16 + d] = 0.f;
    ref::Cos c;
    ref::cosine_accumulate(&c, a.data(), a.data(), nullptr, 3, 16);
    expect(c.count == 3 && c.zeros == 1 && std::fabs(c.sum - 2.0) < 1e-12, "cosine ref: self-cosine 1, zero row counted");
  }
  // Layer reference: the bf16-emulating layer stays within the layer tolerance of the f32 layer.
  {
    ref::LayerSpecRef s{2, 9, 64, 4, 2, 16, 96, 16, true, true, true, true, false, streamline::Activation::SiLU, 1e-5f, 0.25f};
    ref::LayerWeightsRef w;
    auto mk = [&](size_t n, float sc, float off = 0.f) { auto v = randn(n, r, sc); for (auto& t : v) t += off; return round_bf16(v); };
    w.n1w = mk(64, 0.1f, 1.f); w.qw = mk(64 * 64, 0.125f); w.kw = mk(32 * 64, 0.125f); w.vw = mk(32 * 64, 0.125f);
    w.ow = mk(64 * 64, 0.125f); w.n2w = mk(64, 0.1f, 1.f); w.gw = mk(96 * 64, 0.125f); w.uw = mk(96 * 64, 0.125f);
    w.dw = mk(64 * 96, 0.1f);
    std::vector<int32_t> pos(18);
    for (int i = 0; i < 18; i++) pos[i] = i % 9;
    std::vector<float> inv(8), c(18 * 8), sn(18 * 8);
    for (int i = 0; i < 8; i++) inv[i] = float(std::pow(10000.0, -i / 8.0));
    ref::rope_tables(c.data(), sn.data(), pos.data(), inv.data(), 18, 8, 1.f);
    std::vector<uint8_t> mask(18, 1);
    mask[17] = mask[16] = 0;
    std::vector<float> h = randn(18 * 64, r), a = h, b = h;
    ref::decoder_layer(a, s, w, c.data(), sn.data(), mask.data(), true);
    ref::decoder_layer(b, s, w, c.data(), sn.data(), mask.data(), false);
    Compare cmp = compare(a.data(), b.data(), a.size());
    expect(cmp.nan_mismatch == 0 && cmp.rel_l2 < kTolLayerF32 && cmp.rel_l2 > 0,
           fmt("layer ref: bf16 emulation within %.0e of f32 (%.2e)", kTolLayerF32, cmp.rel_l2));
  }
  // The harness's local layer (f32, no bf16 emulation) against the project's CPU decoder_layer_forward.
  {
    struct St { const char* name; bool rms, gated, pre, rope, mlp_only, qkvb, ob, mlpb, nb; streamline::Activation act; size_t window = 0; bool qk = false; bool post = false; };
    const St styles[] = {{"llama", true, true, true, true, false, false, false, false, false, streamline::Activation::SiLU},
                         {"qwen2", true, true, true, true, false, true, false, false, false, streamline::Activation::SiLU},
                         {"llama mlp_bias", true, true, true, true, false, true, true, true, false, streamline::Activation::SiLU},
                         {"opt pre-norm", false, false, true, false, false, true, true, true, true, streamline::Activation::ReLU},
                         {"opt post-norm", false, false, false, false, false, true, true, true, true, streamline::Activation::ReLU},
                         {"gelu_tanh", true, true, true, true, false, false, false, false, false, streamline::Activation::GELUTanh},
                         {"mistral window 3", true, true, true, true, false, false, false, false, false, streamline::Activation::SiLU, 3},
                         {"qwen3 q/k norm", true, true, true, true, false, false, false, false, false, streamline::Activation::SiLU, 0, true},
                         {"qwen3 q/k norm + bias, window 4", true, true, true, true, false, true, true, false, false, streamline::Activation::SiLU, 4, true},
                         {"gemma3 post norms + q/k norm, window 4", true, true, true, true, false, false, false, false, false, streamline::Activation::GELUTanh, 4, true, true},
                         {"post norms + biases, layernorm", false, false, true, false, false, true, true, true, true, streamline::Activation::ReLU, 0, false, true},
                         {"mlp block", true, true, true, false, true, false, false, false, false, streamline::Activation::SiLU},
                         {"mlp block post_mlp_norm", true, true, true, false, true, false, false, false, false, streamline::Activation::GELUTanh, 0, false, true},
                         {"mlp block post-norm", false, false, false, false, true, false, false, true, true, streamline::Activation::ReLU}};
    for (const St& st : styles) {
      const size_t B = 2, T = 11, D = 64, H = 4, Hk = 2, Dh = 16, F = 96, M = B * T;
      ref::LayerSpecRef s{B, T, D, H, Hk, Dh, F, Dh, st.rms, st.gated, st.pre, st.rope, st.mlp_only, st.act, 1e-5f, 0.25f, st.window};
      ref::LayerWeightsRef w;
      auto mk = [&](size_t n, float sc, float off = 0.f) { auto v = randn(n, r, sc); for (auto& t : v) t += off; return v; };
      if (!st.mlp_only) {
        w.n1w = mk(D, 0.1f, 1.f); if (st.nb) w.n1b = mk(D, 0.1f);
        w.qw = mk(H * Dh * D, 0.125f); w.kw = mk(Hk * Dh * D, 0.125f); w.vw = mk(Hk * Dh * D, 0.125f); w.ow = mk(D * H * Dh, 0.125f);
        if (st.qkvb) { w.qb = mk(H * Dh, 0.1f); w.kb = mk(Hk * Dh, 0.1f); w.vb = mk(Hk * Dh, 0.1f); }
        if (st.ob) w.ob = mk(D, 0.1f);
        if (st.qk) { w.qn = mk(Dh, 0.5f, 1.f); w.kn = mk(Dh, 0.5f, 1.f); }
        if (st.post) w.pan = mk(D, 0.5f, 1.f);
      }
      if (st.post) w.pmn = mk(D, 0.5f, 1.f);
      w.n2w = mk(D, 0.1f, 1.f); if (st.nb) w.n2b = mk(D, 0.1f);
      if (st.gated) w.gw = mk(F * D, 0.125f);
      w.uw = mk(F * D, 0.125f); w.dw = mk(D * F, 0.1f);
      if (st.mlpb) { if (st.gated) w.gb = mk(F, 0.1f); w.ub = mk(F, 0.1f); w.db = mk(D, 0.1f); }
      std::vector<int32_t> pos(M);
      for (size_t m = 0; m < M; m++) pos[m] = int32_t(m % T);
      std::vector<float> inv(Dh / 2), c(M * Dh / 2), sn(M * Dh / 2);
      for (size_t i = 0; i < Dh / 2; i++) inv[i] = float(std::pow(10000.0, -double(2 * i) / double(Dh)));
      ref::rope_tables(c.data(), sn.data(), pos.data(), inv.data(), M, Dh / 2, 1.f);
      std::vector<uint8_t> mask(M, 1);
      mask[M - 1] = mask[M - 2] = 0;
      std::vector<float> h = randn(M * D, r), a = h, b = h;
      std::string err;
      try {
        ref::decoder_layer(a, s, w, c.data(), sn.data(), mask.data(), false);
        ref::contract_layer(b, s, w, pos.data(), mask.data(), inv.data());
      } catch (const std::exception& e) {
        err = e.what();
      }
      Compare cmp = compare(a.data(), b.data(), a.size());
      expect(err.empty() && cmp.nan_mismatch == 0 && cmp.rel_l2 < 1e-5,
             fmt("layer ref %s == CPU decoder_layer_forward (%.1e)%s", st.name, cmp.rel_l2, err.empty() ? "" : (" " + err).c_str()));
    }
  }
  // safetensors reader.
  {
    char tmpl[] = "/tmp/streamline-st-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd >= 0) close(fd);
    const std::string p = tmpl;
    std::vector<uint8_t> data(12);
    const float vals[3] = {1.5f, -2.f, 3.25f};
    std::memcpy(data.data(), vals, 12);
    write_st(p, R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", data);
    try {
      SafeTensors st(p);
      const StTensor* t = st.find("w");
      expect(t && t->numel() == 3 && static_cast<const float*>(t->data)[2] == 3.25f, "safetensors: reads a valid file");
    } catch (const std::exception& e) {
      expect(false, std::string("safetensors: valid file threw ") + e.what());
    }
    write_st(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data);
    expect(throws_with(p, "outside the data section"), "safetensors: offsets past the end are rejected");
    write_st(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", data);
    expect(throws_with(p, "does not match dtype x shape"), "safetensors: size mismatch is rejected");
    write_st(p, R"({"w":{"dtype":"Q4","shape":[3],"data_offsets":[0,12]}})", data);
    expect(throws_with(p, "unknown dtype"), "safetensors: unknown dtype is rejected");
    write_st(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]})", data);
    expect(throws_with(p, "JSON"), "safetensors: malformed header is rejected");
    {
      std::ofstream f(p, std::ios::binary);
      uint64_t n = uint64_t(1) << 40;
      f.write(reinterpret_cast<const char*>(&n), 8);
    }
    expect(throws_with(p, "larger than 100 MB"), "safetensors: oversized header length is rejected");
    std::remove(p.c_str());
  }
  // Sliding-window attention references: the strided (packed-row) loops against the shared reference with the same
  // window; a window >= T is no window; a window of one gives each real query its own value row; one row by hand.
  {
    const size_t B = 2, T = 23, H = 4, Hk = 2, Dh = 8, Hd = H * Dh, Kd = Hk * Dh, N = Hd + 2 * Kd;
    std::vector<float> q = randn(B * T * Hd, r), k = randn(B * T * Kd, r), v = randn(B * T * Kd, r), packed(B * T * N);
    for (size_t m = 0; m < B * T; m++) {
      std::copy(q.begin() + m * Hd, q.begin() + (m + 1) * Hd, packed.begin() + m * N);
      std::copy(k.begin() + m * Kd, k.begin() + (m + 1) * Kd, packed.begin() + m * N + Hd);
      std::copy(v.begin() + m * Kd, v.begin() + (m + 1) * Kd, packed.begin() + m * N + Hd + Kd);
    }
    std::vector<uint8_t> mask(B * T, 1);
    for (size_t t = 0; t < T; t += 3) mask[T + t] = 0;
    auto run = [&](bool strided, size_t W, std::vector<float>& lse) {
      std::vector<float> out(B * T * Hd);
      lse.assign(B * H * T, 0.f);
      if (strided)
        ref::attention_forward(out.data(), Hd, lse.data(), packed.data(), N, packed.data() + Hd, packed.data() + Hd + Kd,
                               N, mask.data(), B, T, H, Hk, Dh, 0.3f, W);
      else
        ref::attention_forward(out.data(), Hd, lse.data(), q.data(), Hd, k.data(), v.data(), Kd, mask.data(), B, T, H,
                               Hk, Dh, 0.3f, W);
      return out;
    };
    std::vector<float> l1, l2, l3;
    const std::vector<float> a = run(true, 5, l1), b = run(false, 5, l2);
    const Compare c = compare(a.data(), b.data(), a.size()), cl = compare(l1.data(), l2.data(), l1.size());
    expect(c.nan_mismatch == 0 && c.rel_l2 < 1e-6 && cl.nan_mismatch == 0 && cl.rel_l2 < 1e-6,
           fmt("attention ref, window 5: strided loops = shared reference (%.1e)", c.rel_l2));
    const std::vector<float> w = run(false, T, l1), none = run(false, 0, l2);
    expect(bit_mismatches(w.data(), none.data(), w.size()) == 0, "attention ref: window T = no window (bitwise)");
    const std::vector<float> one = run(true, 1, l3);
    double worst = 0;
    bool zeros = true;
    for (size_t b = 0; b < B; b++)
      for (size_t t = 0; t < T; t++)
        for (size_t h = 0; h < H; h++)
          for (size_t d = 0; d < Dh; d++) {
            const float o = one[((b * T + t) * H + h) * Dh + d];
            if (mask[b * T + t]) worst = std::max(worst, double(std::fabs(o - v[((b * T + t) * Hk + h / 2) * Dh + d])));
            else zeros = zeros && o == 0.f;
          }
    expect(worst < 1e-6 && zeros, "attention ref, window 1: a real query's output is its value row, a padded one 0");
    // Batch 1, query 19, head 3 (KV head 1), window 5: keys 15..19 less the padded 15 and 18.
    const size_t i = 19, h = 3;
    double s[3], mx = -1e30, z = 0, o0 = 0;
    const size_t js[3] = {16, 17, 19};
    for (int n = 0; n < 3; n++) {
      double d = 0;
      for (size_t e = 0; e < Dh; e++) d += double(q[((T + i) * H + h) * Dh + e]) * k[((T + js[n]) * Hk + 1) * Dh + e];
      s[n] = d * 0.3;
      mx = std::max(mx, s[n]);
    }
    for (double x : s) z += std::exp(x - mx);
    for (int n = 0; n < 3; n++) o0 += std::exp(s[n] - mx) / z * v[((T + js[n]) * Hk + 1) * Dh];
    expect(std::fabs(a[((T + i) * H + h) * Dh] - o0) < 1e-5, "attention ref, window 5: one row by hand");
  }
  std::printf("cpu-selftest: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}

}  // namespace harness
