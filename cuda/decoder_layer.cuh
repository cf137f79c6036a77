// A decoder layer forward on the GPU, composed of the backend's kernels, with the semantics of the CPU
// decoder_layer_forward (pre-norm Llama/Qwen2/Mistral, pre- and post-norm OPT, and the `mlp` replacement block):
//   pre-norm:  r = x + o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x))));  out = r + down(act(gate(n2(r))) * up(n2(r)))
//              (non-gated: out = r + down(act(up(n2(r))))); biases added where present.
//   post-norm: r = n1(x + o(attn(...x...)));  out = n2(r + down(act(up(r))))
//   mlp block: out = x + mlp(n2(x)) (pre-norm), out = n2(x + mlp(x)) (post-norm), mlp as in the layer
//   sandwich (Gemma 2/3, pre-norm with post-sublayer norms): r = x + pn1(o(...)); out = r + pn2(mlp(n2(r)))
//
// Precision: the residual stream stays f32; GEMM inputs (normed rows, attention output, MLP activations) are bf16
// with f32 accumulation, weights are stored bf16 on the device (f32/f16 checkpoints are converted on upload).
//
// Streaming: a Context holds the resident activations of one batch (B x T tokens) and two weight slots. Uploading
// layer k+1 into one slot (host memory, e.g. a memory-mapped checkpoint -> pinned staging buffers -> device, on a
// copy stream) overlaps with layer k computing from the other slot; events order the reuse of slots and staging
// buffers. Boundary states can be kept resident for cosine scoring.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "common.cuh"
#include "cosine.cuh"
#include "gemm.cuh"
#include "norm.cuh"
#include "streamline/ops.h"

namespace streamline {
namespace cuda {

struct LayerSpec {
  size_t batch = 0, seq_len = 0;
  size_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  NormKind norm = NormKind::RMS;
  float norm_eps = 1e-5f;
  Activation act = Activation::SiLU;
  bool gated = true;
  bool pre_norm = true;
  bool use_rope = true;
  size_t rot_dim = 0;  // rotated dims per head (0 = head_dim)
  float attn_scale = 0.f;  // 0 = 1/sqrt(head_dim)
  bool mlp_only = false;   // the `mlp` replacement block
};

// Layer roles in the order of the CPU kernels' role table (native/src/model/decoder_layer.cpp, LayerWeights).
enum Role : int {
  kAttnNormW, kAttnNormB, kQW, kQB, kKW, kKB, kVW, kVB, kOW, kOB, kMlpNormW, kMlpNormB, kGateW, kGateB, kUpW, kUpB,
  kDownW, kDownB, kRoleCount
};
const char* role_name(int role);

struct HostTensor {
  const void* data = nullptr;  // host memory (pageable, e.g. mmap), nullptr = absent
  DType dtype = DType::BF16;
  size_t numel = 0;
};

class Context {
 public:
  // use_cublaslt = false runs every GEMM through the fallback kernel (tests).
  Context(const LayerSpec& spec, bool use_cublaslt = true, size_t staging_bytes = size_t(64) << 20);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const LayerSpec& spec() const { return spec_; }
  size_t tokens() const { return M_; }
  bool uses_cublaslt() const { return gemm_.uses_cublaslt(); }

  // Per batch: positions[M], key mask[M] (nullptr = all real), inv_freq[rot_dim/2] (nullptr when !use_rope), host.
  void set_inputs(const int32_t* positions, const uint8_t* mask, const float* inv_freq, float attention_scaling);
  void upload_hidden(const float* h);    // host [M, D] -> resident hidden state
  void download_hidden(float* h);        // resident hidden state -> host (synchronises)
  float* hidden() { return h_; }         // device [M, D]

  // Copies one layer's weights (host roles, shapes checked against the spec) into slot 0 or 1. Returns once the
  // host side has been staged; the device copies finish asynchronously on the copy stream.
  // Clears the slot's q/k and post-sublayer norms: a slot never runs a later layer with an earlier layer's norms.
  void upload_layer(int slot, const HostTensor* roles);
  // Qwen3's per-head q/k RMSNorm weights ([head_dim] each, both required; RMSNorm layers only) for the layer just
  // uploaded into `slot`: run_layer then normalises each q and k head after the bias and before RoPE (eps: the
  // layer's norm_eps).
  void upload_qk_norm(int slot, const HostTensor& q_norm, const HostTensor& k_norm);
  // Gemma's post-sublayer norms ([hidden] each, weight only, the layer's norm kind and eps; pre-norm layers only) for
  // the layer just uploaded into `slot`: run_layer then norms the o projection's output (+ o.bias) before its residual
  // add, and the MLP's down projection (+ down.bias) before its own. A layer takes both; an mlp block takes
  // post_mlp_norm only (post_attn_norm absent).
  void upload_post_norm(int slot, const HostTensor& post_attn_norm, const HostTensor& post_mlp_norm);
  // h = layer(h) with the weights of `slot` (asynchronous on the compute stream).
  void run_layer(int slot);
  // The sliding attention window of later run_layer calls (keys per query; 0 = full causal attention): set per layer
  // by the caller (Mistral: every layer; Qwen2: the layers its config marks sliding). Default 0.
  void set_window(size_t window) { window_ = window; }
  size_t window() const { return window_; }

  // Model head for evaluation: final norm (optional; kind and eps of the layers), OPT project_out [P, D] (optional)
  // and the LM head [V, D or P], uploaded once (bf16 on the device). head_logprobs: lp[m] = log_softmax(logits)[m,
  // targets[m]] (0 where targets[m] < 0) for the current hidden state, logits computed in row chunks (host arrays).
  void upload_head(const HostTensor& norm_w, const HostTensor& norm_b, const HostTensor& project_out, size_t proj_dim,
                   const HostTensor& lm_head, size_t vocab);
  void head_logprobs(const int32_t* targets, float* logprobs);

  // Boundary states for scoring: keep a copy of h under `index`; accumulate cos(states[i], states[j]) over real tokens.
  void save_state(int index);
  CosineAccum cosine(int i, int j);

  void synchronize();
  cudaStream_t compute_stream() const { return compute_; }

 private:
  struct Slot {
    bf16 *qkv_w = nullptr, *o_w = nullptr, *gu_w = nullptr, *down_w = nullptr;
    float *qkv_b = nullptr, *o_b = nullptr, *gate_b = nullptr, *up_b = nullptr, *down_b = nullptr;
    float *n1_w = nullptr, *n1_b = nullptr, *n2_w = nullptr, *n2_b = nullptr, *qn_w = nullptr, *kn_w = nullptr;
    float *pa_w = nullptr, *pm_w = nullptr;  // post_attn_norm / post_mlp_norm [D] (f32)
    bool has_qk_norm = false, has_post_norm = false;
    bool has_qkv_b = false, has_o_b = false, has_gate_b = false, has_up_b = false, has_down_b = false;
    bool has_n1_w = false, has_n1_b = false, has_n2_w = false, has_n2_b = false;
    cudaEvent_t uploaded = nullptr, consumed = nullptr;
    bool ever_run = false;
  };
  void* alloc(size_t bytes);
  void release();
  void upload_tensor(void* dst, DType dst_dt, const HostTensor& src, size_t expect_numel, const char* what);

  LayerSpec spec_;
  size_t window_ = 0;
  size_t M_, Nqkv_, Ngu_;
  Gemm gemm_;
  cudaStream_t compute_ = nullptr, copy_ = nullptr;
  std::vector<std::pair<void*, size_t>> allocs_;
  // activations
  float *h_ = nullptr, *tmp_ = nullptr, *cos_ = nullptr, *sin_ = nullptr;
  bf16 *nrm_ = nullptr, *qkv_ = nullptr, *attn_ = nullptr, *gu_ = nullptr, *act_ = nullptr;
  uint8_t* mask_ = nullptr;
  bool has_mask_ = false, has_rope_tables_ = false;
  int32_t* positions_ = nullptr;
  Slot slots_[2];
  // staging
  size_t staging_bytes_;
  void* pinned_[2] = {nullptr, nullptr};
  void* raw_[2] = {nullptr, nullptr};
  cudaEvent_t staging_free_[2] = {nullptr, nullptr};
  int next_staging_ = 0;
  // head
  bf16 *lm_head_ = nullptr, *proj_ = nullptr;
  float *head_nw_ = nullptr, *head_nb_ = nullptr;
  size_t vocab_ = 0, proj_dim_ = 0;
  std::vector<std::pair<void*, size_t>> head_allocs_;
  // scoring
  std::vector<float*> states_;
  CosineAccum* acc_ = nullptr;
};

}  // namespace cuda
}  // namespace streamline
