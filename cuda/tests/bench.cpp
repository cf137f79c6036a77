// Benchmarks with CUDA events (median of repeats after warm-up, random data, never zeros):
// - ceilings: device-to-device copy bandwidth (bytes read + written) and a large bf16 GEMM through cuBLASLt;
// - the fused cosine kernel (f32 and bf16 boundary states, 8 x 2048 tokens x 4096) against the copy ceiling;
// - one Llama-3.1-8B-shaped decoder layer (hidden 4096, intermediate 14336, 32 heads, 8 KV heads, head 128,
//   8 x 2048 tokens, bf16 weights): tokens/s, TFLOP/s, fraction of the measured GEMM rate, a per-stage breakdown,
//   weight upload rate from pageable host memory, and peak GPU memory;
// - one optimiser step of a replacement (issue 9) on the same shapes: the `layer` kind (forward with saved
//   activations, MSE, backward, clip, AdamW) and the `mlp` kind: tokens/s, model TFLOP/s, step/apply split, memory.
#include <algorithm>
#include <chrono>
#include <thread>

#include "attention.cuh"
#include "cosine.cuh"
#include "cublaslt_loader.h"
#include "decoder_layer.cuh"
#include "harness.h"
#include "replacement.cuh"
#include "train_util.h"

namespace harness {

namespace sc = streamline::cuda;

namespace {

__attribute__((noinline)) void fill_random_bf16(uint16_t* p, size_t n, uint64_t seed, float scale) {
  Rng r(seed);
  for (size_t i = 0; i < n; i++) p[i] = streamline::f32_to_bf16(r.sym(scale));
}

// Random device data without a host round trip: a host pattern replicated on the device.
void device_random(void* d, size_t bytes, uint64_t seed) {
  const size_t chunk = std::min<size_t>(bytes, size_t(64) << 20);
  std::vector<uint16_t> h(chunk / 2);
  fill_random_bf16(h.data(), h.size(), seed, 1.f);
  for (size_t off = 0; off < bytes; off += chunk)
    H_CHECK(cudaMemcpy(static_cast<char*>(d) + off, h.data(), std::min(chunk, bytes - off), cudaMemcpyHostToDevice));
}

double g_copy_tbs = 0, g_gemm_tflops = 0;

void bench_ceilings(bool quick) {
  const size_t bytes = size_t(quick ? 1 : 4) << 30;
  DevBuf a(bytes), b(bytes);
  device_random(a.p, bytes, 1);
  const double ms = time_ms([&] { H_CHECK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, nullptr)); }, 3, 10, nullptr);
  g_copy_tbs = 2.0 * double(bytes) / (ms * 1e-3) / 1e12;
  bench_record("d2d copy bandwidth (read+write)", g_copy_tbs, "TB/s", fmt("%.1f GiB in %.3f ms", double(bytes) / (1 << 30), ms));
  if (!sc::lt::api()) {
    bench_record("bf16 GEMM rate", 0, "TFLOP/s", "cuBLASLt unavailable: " + sc::lt::reason());
    return;
  }
  const size_t n = quick ? 4096 : 8192;
  DevBuf x(n * n * 2), w(n * n * 2), y(n * n * 2);
  device_random(x.p, x.bytes, 2);
  device_random(w.p, w.bytes, 3);
  sc::Gemm g(true);
  const double gm = time_ms([&] { g.run(y.p, streamline::DType::BF16, x.as<sc::bf16>(), w.as<sc::bf16>(), n, n, n, 0.f, nullptr); }, 3, 10, nullptr);
  g_gemm_tflops = 2.0 * double(n) * n * n / (gm * 1e-3) / 1e12;
  bench_record(fmt("bf16 GEMM %zux%zux%zu (cuBLASLt)", n, n, n), g_gemm_tflops, "TFLOP/s", fmt("%.3f ms", gm));
}

void bench_cosine() {
  const size_t M = 8 * 2048, D = 4096;
  for (int bf = 0; bf < 2; bf++) {
    const size_t es = bf ? 2 : 4, bytes = M * D * es;
    // Several pairs so repeated runs do not hit L2 (60 MB) with the same data.
    const int pairs = 4;
    std::vector<DevBuf> a, b;
    for (int i = 0; i < pairs; i++) {
      a.emplace_back(bytes);
      b.emplace_back(bytes);
      device_random(a.back().p, bytes, 10 + i);
      device_random(b.back().p, bytes, 20 + i);
    }
    DevBuf acc(sizeof(sc::CosineAccum));
    H_CHECK(cudaMemset(acc.p, 0, sizeof(sc::CosineAccum)));
    int k = 0;
    const double ms = time_ms([&] {
      const int i = k++ % pairs;
      if (bf) sc::cosine_accumulate_bf16(acc.as<sc::CosineAccum>(), a[i].as<sc::bf16>(), b[i].as<sc::bf16>(), nullptr, M, D, nullptr);
      else sc::cosine_accumulate(acc.as<sc::CosineAccum>(), a[i].as<float>(), b[i].as<float>(), nullptr, M, D, nullptr);
    }, 4, 20, nullptr);
    const double tbs = 2.0 * double(bytes) / (ms * 1e-3) / 1e12;
    bench_record(fmt("fused cosine %s [%zu x %zu] pair", bf ? "bf16" : "f32", M, D), tbs, "TB/s",
                 fmt("%.3f ms; %.0f%% of copy", ms, g_copy_tbs > 0 ? 100.0 * tbs / g_copy_tbs : 0.0));
  }
}

void bench_layer(bool quick) {
  sc::LayerSpec s;
  s.batch = quick ? 2 : 8; s.seq_len = 2048; s.hidden = 4096; s.heads = 32; s.kv_heads = 8; s.head_dim = 128;
  s.intermediate = 14336; s.norm = sc::NormKind::RMS; s.norm_eps = 1e-5f; s.act = streamline::Activation::SiLU;
  s.gated = true; s.pre_norm = true; s.use_rope = true; s.rot_dim = 128;
  const size_t D = s.hidden, F = s.intermediate, Hd = s.heads * s.head_dim, Kd = s.kv_heads * s.head_dim, M = s.batch * s.seq_len;
  const bool lt_ok = sc::lt::api() != nullptr;
  if (!lt_ok) {
    bench_record("llama-3.1-8B layer", 0, "tok/s", "skipped: cuBLASLt unavailable (" + sc::lt::reason() + ")");
    return;
  }
  // Host weights (pageable, as from a memory-mapped checkpoint), random bf16.
  size_t sizes[sc::kRoleCount] = {};
  sizes[sc::kAttnNormW] = D; sizes[sc::kQW] = Hd * D; sizes[sc::kKW] = Kd * D; sizes[sc::kVW] = Kd * D;
  sizes[sc::kOW] = D * Hd; sizes[sc::kMlpNormW] = D; sizes[sc::kGateW] = F * D; sizes[sc::kUpW] = F * D; sizes[sc::kDownW] = D * F;
  std::vector<std::vector<uint16_t>> host(sc::kRoleCount);
  sc::HostTensor roles[sc::kRoleCount];
  size_t weight_bytes = 0;
  for (int r = 0; r < sc::kRoleCount; r++) {
    if (!sizes[r]) continue;
    host[r].resize(sizes[r]);
    const bool norm = r == sc::kAttnNormW || r == sc::kMlpNormW;
    fill_random_bf16(host[r].data(), sizes[r], 100 + r, norm ? 1.f : 0.02f);
    if (norm) for (auto& v : host[r]) v = streamline::f32_to_bf16(1.f + 0.1f * streamline::bf16_to_f32(v));
    roles[r] = sc::HostTensor{host[r].data(), streamline::DType::BF16, sizes[r]};
    weight_bytes += sizes[r] * 2;
  }
  sc::device_bytes_reset_peak();
  const size_t base = sc::device_bytes_current();
  sc::Context ctx(s, true);
  std::vector<int32_t> pos(M);
  for (size_t m = 0; m < M; m++) pos[m] = int32_t(m % s.seq_len);
  std::vector<float> inv(64);
  for (int i = 0; i < 64; i++) inv[i] = float(1.0 / std::pow(500000.0, 2.0 * i / 128.0));
  ctx.set_inputs(pos.data(), nullptr, inv.data(), 1.f);
  Rng r(5);
  std::vector<float> h = randn(M * D, r);
  ctx.upload_hidden(h.data());
  // Upload rate (pageable host -> pinned -> device), first upload includes page faults of the host buffers.
  ctx.upload_layer(0, roles);
  ctx.synchronize();
  cudaEvent_t e0, e1;
  H_CHECK(cudaEventCreate(&e0));
  H_CHECK(cudaEventCreate(&e1));
  auto wall = [] { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return double(t.tv_sec) + 1e-9 * double(t.tv_nsec); };
  double t0 = wall();
  ctx.upload_layer(1, roles);
  ctx.synchronize();
  const double up_s = wall() - t0;
  bench_record("layer weight upload (pageable host -> GPU)", double(weight_bytes) / up_s / 1e9, "GB/s",
               fmt("%.1f MB in %.1f ms", double(weight_bytes) / 1e6, up_s * 1e3));
  // Forward of one layer: median over repeats (the hidden state evolves; values stay finite with these scales).
  auto reset = [&] { ctx.upload_hidden(h.data()); };
  reset();
  const double ms = time_ms([&] { ctx.run_layer(0); }, 2, quick ? 3 : 7, ctx.compute_stream());
  const double gemm_flops = 2.0 * double(M) * (double(D) * (Hd + 2 * Kd) + double(Hd) * D + double(D) * 2 * F + double(F) * D);
  const double attn_flops = 4.0 * double(s.batch) * s.heads * s.head_dim * (double(s.seq_len) * (s.seq_len + 1) / 2);
  const double tflops = (gemm_flops + attn_flops) / (ms * 1e-3) / 1e12;
  bench_record(fmt("llama-3.1-8B layer fwd %zux%zu tokens", s.batch, s.seq_len), double(M) / (ms * 1e-3), "tok/s", fmt("%.3f ms", ms));
  bench_record("llama-3.1-8B layer fwd rate", tflops, "TFLOP/s",
               fmt("%.0f%% of measured GEMM rate; %.2f TFLOP per layer", g_gemm_tflops > 0 ? 100.0 * tflops / g_gemm_tflops : 0.0,
                   (gemm_flops + attn_flops) / 1e12));
  std::vector<float> out(M * D);
  ctx.download_hidden(out.data());
  size_t bad = 0;
  for (float v : out) bad += !std::isfinite(v);
  record("bench", "8B layer output finite", bad == 0, double(bad), 0);
  // Stage breakdown: attention alone on the layer's buffers shape.
  {
    DevBuf qkv(M * (Hd + 2 * Kd) * 2), ao(M * Hd * 2);
    device_random(qkv.p, qkv.bytes, 7);
    const sc::bf16* q = qkv.as<sc::bf16>();
    const size_t W_ = Hd + 2 * Kd;
    for (int variant = 0; variant < 2; variant++) {
      sc::set_attention_variant(variant == 0);
      const double am = time_ms([&] {
        sc::attention_forward_bf16(ao.as<sc::bf16>(), Hd, nullptr, q, W_, q + Hd, q + Hd + Kd, W_, nullptr, s.batch,
                                   s.seq_len, s.heads, s.kv_heads, s.head_dim, 1.f / std::sqrt(128.f), 0, nullptr);
      }, 1, 3, nullptr);
      bench_record(variant == 0 ? "  attention (flash, bf16 wmma, O in registers)" : "  attention v1 (O in shared memory)",
                   attn_flops / (am * 1e-3) / 1e12, "TFLOP/s", fmt("%.3f ms", am));
    }
    sc::set_attention_variant(true);
    sc::Gemm g(true);
    DevBuf xin(M * F * 2), yo(M * 2 * F * 2);
    device_random(xin.p, xin.bytes, 8);
    DevBuf wgu(2 * F * D * 2);
    device_random(wgu.p, wgu.bytes, 9);
    const double gm = time_ms([&] { g.run(yo.p, streamline::DType::BF16, xin.as<sc::bf16>(), wgu.as<sc::bf16>(), M, 2 * F, D, 0.f, nullptr); }, 1, 3, nullptr);
    bench_record("  gate+up GEMM", 2.0 * M * 2 * F * D / (gm * 1e-3) / 1e12, "TFLOP/s", fmt("%.3f ms of the layer", gm));
  }
  // Streaming: 4 layers alternating slots with the next upload overlapping compute, vs compute only.
  {
    reset();
    ctx.synchronize();
    t0 = wall();
    ctx.upload_layer(0, roles);
    for (int k = 0; k < 4; k++) {
      ctx.run_layer(k % 2);
      if (k + 1 < 4) ctx.upload_layer((k + 1) % 2, roles);
    }
    ctx.synchronize();
    const double stream_s = wall() - t0;
    bench_record("4 layers streamed (upload overlaps compute)", stream_s * 1e3, "ms",
                 fmt("compute alone %.1f ms, uploads alone %.1f ms", 4 * ms, 4 * up_s * 1e3));
  }
  bench_record("peak GPU memory (backend allocations)", double(sc::device_bytes_peak() - base) / (1 << 30), "GiB",
               fmt("layer weights %.2f GiB per slot", double(weight_bytes) / (1 << 30)));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}

__attribute__((noinline)) void fill_sym(std::vector<float>& v, uint64_t seed, float scale, float offset) {
  Rng r(seed);
  for (auto& x : v) x = offset + r.sym(scale);
}

// Micro-batches from pageable host memory, as the trainer feeds them: train_step (upload on the compute stream, then
// compute) against the pipeline (stage of micro-batch i+1 on a second thread, through the pinned halves on the copy
// stream, while step_staged(i) computes). Host wall time per micro-batch, without apply (an optimiser step of
// several micro-batches amortises it); the ratio is what prefetching saves. Prediction in cuda/NOTES.md.
void bench_prefetch(sc::TrainStep& t, const streamline::ReplacementSpec& s, const std::vector<float>& hx,
                    const std::vector<float>& ht, const std::vector<int32_t>& pos, bool quick, size_t base) {
  const int n = quick ? 3 : 6;
  using clk = std::chrono::steady_clock;
  auto wall = [&](auto&& f) {
    f(1);  // warm-up (allocates the second slot and the pinned halves on first use)
    const auto t0 = clk::now();
    f(n);
    return std::chrono::duration<double, std::milli>(clk::now() - t0).count() / n;
  };
  const double plain = wall([&](int k) {
    for (int i = 0; i < k; i++) t.step(hx.data(), ht.data(), pos.data(), nullptr, s.B, 1.f);
  });
  const double piped = wall([&](int k) {
    t.stage(hx.data(), ht.data(), pos.data(), nullptr, s.B);
    for (int i = 0; i < k; i++) {
      std::thread next([&] {
        if (i + 1 < k) t.stage(hx.data(), ht.data(), pos.data(), nullptr, s.B);
      });
      t.step_staged(1.f);
      next.join();
    }
  });
  // The same pipeline from a bf16 pair cache as the trainer now feeds it: one bf16 pointer per sequence, half the
  // bytes through the pinned halves, widened on the copy stream (and no host widening, which the f32 rows above leave
  // out although the trainer paid it).
  const tr::Bf16Rows xr = tr::bf16_rows(hx, s.B, s.T * s.D), yr = tr::bf16_rows(ht, s.B, s.T * s.D);
  const double piped16 = wall([&](int k) {
    t.stage_bf16(xr.ptrs.data(), yr.ptrs.data(), pos.data(), nullptr, s.B);
    for (int i = 0; i < k; i++) {
      std::thread next([&] {
        if (i + 1 < k) t.stage_bf16(xr.ptrs.data(), yr.ptrs.data(), pos.data(), nullptr, s.B);
      });
      t.step_staged(1.f);
      next.join();
    }
  });
  const double peak = double(sc::device_bytes_peak() - base) / (1 << 30);
  double upload = 0;
  {
    const size_t bytes = s.B * s.T * s.D * 4;
    DevBuf d = dev(hx);
    const auto t0 = clk::now();
    H_CHECK(cudaMemcpy(d.p, hx.data(), bytes, cudaMemcpyHostToDevice));
    H_CHECK(cudaMemcpy(d.p, ht.data(), bytes, cudaMemcpyHostToDevice));
    upload = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
  }
  bench_record(fmt("8B layer micro-batch from host, train_step %zux%zu", s.B, s.T), plain, "ms",
               fmt("pageable upload of x + target alone %.1f ms", upload));
  bench_record(fmt("8B layer micro-batch from host, stage+step_staged %zux%zu", s.B, s.T), piped, "ms",
               fmt("%.0f%% of train_step's time; pinned staging %.0f MiB", 100.0 * piped / plain,
                   double(t.pinned_bytes()) / (1 << 20)));
  bench_record(fmt("8B layer micro-batch from a bf16 cache, stage_bf16+step_staged %zux%zu", s.B, s.T), piped16, "ms",
               fmt("%.0f%% of train_step's time, %.0f%% of the f32 pipeline's", 100.0 * piped16 / plain,
                   100.0 * piped16 / piped));
  bench_record("8B layer train step peak GPU memory with prefetch", peak, "GiB", fmt("TrainStep %.2f GiB with the second input slot", double(t.device_bytes()) / (1 << 30)));
}

// Llama-3.1-8B-shaped replacement weights for the training benchmarks (norm weights near 1, matrices small), the
// Llama-3 RoPE frequencies (theta 500000), and the parameter count.
struct Replacement8B {
  std::vector<std::vector<float>> host;
  std::array<const float*, streamline::kCudaTrainRoles> params{};
  size_t count = 0;
  std::vector<float> inv;
};
Replacement8B replacement_8b(streamline::ReplacementKind kind, const streamline::ReplacementSpec& s, uint64_t seed) {
  using streamline::ReplacementKind;
  Replacement8B out;
  out.host.resize(streamline::kCudaTrainRoles);
  for (int r = 0; r < streamline::kCudaTrainRoles; r++) {
    const bool layer_role = r == streamline::kRoleAttnNormW || r == streamline::kRoleQW || r == streamline::kRoleKW ||
                            r == streamline::kRoleVW || r == streamline::kRoleOW;
    const bool mlp_role = r == streamline::kRoleMlpNormW || r == streamline::kRoleGateW || r == streamline::kRoleUpW ||
                          r == streamline::kRoleDownW;
    if (!mlp_role && !(layer_role && kind == ReplacementKind::Layer)) continue;
    size_t rows = 0, cols = 0;
    sc::train_role_shape(s, r, &rows, &cols);
    out.host[r].resize(rows * cols);
    const bool norm = cols == 1;
    fill_sym(out.host[r], seed + uint64_t(r), norm ? 0.1f : 0.02f, norm ? 1.f : 0.f);
    out.params[r] = out.host[r].data();
    out.count += out.host[r].size();
  }
  out.inv.resize(64);
  for (int i = 0; i < 64; i++) out.inv[i] = float(1.0 / std::pow(500000.0, 2.0 * i / 128.0));
  return out;
}

// One optimiser step = one micro-batch of B x T tokens (forward, loss, backward) + clip + AdamW, all on the device
// (inputs resident, as in the PyTorch script). Model FLOPs: the forward GEMMs three times (forward, dX, dW) and the
// causal attention 3.5 times (forward 2 products, backward 5).
void bench_train(bool quick) {
  using streamline::ReplacementKind;
  const bool lt_ok = sc::lt::api() != nullptr;
  for (int k = 0; k < 2; k++) {
    const ReplacementKind kind = k == 0 ? ReplacementKind::Layer : ReplacementKind::MLP;
    const char* kname = k == 0 ? "layer" : "mlp";
    if (!lt_ok) {
      bench_record(fmt("8B %s train step", kname), 0, "tok/s", "skipped: cuBLASLt unavailable (" + sc::lt::reason() + ")");
      continue;
    }
    streamline::ReplacementSpec s;
    s.B = quick ? 2 : 8; s.T = 2048; s.D = 4096; s.H = 32; s.Hk = 8; s.Dh = 128; s.F = 14336;
    s.layer_norm = false; s.norm_eps = 1e-5f; s.act = streamline::Activation::SiLU; s.gated = true; s.use_rope = true;
    s.attn_scale = 1.f / std::sqrt(128.f);
    const size_t M = s.B * s.T, D = s.D, F = s.F, Q = s.H * s.Dh, KV = s.Hk * s.Dh;
    const Replacement8B rp = replacement_8b(kind, s, 300);
    const auto& params = rp.params;
    const size_t nparams = rp.count;
    const std::vector<float>& inv = rp.inv;
    sc::device_bytes_reset_peak();
    const size_t base = sc::device_bytes_current();
    sc::TrainStep t(kind, s, params, inv.data(), true);
    std::vector<float> hx(M * D), ht(M * D);
    fill_sym(hx, 11, 1.f, 0.f);
    fill_sym(ht, 12, 1.f, 0.f);
    std::vector<int32_t> pos(M);
    for (size_t m = 0; m < M; m++) pos[m] = int32_t(m % s.T);
    DevBuf dx = dev(hx), dt = dev(ht), dp = dev(pos);
    streamline::AdamWOptions opt;
    long long step = 1;
    auto one = [&] {
      t.enqueue_step(dx.as<float>(), dt.as<float>(), dp.as<int32_t>(), nullptr, s.B, 1.f);
      opt.step = step++;
      t.enqueue_apply(opt, 5.0);
    };
    const int reps = quick ? 3 : 5;
    const double ms = time_ms(one, 2, reps, t.stream());
    const double fwd_only = time_ms([&] {
      t.enqueue_step(dx.as<float>(), dt.as<float>(), dp.as<int32_t>(), nullptr, s.B, 1.f);
    }, 1, reps, t.stream());
    const double apply_ms = time_ms([&] { opt.step = step++; t.enqueue_apply(opt, 5.0); }, 1, reps, t.stream());
    double loss = 0;
    H_CHECK(cudaMemcpy(&loss, t.loss_device(), sizeof loss, cudaMemcpyDeviceToHost));
    const double gemm_fwd = kind == ReplacementKind::Layer
                                ? 2.0 * double(M) * (double(D) * (Q + 2 * KV) + double(Q) * D + 3.0 * double(F) * D)
                                : 2.0 * double(M) * 3.0 * double(F) * D;
    const double attn_fwd = kind == ReplacementKind::Layer
                                ? 4.0 * double(s.B) * s.H * s.Dh * (double(s.T) * (s.T + 1) / 2) : 0.0;
    const double flops = 3.0 * gemm_fwd + 3.5 * attn_fwd;
    const double tflops = flops / (ms * 1e-3) / 1e12;
    bench_record(fmt("8B %s train step %zux%zu tokens", kname, s.B, s.T), double(M) / (ms * 1e-3), "tok/s",
                 fmt("%.3f ms (fwd+loss+bwd %.3f ms, clip+AdamW %.3f ms)", ms, fwd_only, apply_ms));
    bench_record(fmt("8B %s train step rate", kname), tflops, "TFLOP/s",
                 fmt("%.0f%% of measured GEMM rate; %.2f model TFLOP per step", g_gemm_tflops > 0 ? 100.0 * tflops / g_gemm_tflops : 0.0,
                     flops / 1e12));
    bench_record(fmt("8B %s train step peak GPU memory", kname), double(sc::device_bytes_peak() - base) / (1 << 30), "GiB",
                 fmt("TrainStep %.2f GiB, of which f32 params/grads/Adam moments %.2f GiB (%.0fM params)",
                     double(t.device_bytes()) / (1 << 30), 16.0 * double(nparams) / (1 << 30), double(nparams) / 1e6));
    record("bench", fmt("8B %s train step loss finite", kname), std::isfinite(loss), loss, 0);
    if (kind == ReplacementKind::Layer) bench_prefetch(t, s, hx, ht, pos, quick, base);
  }
}

// The lm objective (issue 9) at the 8B shape: a layer replacement whose loss runs through `frozen` frozen layers and
// the Llama-3 head (vocabulary 128256, bf16). One step = step_lm from host memory (x and targets uploaded, as the
// trainer does) + clip + AdamW. Model FLOPs: the replacement as in bench_train; each frozen layer's forward GEMMs
// three times (forward, the recomputation, dX; no dW) less the last layer's recomputation; attention forward 2x +
// backward 5 / 2 (no dW analogue: dQ, dK, dV and dP need 4 of its 5 products) approximated as 4.5x the forward; the
// head's GEMM twice (logits, dX).
void bench_lm(bool quick) {
  using streamline::ReplacementKind;
  if (!sc::lt::api()) {
    bench_record("8B layer lm step", 0, "tok/s", "skipped: cuBLASLt unavailable (" + sc::lt::reason() + ")");
    return;
  }
  const size_t frozen = quick ? 1 : 2, V = 128256;
  streamline::ReplacementSpec s;
  s.B = quick ? 2 : 8; s.T = 2048; s.D = 4096; s.H = 32; s.Hk = 8; s.Dh = 128; s.F = 14336;
  s.layer_norm = false; s.norm_eps = 1e-5f; s.act = streamline::Activation::SiLU; s.gated = true; s.use_rope = true;
  s.attn_scale = 1.f / std::sqrt(128.f);
  const size_t M = s.B * s.T, D = s.D, F = s.F, Q = s.H * s.Dh, KV = s.Hk * s.Dh;
  const Replacement8B rp = replacement_8b(ReplacementKind::Layer, s, 700);
  // Frozen weights: one bf16 pattern buffer tiled (the values do not matter to the timing; generating 1.4 G random
  // values would cost the check seconds).
  std::vector<float> pat(size_t(1) << 20);
  fill_sym(pat, 31, 0.02f, 0.f);
  const std::vector<uint16_t> patb = to_bf16(pat);
  auto tiled = [&](size_t n) {
    std::vector<uint16_t> v(n);
    for (size_t i = 0; i < n; i += patb.size()) std::memcpy(v.data() + i, patb.data(), std::min(patb.size(), n - i) * 2);
    return v;
  };
  const std::vector<uint16_t> wqkv = tiled((Q + 2 * KV) * D), wo = tiled(D * Q), wgu = tiled(F * D), wd = tiled(D * F);
  const std::vector<uint16_t> head = tiled(V * D);
  std::vector<float> ones(D, 1.f);
  sc::HostTensor roles[sc::kRoleCount];
  roles[sc::kAttnNormW] = {ones.data(), streamline::DType::F32, D};
  roles[sc::kMlpNormW] = {ones.data(), streamline::DType::F32, D};
  roles[sc::kQW] = {wqkv.data(), streamline::DType::BF16, Q * D};
  roles[sc::kKW] = {wqkv.data() + Q * D, streamline::DType::BF16, KV * D};
  roles[sc::kVW] = {wqkv.data() + (Q + KV) * D, streamline::DType::BF16, KV * D};
  roles[sc::kOW] = {wo.data(), streamline::DType::BF16, D * Q};
  roles[sc::kGateW] = {wgu.data(), streamline::DType::BF16, F * D};
  roles[sc::kUpW] = {wgu.data(), streamline::DType::BF16, F * D};
  roles[sc::kDownW] = {wd.data(), streamline::DType::BF16, D * F};
  std::vector<const sc::HostTensor*> layers(frozen, roles);
  sc::device_bytes_reset_peak();
  const size_t base = sc::device_bytes_current();
  sc::TrainStep t(ReplacementKind::Layer, s, rp.params, rp.inv.data(), true);
  const auto u0 = std::chrono::steady_clock::now();
  t.set_lm_tail(layers, sc::HostTensor{ones.data(), streamline::DType::F32, D}, sc::HostTensor{},
                sc::HostTensor{head.data(), streamline::DType::BF16, V * D}, V);
  const double upload_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - u0).count();
  std::vector<float> hx(M * D);
  fill_sym(hx, 13, 1.f, 0.f);
  std::vector<int32_t> pos(M), tg(M);
  for (size_t m = 0; m < M; m++) pos[m] = int32_t(m % s.T), tg[m] = m % s.T == s.T - 1 ? -1 : int32_t((m * 7919) % V);
  streamline::AdamWOptions opt;
  double loss = 0;
  std::vector<double> ms;
  for (int i = 0; i < (quick ? 3 : 4); i++) {
    const auto a = std::chrono::steady_clock::now();
    loss = t.step_lm(hx.data(), tg.data(), pos.data(), nullptr, s.B, 1.f);
    opt.step = i + 1;
    t.apply(opt, 5.0);
    if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const double layer_gemm = 2.0 * double(M) * (double(D) * (Q + 2 * KV) + double(Q) * D + 3.0 * double(F) * D);
  const double attn_fwd = 4.0 * double(s.B) * s.H * s.Dh * (double(s.T) * (s.T + 1) / 2);
  const double flops = 3.0 * layer_gemm + 3.5 * attn_fwd +                                   // the replacement
                       (3.0 * frozen - 1) * layer_gemm + (4.5 * frozen - 1) * attn_fwd +    // frozen layers
                       2.0 * 2.0 * double(M) * double(V) * double(D);                       // head
  bench_record(fmt("8B layer lm step (%zu frozen layers + 128k head) %zux%zu tokens", frozen, s.B, s.T),
               double(M) / (med * 1e-3), "tok/s", fmt("%.1f ms per optimiser step, inputs from host; tail upload %.2f s", med, upload_s));
  bench_record("8B layer lm step rate", flops / (med * 1e-3) / 1e12, "TFLOP/s",
               fmt("%.0f%% of measured GEMM rate; %.2f model TFLOP per step",
                   g_gemm_tflops > 0 ? 100.0 * flops / (med * 1e-3) / 1e12 / g_gemm_tflops : 0.0, flops / 1e12));
  // The same micro-batches through the lm prefetch (stage_lm of the next one on a second thread while this one runs),
  // without apply: host wall time per micro-batch, against step_lm alone.
  const int n = quick ? 2 : 4;
  using clk = std::chrono::steady_clock;
  auto t0 = clk::now();
  for (int i = 0; i < n; i++) t.step_lm(hx.data(), tg.data(), pos.data(), nullptr, s.B, 1.f);
  const double plain = std::chrono::duration<double, std::milli>(clk::now() - t0).count() / n;
  t.stage_lm(hx.data(), tg.data(), pos.data(), nullptr, s.B);
  t0 = clk::now();
  for (int i = 0; i < n; i++) {
    std::thread next([&] { t.stage_lm(hx.data(), tg.data(), pos.data(), nullptr, s.B); });  // one extra at the end
    t.step_lm_staged(1.f);
    next.join();
  }
  const double piped = std::chrono::duration<double, std::milli>(clk::now() - t0).count() / n;
  t.step_lm_staged(1.f);  // drains the extra
  bench_record(fmt("8B layer lm micro-batch from host, step_lm %zux%zu", s.B, s.T), plain, "ms", "x and targets uploaded, then the step");
  bench_record(fmt("8B layer lm micro-batch from host, stage_lm+step_lm_staged %zux%zu", s.B, s.T), piped, "ms",
               fmt("%.0f%% of step_lm's time", 100.0 * piped / plain));
  bench_record("8B layer lm step peak GPU memory", double(sc::device_bytes_peak() - base) / (1 << 30), "GiB",
               fmt("TrainStep with tail %.2f GiB", double(t.device_bytes()) / (1 << 30)));
  record("bench", "8B layer lm step loss finite", std::isfinite(loss), loss, 0);
}

}  // namespace

void run_benchmarks(bool quick) {
  std::printf("benchmarks%s\n", quick ? " (quick)" : "");
  bench_ceilings(quick);
  bench_cosine();
  bench_layer(quick);
  bench_train(quick);
  bench_lm(quick);
}

}  // namespace harness
