// Shared by the training-step checks (train_check.cpp, train_real.cpp): the test cases, host parameter sets, batches,
// the CPU step and optimiser as the reference, the GPU step's host accessors, and the per-role comparison.
#pragma once
#include <array>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"
#include "replacement.cuh"
#include "streamline/replacement.h"
#include "streamline/train.h"
#include "streamline_cuda.h"

namespace harness {
namespace tr {

namespace sc = streamline::cuda;
using streamline::Activation;
using streamline::ReplacementKind;
using streamline::ReplacementSpec;
constexpr int kRoles = streamline::kCudaTrainRoles;  // the roles of the C API's train_create (no q/k norm)
constexpr int kAllRoles = streamline::kCudaHeldRoles;  // with the q/k and post norms (set_qk_norm, set_post_norm)
constexpr double kGradFloor = 1e-2;  // see worst_role

struct Case {
  const char* name;
  ReplacementKind kind;
  ReplacementSpec s;
  bool biases;  // linear biases (q/k/v/o for a layer, up/down) and LayerNorm biases
  bool qk_norm = false;  // Qwen3's per-head q/k norms (layer, RMSNorm), given to the GPU step by set_qk_norm
  bool post_norm = false;  // Gemma's post-sublayer norms (post_mlp_norm only for an mlp), by set_post_norm
};
// set_post_norm with the case's post norms (nothing without them).
void set_post_norms(sc::TrainStep& t, const Case& c, const std::array<std::vector<float>, kAllRoles>& p);
ReplacementSpec spec(size_t B, size_t T, size_t D, size_t H, size_t Hk, size_t Dh, size_t F, bool ln, Activation act,
                     bool gated, bool rope);
// mlp SwiGLU/RMSNorm; mlp OPT-style ReLU/LayerNorm/biases; layer GQA + RoPE, padded; odd-sized OPT-style layer.
std::vector<Case> cases();
// Partial RoPE the way the C API gives it: the TrainStep is created with whole heads (gpu_spec: rotary cleared) and
// narrowed by set_rotary_dim (narrow_rope; nothing for whole heads); the CPU reference reads s.rotary itself.
ReplacementSpec gpu_spec(const ReplacementSpec& s);
void narrow_rope(sc::TrainStep& t, const ReplacementSpec& s, const std::vector<float>& inv);
ReplacementSpec with_rot(ReplacementSpec s, size_t rot);

using Params = std::array<std::vector<float>, kAllRoles>;  // empty vector = absent role
Params make_params(const Case& c, Rng& r);
streamline::ReplacementParams cpu_params(const Params& p);
streamline::ReplacementGrads cpu_grads(Params& g);
Params zeros_like(const Params& p);

struct Batch {
  std::vector<float> x, target;
  std::vector<int32_t> pos;
  std::vector<uint8_t> mask;
  size_t B;
};
// Rows after the first right-padded; targets 0.5 x + noise, or the teacher's output when given.
Batch make_batch(const Case& c, size_t B, Rng& r, const Params* teacher, const std::vector<float>& inv);
std::vector<float> inv_freq(const Case& c);

double cpu_step(const Case& c, const Params& p, Params& g, const Batch& b, const std::vector<float>& inv, float scale);
// clip_grad_norm + adamw_step over the present roles; gradients zeroed; returns the norm before clipping.
double cpu_apply(Params& p, Params& g, Params& m, Params& v, const streamline::AdamWOptions& opt, double clip);

std::array<const float*, kRoles> gpu_view(const Params& p);
double gpu_step(sc::TrainStep& t, const Batch& b, float scale);
Params gpu_grads(const sc::TrainStep& t, const Params& like);
Params gpu_params(const sc::TrainStep& t, const Params& like);

Compare worst_role(const Params& a, const Params& b, std::string* worst, double floor = 0);

// The C API's spec of a replacement spec (attn_scale 0: the default 1/sqrt(head_dim)).
streamline_cuda_train_spec capi_train_spec(const ReplacementSpec& s, bool use_cublaslt);

// True when fn throws and the message contains want.
template <typename F> bool throws_with(F&& fn, const char* want) {
  try {
    fn();
  } catch (const std::exception& e) {
    return std::strstr(e.what(), want) != nullptr;
  }
  return false;
}

// A batch's states as a bf16 pair cache holds them: each sequence's [T*D] rows in its own allocation, and the row
// pointers stage_bf16 / stage_lm_bf16 / the C API take.
struct Bf16Rows {
  std::vector<std::vector<uint16_t>> data;
  std::vector<const uint16_t*> ptrs;
};
Bf16Rows bf16_rows(const std::vector<float>& v, size_t B, size_t TD);

// The trainer's prefetch pattern: stage(0), then for each i step(i) while stage(i + 1) runs on a second thread (its
// exception rethrown after the join); returns the steps' losses.
std::vector<double> pipelined(size_t n, const std::function<void(size_t)>& stage,
                              const std::function<double(size_t)>& step);
// a[i] == b[i] bitwise for every i (NaN matching NaN); *detail lists the pairs.
bool same_losses(const std::vector<double>& a, const std::vector<double>& b, std::string* detail);
// Every role's bytes equal.
bool same_bits(const Params& a, const Params& b);

// Runs fn; an exception becomes a failed "train" row "<name>: uncaught exception" with its message, so one broken case
// does not hide the others.
void guard(const std::string& name, const std::function<void()>& fn);

// train_real.cpp
void check_capi_train();
void check_window(const std::string& dir, bool use_lt);
// CPU half of the real-window check; expect(ok, what) records a self-test line.
void window_selftest(const std::string& dir, const std::function<void(bool, const std::string&)>& expect);

}  // namespace tr
}  // namespace harness
