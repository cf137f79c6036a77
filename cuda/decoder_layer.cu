// Decoder layer composition, weight streaming and resident boundary states (see decoder_layer.cuh).
#include <cmath>
#include <cstring>

#include "activation.cuh"
#include "attention.cuh"
#include "convert.cuh"
#include "decoder_layer.cuh"
#include "logsoftmax.cuh"
#include "rope.cuh"

namespace streamline {
namespace cuda {

namespace {
const char* kRoleNames[kRoleCount] = {"attn_norm.weight", "attn_norm.bias", "q.weight",   "q.bias",
                                      "k.weight",         "k.bias",         "v.weight",   "v.bias",
                                      "o.weight",         "o.bias",         "mlp_norm.weight", "mlp_norm.bias",
                                      "gate.weight",      "gate.bias",      "up.weight",  "up.bias",
                                      "down.weight",      "down.bias"};

// h[m, d] += t[m, d] + bias[d]
__global__ void add_bias_residual_kernel(float* h, const float* t, const float* bias, size_t M, unsigned D) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x)
    for (unsigned d = threadIdx.x; d < D; d += blockDim.x) h[m * D + d] += t[m * D + d] + bias[d];
}

void check(bool ok, const std::string& msg) {
  if (!ok) throw CudaError(msg);
}
}  // namespace

const char* role_name(int role) { return role >= 0 && role < kRoleCount ? kRoleNames[role] : "?"; }

void* Context::alloc(size_t bytes) {
  void* p = device_alloc(bytes);
  allocs_.emplace_back(p, bytes);
  return p;
}

Context::Context(const LayerSpec& spec, bool use_cublaslt, size_t staging_bytes)
    : spec_(spec), gemm_(use_cublaslt), staging_bytes_(staging_bytes) {
  LayerSpec& s = spec_;
  check(s.batch > 0 && s.seq_len > 0 && s.hidden > 0 && s.intermediate > 0, "layer spec: empty dimension");
  if (!s.mlp_only) {
    check(s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0 && s.heads % s.kv_heads == 0,
          "layer spec: heads must be a positive multiple of kv_heads");
    if (s.rot_dim == 0) s.rot_dim = s.head_dim;
    check(s.rot_dim % 2 == 0 && s.rot_dim <= s.head_dim, "layer spec: rotary dims must be even and <= head_dim");
    if (s.attn_scale == 0.f) s.attn_scale = 1.f / std::sqrt(float(s.head_dim));
  }
  M_ = s.batch * s.seq_len;
  Nqkv_ = (s.heads + 2 * s.kv_heads) * s.head_dim;
  Ngu_ = s.gated ? 2 * s.intermediate : s.intermediate;
  try {
    SL_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    SL_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    const size_t D = s.hidden, M = M_;
    h_ = static_cast<float*>(alloc(M * D * 4));
    tmp_ = static_cast<float*>(alloc(M * D * 4));
    nrm_ = static_cast<bf16*>(alloc(M * D * 2));
    gu_ = static_cast<bf16*>(alloc(M * Ngu_ * 2));
    act_ = s.gated ? static_cast<bf16*>(alloc(M * s.intermediate * 2)) : gu_;
    mask_ = static_cast<uint8_t*>(alloc(M));
    positions_ = static_cast<int32_t*>(alloc(M * 4));
    if (!s.mlp_only) {
      qkv_ = static_cast<bf16*>(alloc(M * Nqkv_ * 2));
      attn_ = static_cast<bf16*>(alloc(M * s.heads * s.head_dim * 2));
      cos_ = static_cast<float*>(alloc(M * (s.rot_dim / 2) * 4 + 4));
      sin_ = static_cast<float*>(alloc(M * (s.rot_dim / 2) * 4 + 4));
    }
    for (int i = 0; i < 2; i++) {
      Slot& sl = slots_[i];
      if (!s.mlp_only) {
        sl.qkv_w = static_cast<bf16*>(alloc(Nqkv_ * D * 2));
        sl.o_w = static_cast<bf16*>(alloc(D * s.heads * s.head_dim * 2));
        sl.qkv_b = static_cast<float*>(alloc(Nqkv_ * 4));
        sl.o_b = static_cast<float*>(alloc(D * 4));
        sl.n1_w = static_cast<float*>(alloc(D * 4));
        sl.n1_b = static_cast<float*>(alloc(D * 4));
        sl.qn_w = static_cast<float*>(alloc(s.head_dim * 4));
        sl.kn_w = static_cast<float*>(alloc(s.head_dim * 4));
        sl.pa_w = static_cast<float*>(alloc(D * 4));
      }
      sl.pm_w = static_cast<float*>(alloc(D * 4));
      sl.gu_w = static_cast<bf16*>(alloc(Ngu_ * D * 2));
      sl.down_w = static_cast<bf16*>(alloc(D * s.intermediate * 2));
      sl.up_b = static_cast<float*>(alloc(s.intermediate * 4));
      sl.gate_b = static_cast<float*>(alloc(s.intermediate * 4));
      sl.down_b = static_cast<float*>(alloc(D * 4));
      sl.n2_w = static_cast<float*>(alloc(D * 4));
      sl.n2_b = static_cast<float*>(alloc(D * 4));
      SL_CUDA_CHECK(cudaEventCreateWithFlags(&sl.uploaded, cudaEventDisableTiming));
      SL_CUDA_CHECK(cudaEventCreateWithFlags(&sl.consumed, cudaEventDisableTiming));
    }
    for (int i = 0; i < 2; i++) {
      SL_CUDA_CHECK(cudaMallocHost(&pinned_[i], staging_bytes_));
      raw_[i] = alloc(staging_bytes_);
      SL_CUDA_CHECK(cudaEventCreateWithFlags(&staging_free_[i], cudaEventDisableTiming));
    }
    acc_ = static_cast<CosineAccum*>(alloc(sizeof(CosineAccum)));
  } catch (...) {
    release();
    throw;
  }
}

Context::~Context() { release(); }

void Context::release() {
  if (compute_) cudaStreamSynchronize(compute_);
  if (copy_) cudaStreamSynchronize(copy_);
  for (auto& a : allocs_) device_free(a.first, a.second);
  allocs_.clear();
  for (float* st : states_)
    if (st) device_free(st, M_ * spec_.hidden * 4);
  states_.clear();
  for (auto& a : head_allocs_) device_free(a.first, a.second);
  head_allocs_.clear();
  for (int i = 0; i < 2; i++) {
    if (pinned_[i]) cudaFreeHost(pinned_[i]);
    pinned_[i] = nullptr;
    if (staging_free_[i]) cudaEventDestroy(staging_free_[i]);
    staging_free_[i] = nullptr;
    if (slots_[i].uploaded) cudaEventDestroy(slots_[i].uploaded);
    if (slots_[i].consumed) cudaEventDestroy(slots_[i].consumed);
    slots_[i].uploaded = slots_[i].consumed = nullptr;
  }
  if (compute_) cudaStreamDestroy(compute_);
  if (copy_) cudaStreamDestroy(copy_);
  compute_ = copy_ = nullptr;
}

void Context::set_inputs(const int32_t* positions, const uint8_t* mask, const float* inv_freq, float attention_scaling) {
  const size_t M = M_;
  SL_CUDA_CHECK(cudaStreamSynchronize(compute_));  // the previous batch no longer reads these buffers
  has_mask_ = mask != nullptr;
  // On compute_, not with cudaMemcpy: from pageable memory that may return before its DMA lands, and it is ordered only
  // on the legacy stream, which the non-blocking compute_ does not wait for.
  if (mask) SL_CUDA_CHECK(cudaMemcpyAsync(mask_, mask, M, cudaMemcpyHostToDevice, compute_));
  if (positions) SL_CUDA_CHECK(cudaMemcpyAsync(positions_, positions, M * 4, cudaMemcpyHostToDevice, compute_));
  has_rope_tables_ = false;
  if (!spec_.mlp_only && spec_.use_rope) {
    check(positions && inv_freq, "set_inputs: RoPE needs positions and inv_freq");
    const size_t half = spec_.rot_dim / 2;
    float* inv = static_cast<float*>(device_alloc(half * 4));
    try {
      SL_CUDA_CHECK(cudaMemcpyAsync(inv, inv_freq, half * 4, cudaMemcpyHostToDevice, compute_));
      rope_tables(cos_, sin_, positions_, inv, M, half, attention_scaling, compute_);
      SL_CUDA_CHECK(cudaStreamSynchronize(compute_));
    } catch (...) {
      device_free(inv, half * 4);
      throw;
    }
    device_free(inv, half * 4);
    has_rope_tables_ = true;
  }
  SL_CUDA_CHECK(cudaStreamSynchronize(compute_));  // the mask and positions are on the device before this returns
}

void Context::upload_hidden(const float* h) {
  SL_CUDA_CHECK(cudaMemcpyAsync(h_, h, M_ * spec_.hidden * 4, cudaMemcpyHostToDevice, compute_));
  SL_CUDA_CHECK(cudaStreamSynchronize(compute_));
}

void Context::download_hidden(float* h) {
  SL_CUDA_CHECK(cudaMemcpyAsync(h, h_, M_ * spec_.hidden * 4, cudaMemcpyDeviceToHost, compute_));
  SL_CUDA_CHECK(cudaStreamSynchronize(compute_));
}

// Host -> pinned chunk (host memcpy, overlapping whatever the GPU is doing) -> device, converted when the dtype differs.
void Context::upload_tensor(void* dst, DType dst_dt, const HostTensor& src, size_t expect_numel, const char* what) {
  check(src.numel == expect_numel, std::string("layer weight ") + what + ": expected " + std::to_string(expect_numel) +
                                       " elements, got " + std::to_string(src.numel));
  check(src.dtype == DType::F32 || src.dtype == DType::BF16 || src.dtype == DType::F16,
        std::string("layer weight ") + what + ": dtype must be f32, bf16 or f16");
  const size_t es = dtype_size(src.dtype), ds = dtype_size(dst_dt);
  const size_t per_chunk = staging_bytes_ / es;
  const char* host = static_cast<const char*>(src.data);
  for (size_t off = 0; off < src.numel; off += per_chunk) {
    const size_t n = src.numel - off < per_chunk ? src.numel - off : per_chunk;
    const int i = next_staging_;
    next_staging_ ^= 1;
    SL_CUDA_CHECK(cudaEventSynchronize(staging_free_[i]));
    std::memcpy(pinned_[i], host + off * es, n * es);
    char* d = static_cast<char*>(dst) + off * ds;
    if (src.dtype == dst_dt) {
      SL_CUDA_CHECK(cudaMemcpyAsync(d, pinned_[i], n * es, cudaMemcpyHostToDevice, copy_));
    } else {
      SL_CUDA_CHECK(cudaMemcpyAsync(raw_[i], pinned_[i], n * es, cudaMemcpyHostToDevice, copy_));
      convert_device(d, dst_dt, raw_[i], src.dtype, n, copy_);
    }
    SL_CUDA_CHECK(cudaEventRecord(staging_free_[i], copy_));
  }
}

void Context::upload_layer(int slot, const HostTensor* r) {
  check(slot == 0 || slot == 1, "upload_layer: slot must be 0 or 1");
  const LayerSpec& s = spec_;
  Slot& sl = slots_[slot];
  const size_t D = s.hidden, F = s.intermediate, Hd = s.heads * s.head_dim, Kd = s.kv_heads * s.head_dim;
  // Wait until the layer that last used this slot has finished computing.
  SL_CUDA_CHECK(cudaStreamWaitEvent(copy_, sl.consumed, 0));
  sl.has_qk_norm = false;
  sl.has_post_norm = false;
  auto need = [&](int role) {
    check(r[role].data != nullptr, std::string("layer weight ") + role_name(role) + " is missing");
  };
  if (!s.mlp_only) {
    need(kQW); need(kKW); need(kVW); need(kOW);
    upload_tensor(sl.qkv_w, DType::BF16, r[kQW], Hd * D, "q.weight");
    upload_tensor(sl.qkv_w + Hd * D, DType::BF16, r[kKW], Kd * D, "k.weight");
    upload_tensor(sl.qkv_w + (Hd + Kd) * D, DType::BF16, r[kVW], Kd * D, "v.weight");
    upload_tensor(sl.o_w, DType::BF16, r[kOW], D * Hd, "o.weight");
    sl.has_qkv_b = r[kQB].data || r[kKB].data || r[kVB].data;
    if (sl.has_qkv_b) {
      SL_CUDA_CHECK(cudaMemsetAsync(sl.qkv_b, 0, Nqkv_ * 4, copy_));
      if (r[kQB].data) upload_tensor(sl.qkv_b, DType::F32, r[kQB], Hd, "q.bias");
      if (r[kKB].data) upload_tensor(sl.qkv_b + Hd, DType::F32, r[kKB], Kd, "k.bias");
      if (r[kVB].data) upload_tensor(sl.qkv_b + Hd + Kd, DType::F32, r[kVB], Kd, "v.bias");
    }
    sl.has_o_b = r[kOB].data != nullptr;
    if (sl.has_o_b) upload_tensor(sl.o_b, DType::F32, r[kOB], D, "o.bias");
    sl.has_n1_w = r[kAttnNormW].data != nullptr;
    if (sl.has_n1_w) upload_tensor(sl.n1_w, DType::F32, r[kAttnNormW], D, "attn_norm.weight");
    sl.has_n1_b = r[kAttnNormB].data != nullptr;
    if (sl.has_n1_b) upload_tensor(sl.n1_b, DType::F32, r[kAttnNormB], D, "attn_norm.bias");
  }
  need(kUpW); need(kDownW);
  if (s.gated) {
    need(kGateW);
    upload_tensor(sl.gu_w, DType::BF16, r[kGateW], F * D, "gate.weight");
    upload_tensor(sl.gu_w + F * D, DType::BF16, r[kUpW], F * D, "up.weight");
  } else {
    upload_tensor(sl.gu_w, DType::BF16, r[kUpW], F * D, "up.weight");
  }
  upload_tensor(sl.down_w, DType::BF16, r[kDownW], D * F, "down.weight");
  sl.has_gate_b = s.gated && r[kGateB].data != nullptr;
  check(s.gated || r[kGateB].data == nullptr, "layer weight gate.bias: not used without a gated MLP");
  if (sl.has_gate_b) upload_tensor(sl.gate_b, DType::F32, r[kGateB], F, "gate.bias");
  sl.has_up_b = r[kUpB].data != nullptr;
  if (sl.has_up_b) upload_tensor(sl.up_b, DType::F32, r[kUpB], F, "up.bias");
  sl.has_down_b = r[kDownB].data != nullptr;
  if (sl.has_down_b) upload_tensor(sl.down_b, DType::F32, r[kDownB], D, "down.bias");
  sl.has_n2_w = r[kMlpNormW].data != nullptr;
  if (sl.has_n2_w) upload_tensor(sl.n2_w, DType::F32, r[kMlpNormW], D, "mlp_norm.weight");
  sl.has_n2_b = r[kMlpNormB].data != nullptr;
  if (sl.has_n2_b) upload_tensor(sl.n2_b, DType::F32, r[kMlpNormB], D, "mlp_norm.bias");
  SL_CUDA_CHECK(cudaEventRecord(sl.uploaded, copy_));
}

void Context::upload_qk_norm(int slot, const HostTensor& qn, const HostTensor& kn) {
  check(slot == 0 || slot == 1, "upload_qk_norm: slot must be 0 or 1");
  check(!spec_.mlp_only, "upload_qk_norm: an mlp block has no attention");
  check(spec_.norm == NormKind::RMS, "upload_qk_norm: q/k norms are RMSNorms, the layer's norm is a LayerNorm");
  check(qn.data && kn.data, "upload_qk_norm: give both q_norm.weight and k_norm.weight");
  Slot& sl = slots_[slot];
  sl.has_qk_norm = false;  // stays off when an upload below throws
  // The slot's consumed event was already waited for by upload_layer on this stream.
  upload_tensor(sl.qn_w, DType::F32, qn, spec_.head_dim, "q_norm.weight");
  upload_tensor(sl.kn_w, DType::F32, kn, spec_.head_dim, "k_norm.weight");
  SL_CUDA_CHECK(cudaEventRecord(sl.uploaded, copy_));
  sl.has_qk_norm = true;
}

void Context::upload_post_norm(int slot, const HostTensor& pa, const HostTensor& pm) {
  check(slot == 0 || slot == 1, "upload_post_norm: slot must be 0 or 1");
  Slot& sl = slots_[slot];
  sl.has_post_norm = false;  // stays off when a check or an upload below throws
  check(spec_.pre_norm, "upload_post_norm: a post-norm (OPT-style) layer already norms after each residual add");
  if (spec_.mlp_only)
    check(!pa.data && pm.data, "upload_post_norm: an mlp block takes post_mlp_norm.weight only (it has no attention)");
  else
    check(pa.data && pm.data, "upload_post_norm: give both post_attn_norm.weight and post_mlp_norm.weight");
  // The slot's consumed event was already waited for by upload_layer on this stream.
  if (!spec_.mlp_only) upload_tensor(sl.pa_w, DType::F32, pa, spec_.hidden, "post_attn_norm.weight");
  upload_tensor(sl.pm_w, DType::F32, pm, spec_.hidden, "post_mlp_norm.weight");
  SL_CUDA_CHECK(cudaEventRecord(sl.uploaded, copy_));
  sl.has_post_norm = true;
}

void Context::run_layer(int slot) {
  check(slot == 0 || slot == 1, "run_layer: slot must be 0 or 1");
  const LayerSpec& s = spec_;
  Slot& sl = slots_[slot];
  cudaStream_t st = compute_;
  const size_t M = M_, D = s.hidden, F = s.intermediate, Hd = s.heads * s.head_dim;
  SL_CUDA_CHECK(cudaStreamWaitEvent(st, sl.uploaded, 0));
  const void* n1w = sl.has_n1_w ? sl.n1_w : nullptr;
  const void* n1b = sl.has_n1_b ? sl.n1_b : nullptr;
  const void* n2w = sl.has_n2_w ? sl.n2_w : nullptr;
  const void* n2b = sl.has_n2_b ? sl.n2_b : nullptr;
  const float* ob = sl.has_o_b ? sl.o_b : nullptr;

  if (!s.mlp_only) {
    // Attention input: n1(h) (pre-norm) or h itself (post-norm), as bf16.
    if (s.pre_norm) norm_rows(s.norm, nullptr, nrm_, nullptr, h_, nullptr, nullptr, n1w, n1b, DType::F32, M, D, s.norm_eps, st);
    else {
      cast_bf16(nrm_, h_, M * D, st);
    }
    gemm_.run(qkv_, DType::BF16, nrm_, sl.qkv_w, M, Nqkv_, D, 0.f, st);
    if (sl.has_qk_norm)
      qkv_bias_norm_rope_bf16(qkv_, Nqkv_, sl.has_qkv_b ? sl.qkv_b : nullptr, sl.qn_w, sl.kn_w, s.norm_eps,
                              has_rope_tables_ ? cos_ : nullptr, has_rope_tables_ ? sin_ : nullptr, M, s.heads,
                              s.kv_heads, s.head_dim, s.rot_dim, st);
    else
      qkv_bias_rope_bf16(qkv_, Nqkv_, sl.has_qkv_b ? sl.qkv_b : nullptr, has_rope_tables_ ? cos_ : nullptr,
                         has_rope_tables_ ? sin_ : nullptr, M, s.heads, s.kv_heads, s.head_dim, s.rot_dim, st);
    attention_forward_bf16(attn_, Hd, nullptr, qkv_, Nqkv_, qkv_ + Hd, qkv_ + Hd + s.kv_heads * s.head_dim, Nqkv_,
                           has_mask_ ? mask_ : nullptr, s.batch, s.seq_len, s.heads, s.kv_heads, s.head_dim,
                           s.attn_scale, window_, st);
    gemm_.run(tmp_, DType::F32, attn_, sl.o_w, M, D, Hd, 0.f, st);
    if (sl.has_post_norm) {
      // h = h + pn1(o (+ o.bias)); nrm = n2(h), in one pass over the rows
      post_norm_rows(s.norm, nrm_, h_, h_, tmp_, ob, nullptr, sl.pa_w, static_cast<const float*>(n2w),
                     static_cast<const float*>(n2b), M, D, s.norm_eps, st);
    } else if (s.pre_norm) {
      // h = h + o (+ o.bias); nrm = n2(h)
      norm_rows(s.norm, nullptr, nrm_, h_, h_, tmp_, ob, n2w, n2b, DType::F32, M, D, s.norm_eps, st);
    } else {
      // h = n1(h + o (+ o.bias)); the MLP reads h (post-norm) as bf16
      norm_rows(s.norm, h_, nrm_, nullptr, h_, tmp_, ob, n1w, n1b, DType::F32, M, D, s.norm_eps, st);
    }
  } else if (s.pre_norm) {
    norm_rows(s.norm, nullptr, nrm_, nullptr, h_, nullptr, nullptr, n2w, n2b, DType::F32, M, D, s.norm_eps, st);
  } else {
    cast_bf16(nrm_, h_, M * D, st);  // post-norm MLP block reads x itself
  }

  // MLP.
  gemm_.run(gu_, DType::BF16, nrm_, sl.gu_w, M, Ngu_, D, 0.f, st);
  if (s.gated)
    gated_rows_bf16(act_, gu_, sl.has_gate_b ? sl.gate_b : nullptr, sl.has_up_b ? sl.up_b : nullptr, M, F, s.act, st);
  else activation_rows_bf16(gu_, sl.has_up_b ? sl.up_b : nullptr, M, F, s.act, st);
  const bool post = !s.pre_norm;
  if (sl.has_down_b || post || sl.has_post_norm) {
    gemm_.run(tmp_, DType::F32, act_, sl.down_w, M, D, F, 0.f, st);
    if (sl.has_post_norm) {
      post_norm_rows(s.norm, nullptr, h_, h_, tmp_, sl.has_down_b ? sl.down_b : nullptr, nullptr, sl.pm_w, nullptr,
                     nullptr, M, D, s.norm_eps, st);
    } else if (post) {
      norm_rows(s.norm, h_, nullptr, nullptr, h_, tmp_, sl.has_down_b ? sl.down_b : nullptr, n2w, n2b, DType::F32, M,
                D, s.norm_eps, st);
    } else {
      add_bias_residual_kernel<<<int(M < 65535 ? M : 65535), 256, 0, st>>>(h_, tmp_, sl.down_b, M, unsigned(D));
      SL_LAUNCH_CHECK();
    }
  } else {
    gemm_.run(h_, DType::F32, act_, sl.down_w, M, D, F, 1.f, st);  // h += down(...) in the GEMM epilogue
  }
  SL_CUDA_CHECK(cudaEventRecord(sl.consumed, st));
  sl.ever_run = true;
}

void Context::upload_head(const HostTensor& norm_w, const HostTensor& norm_b, const HostTensor& project_out,
                          size_t proj_dim, const HostTensor& lm_head, size_t vocab) {
  const size_t D = spec_.hidden, K = proj_dim ? proj_dim : D;
  check(vocab > 0 && lm_head.data, "head: lm_head.weight is required");
  check(!proj_dim || project_out.data, "head: project_out.weight is required with a projection dimension");
  SL_CUDA_CHECK(cudaStreamSynchronize(compute_));
  for (auto& a : head_allocs_) device_free(a.first, a.second);
  head_allocs_.clear();
  lm_head_ = proj_ = nullptr;
  head_nw_ = head_nb_ = nullptr;
  auto halloc = [&](size_t bytes) {
    void* p = device_alloc(bytes);
    head_allocs_.emplace_back(p, bytes);
    return p;
  };
  lm_head_ = static_cast<bf16*>(halloc(vocab * K * 2));
  upload_tensor(lm_head_, DType::BF16, lm_head, vocab * K, "lm_head.weight");
  if (proj_dim) {
    proj_ = static_cast<bf16*>(halloc(proj_dim * D * 2));
    upload_tensor(proj_, DType::BF16, project_out, proj_dim * D, "project_out.weight");
  }
  if (norm_w.data) {
    head_nw_ = static_cast<float*>(halloc(D * 4));
    upload_tensor(head_nw_, DType::F32, norm_w, D, "final_norm.weight");
  }
  if (norm_b.data) {
    head_nb_ = static_cast<float*>(halloc(D * 4));
    upload_tensor(head_nb_, DType::F32, norm_b, D, "final_norm.bias");
  }
  vocab_ = vocab;
  proj_dim_ = proj_dim;
  SL_CUDA_CHECK(cudaStreamSynchronize(copy_));
}

void Context::head_logprobs(const int32_t* targets, float* logprobs) {
  check(lm_head_ != nullptr, "head_logprobs: upload_head first");
  const size_t M = M_, D = spec_.hidden, V = vocab_, K = proj_dim_ ? proj_dim_ : D;
  cudaStream_t st = compute_;
  // Final norm (or none: OPT post-norm) into nrm_ as bf16; project_out into the qkv buffer's space when present.
  if (head_nw_ || head_nb_)
    norm_rows(spec_.norm, nullptr, nrm_, nullptr, h_, nullptr, nullptr, head_nw_, head_nb_, DType::F32, M, D,
              spec_.norm_eps, st);
  else {
    cast_bf16(nrm_, h_, M * D, st);
  }
  const bf16* x = nrm_;
  void* proj_buf = nullptr;
  if (proj_) {
    proj_buf = device_alloc(M * K * 2);
    gemm_.run(proj_buf, DType::BF16, nrm_, proj_, M, K, D, 0.f, st);
    x = static_cast<const bf16*>(proj_buf);
  }
  // Logits in row chunks of at most 256 MiB.
  // A multiple of 128 rows keeps every chunk's bf16 input rows on 256-byte boundaries, which cuBLASLt needs (else the
  // fallback GEMM runs).
  size_t chunk = std::max<size_t>(1, std::min(M, (size_t(256) << 20) / (V * 4)));
  if (chunk < M && chunk > 128) chunk -= chunk % 128;
  float* logits = nullptr;
  int32_t* tg = nullptr;
  float* lp = nullptr;
  try {
    logits = static_cast<float*>(device_alloc(chunk * V * 4));
    tg = static_cast<int32_t*>(device_alloc(M * 4));
    lp = static_cast<float*>(device_alloc(M * 4));
    SL_CUDA_CHECK(cudaMemcpyAsync(tg, targets, M * 4, cudaMemcpyHostToDevice, st));
    for (size_t m0 = 0; m0 < M; m0 += chunk) {
      const size_t mc = std::min(chunk, M - m0);
      gemm_.run(logits, DType::F32, x + m0 * K, lm_head_, mc, V, K, 0.f, st);
      token_logprobs(lp + m0, logits, tg + m0, mc, V, st);
    }
    SL_CUDA_CHECK(cudaMemcpyAsync(logprobs, lp, M * 4, cudaMemcpyDeviceToHost, st));
    SL_CUDA_CHECK(cudaStreamSynchronize(st));
  } catch (...) {
    cudaStreamSynchronize(st);
    device_free(logits, chunk * V * 4);
    device_free(tg, M * 4);
    device_free(lp, M * 4);
    device_free(proj_buf, M * K * 2);
    throw;
  }
  device_free(logits, chunk * V * 4);
  device_free(tg, M * 4);
  device_free(lp, M * 4);
  device_free(proj_buf, M * K * 2);
}

void Context::save_state(int index) {
  check(index >= 0 && index < 4096, "save_state: index out of range");
  if (size_t(index) >= states_.size()) states_.resize(size_t(index) + 1, nullptr);
  if (!states_[index]) states_[index] = static_cast<float*>(device_alloc(M_ * spec_.hidden * 4));
  SL_CUDA_CHECK(cudaMemcpyAsync(states_[index], h_, M_ * spec_.hidden * 4, cudaMemcpyDeviceToDevice, compute_));
}

CosineAccum Context::cosine(int i, int j) {
  check(i >= 0 && j >= 0 && size_t(i) < states_.size() && size_t(j) < states_.size() && states_[i] && states_[j],
        "cosine: state not saved");
  SL_CUDA_CHECK(cudaMemsetAsync(acc_, 0, sizeof(CosineAccum), compute_));
  cosine_accumulate(acc_, states_[i], states_[j], has_mask_ ? mask_ : nullptr, M_, spec_.hidden, compute_);
  CosineAccum h{};
  SL_CUDA_CHECK(cudaMemcpyAsync(&h, acc_, sizeof h, cudaMemcpyDeviceToHost, compute_));
  SL_CUDA_CHECK(cudaStreamSynchronize(compute_));
  return h;
}

void Context::synchronize() {
  SL_CUDA_CHECK(cudaStreamSynchronize(copy_));
  SL_CUDA_CHECK(cudaStreamSynchronize(compute_));
}

}  // namespace cuda
}  // namespace streamline
