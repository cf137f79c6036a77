// Test and benchmark harness for the CUDA backend (streamline_cuda_check): shared helpers.
// Every check compares a CUDA op with a CPU reference by relative L2 error against a named tolerance, requires
// NaN exactly where the reference has NaN, and poisons outputs first so an unwritten element fails.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.cuh"

namespace harness {

// ---- named tolerances (relative L2 error) ------------------------------------------------------------------
constexpr double kTolExactish = 1e-6;   // f32 elementwise ops computed in the same order (norm, rope, act)
constexpr double kTolF32 = 1e-5;        // f32 reductions in a different order (log-softmax, attention f32)
constexpr double kTolF32Gemm = 1e-5;    // f32 fallback GEMM vs the CPU reference
constexpr double kTolBf16Out = 5e-3;    // f32 maths, output rounded to bf16 (one rounding: <= 2^-9 relative)
constexpr double kTolBf16 = 1.5e-2;     // bf16 operands/probabilities with f32 accumulation
constexpr double kTolLayerEmu = 1e-2;   // GPU layer vs the CPU layer rounding at the same points to bf16
constexpr double kTolLayerF32 = 3e-2;   // GPU layer vs the pure f32 CPU layer
constexpr double kTolCosine = 1e-9;     // f64 cosine sums (relative)
constexpr double kTolScoring = 1e-3;    // scoring matrix, absolute (issue 8); bf16 emulation of the fixtures: <= 5.3e-4
// Training step (GPU bf16 GEMM operands vs the f32 CPU step; --cpu-selftest prints what bf16 rounding of weights and
// inputs alone does to the CPU step, the scale these are set against):
constexpr double kTolTrainLoss = 2e-3;    // relative; y - target is O(1), bf16 errors in R(x) enter the mean squared
constexpr double kTolTrainGrad = 5e-2;    // per-role relative L2; forward and backward chains of bf16 GEMM operands
constexpr double kTolTrainNorm = 1e-9;    // grad norm of the same gradients: f64 sums in another order
constexpr double kTolTrainUpdate = 0.3;   // p1 - p0 vs the CPU step, all parameters: Adam's step 1 ~ -lr*sign(g) flips
                                          // near g = 0 (bf16-rounded CPU step: 0.075 ... 0.09)
constexpr double kTolTrainCurve = 1e-2;   // 30-step loss curve, the 1 %
constexpr double kTolEvalLoss = 4e-3;     // one sequence's loss (eval) vs the CPU: kTolTrainLoss's bf16 errors, averaged
                                          // over one sequence instead of the batch (the shortest case has 13 real tokens
                                          // of its batch's 45): ~2x the spread; CPU emulation worst 1.1e-3
constexpr double kTolLmGrad = 5e-2;       // lm step's gradients (lm_check.cpp): kTolTrainGrad's chains plus the frozen
                                          // layers' and the head's bf16 operands on the way back. CPU emulation: 0.4-1.1 %
                                          // for SiLU/GELU models, 2.6-3.3 % on every role of the OPT-style ReLU case
                                          // (bf16 rounding flips ReLU's derivative near 0 in the frozen layer too; the same
                                          // case with GELU: 0.4-0.7 %)
// Backward kernels (backward_check.cpp) against the f64 references of ops.h / train.h:
constexpr double kTolBwdNorm = 1e-6;     // row statistics and dw/db sums in f64 like the reference; x̂ and the
                                         // outputs rounded to f32 once each: a few 1e-8
constexpr double kTolBwdAct = 1e-5;      // f32 expf/erff/tanhf (<= 2 ulp) and the cancellation in 1 − σ and 1 − t²
                                         // against f64 maths: ~1e-6 expected, 10x margin
constexpr double kTolBwdAttn = 1e-5;     // f32 sums over up to T·H/Hk terms of dS = P·(dP − D), a difference that
                                         // cancels, against f64: <= 9.3e-7 in the CPU emulation (T <= 130); a
                                         // wrong index or mask gives errors of order 1
constexpr double kTolBwdAttnTc = 1e-2;   // bf16 tensor-core backward (same bf16 q/k/v/O): P and dS rounded to bf16
                                         // for the products (2^-9 relative each, random signs) and dO rounded once:
                                         // <= 3.0e-3 in the CPU emulation (T <= 130, Dh <= 128), 3x margin; a wrong
                                         // index or mask gives errors of order 1
constexpr double kTolF64Sum = 1e-12;     // f64 sums of exact f32 products in another order (MSE loss, grad norm)

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    return s;
  }
  float uniform() { return float((next() >> 40) * (1.0 / 16777216.0)); }  // [0, 1)
  float sym(float a = 1.f) { return (uniform() * 2.f - 1.f) * a; }
  float normal() {
    float u1 = uniform() + 1e-7f, u2 = uniform();
    return std::sqrt(-2.f * std::log(u1)) * std::cos(6.2831853f * u2);
  }
};

std::vector<float> randn(size_t n, Rng& r, float scale = 1.f);
std::vector<uint16_t> to_bf16(const std::vector<float>& v);
std::vector<float> from_bf16(const std::vector<uint16_t>& v);
std::vector<float> round_bf16(const std::vector<float>& v);
std::vector<uint16_t> to_f16(const std::vector<float>& v);

// Device buffer (tracked through the backend's allocator so peak memory includes harness buffers).
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  explicit DevBuf(size_t b);
  ~DevBuf();
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; o.bytes = 0; }
  template <typename T> T* as() const { return static_cast<T*>(p); }
  void upload(const void* h, size_t n) const;
  void download(void* h, size_t n) const;
  void poison() const;  // 0xFF bytes: NaN in f32, bf16 and f16
};
template <typename T> DevBuf dev(const std::vector<T>& v) {
  DevBuf b(v.size() * sizeof(T) + 16);
  if (!v.empty()) b.upload(v.data(), v.size() * sizeof(T));
  return b;
}
template <typename T> std::vector<T> host(const DevBuf& b, size_t n) {
  std::vector<T> v(n);
  if (n) b.download(v.data(), n * sizeof(T));
  return v;
}

struct Compare {
  double rel_l2 = 0, max_abs = 0;
  size_t n = 0, nan_mismatch = 0;  // NaN in one and not the other (incl. unwritten poisoned outputs)
};
Compare compare(const float* out, const float* ref, size_t n);
// Bitwise comparison (NaN = NaN whatever the payload): the number of elements whose bits differ.
size_t bit_mismatches(const float* a, const float* b, size_t n);

// Results: each check is one row of the report.
struct Result {
  std::string group, name;
  bool ok;
  double err, tol;
  std::string note;
};
void record(const std::string& group, const std::string& name, bool ok, double err, double tol, const std::string& note = "");
// Records compare() against tol; returns ok.
bool check(const std::string& group, const std::string& name, const Compare& c, double tol);
const std::vector<Result>& results();

struct BenchRow {
  std::string name;
  double value;
  std::string unit;
  std::string note;
};
void bench_record(const std::string& name, double value, const std::string& unit, const std::string& note = "");
const std::vector<BenchRow>& bench_rows();

// Median time of fn() in milliseconds with CUDA events (after `warmup` untimed runs).
template <typename F> double time_ms(F&& fn, int warmup, int reps, cudaStream_t s);

// Test groups (each records its own rows).
void run_op_checks(bool quick);
void run_layer_checks(bool quick);
void run_model_checks(const std::string& model_dir, const std::string& repo_root);
void run_train_checks(bool quick, const std::string& model_dir);
// The per-case step checks and edge cases of run_train_checks only (also what the CPU emulation runs).
void run_train_step_checks(bool use_cublaslt);
// The lm objective (lm_check.cpp): the head, steps through frozen layers, validation, edges.
void run_train_lm_checks(bool use_cublaslt);
// The lm functions of the C API through dlopen (GPU only: the real library).
void check_capi_lm();
// The loss-curve checks of run_train_checks (30-step runs; the real window when model_dir is given).
void run_train_curve_checks(bool use_cublaslt, bool quick, const std::string& model_dir);
void run_benchmarks(bool quick);
// Backward kernels and the optimiser (backward_check.cpp): checks, and their benchmarks (run in the bench group).
void run_backward_checks(bool quick);
void run_backward_benchmarks(bool quick);
// CPU-only self test of the references and the safetensors reader (no GPU needed).
int run_cpu_selftest();
// CPU half of the model check on a checkpoint directory; returns the number of failures.
int cpu_model_selftest(const std::string& model_dir, const std::string& repo_root);
// CPU half of the training checks (role tables; the effect of bf16 rounding on the CPU step); returns failures.
int cpu_train_selftest(const std::string& model_dir);

std::string fmt(const char* f, ...);

// dlopen()s streamline_cuda.so from the harness's own folder (the C API as the addon uses it); *path receives the
// file name. nullptr on failure (dlerror() says why).
void* open_backend_library(std::string* path);

}  // namespace harness

#define H_CHECK(expr) SL_CUDA_CHECK(expr)

template <typename F> double harness::time_ms(F&& fn, int warmup, int reps, cudaStream_t s) {
  for (int i = 0; i < warmup; i++) fn();
  std::vector<double> t;
  cudaEvent_t a, b;
  H_CHECK(cudaEventCreate(&a));
  H_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < reps; i++) {
    H_CHECK(cudaEventRecord(a, s));
    fn();
    H_CHECK(cudaEventRecord(b, s));
    H_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    H_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
