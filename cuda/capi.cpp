// The flat C API of streamline_cuda.so (declared in streamline_cuda.h), over streamline::cuda::Context.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cublaslt_loader.h"
#include "decoder_layer.cuh"
#include "replacement.cuh"
#include "streamline_cuda.h"

#define SL_EXPORT extern "C" __attribute__((visibility("default")))

using namespace streamline;
using namespace streamline::cuda;

namespace {
thread_local std::string g_error;

template <typename F> int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
  } catch (...) {
    g_error = "unknown error";
  }
  return -1;
}
HostTensor host_tensor(const streamline_cuda_weight* w) {
  return w && w->data ? HostTensor{w->data, DType(w->dtype), size_t(w->numel)} : HostTensor{};
}
}  // namespace

struct streamline_cuda_ctx : Context {
  using Context::Context;
};
static_assert(int(STREAMLINE_CUDA_ROLES) == int(cuda::kRoleCount), "role order of streamline_cuda.h and decoder_layer.cuh");

SL_EXPORT const char* streamline_cuda_last_error(void) { return g_error.c_str(); }

// 1 when a GEMM library is usable; otherwise 0 and *reason (may be NULL) receives why.
SL_EXPORT int streamline_cuda_cublaslt_available(char* reason, int reason_len) {
  if (lt::api()) return 1;
  if (reason && reason_len > 0) std::snprintf(reason, size_t(reason_len), "%s", lt::reason().c_str());
  return 0;
}

SL_EXPORT int streamline_cuda_create(const streamline_cuda_layer_spec* in, streamline_cuda_ctx** out) {
  return guarded([&] {
    *out = nullptr;
    LayerSpec s;
    s.batch = size_t(in->batch);
    s.seq_len = size_t(in->seq_len);
    s.hidden = size_t(in->hidden);
    s.heads = size_t(in->heads);
    s.kv_heads = size_t(in->kv_heads);
    s.head_dim = size_t(in->head_dim);
    s.intermediate = size_t(in->intermediate);
    s.rot_dim = size_t(in->rot_dim);
    s.norm = in->norm == 1 ? NormKind::Layer : NormKind::RMS;
    s.act = Activation(in->activation);
    s.gated = in->gated != 0;
    s.pre_norm = in->pre_norm != 0;
    s.use_rope = in->use_rope != 0;
    s.mlp_only = in->mlp_only != 0;
    s.norm_eps = in->norm_eps;
    s.attn_scale = in->attn_scale;
    if (in->use_cublaslt && !lt::api()) throw CudaError(lt::reason());
    *out = new streamline_cuda_ctx(s, in->use_cublaslt != 0);
  });
}

SL_EXPORT void streamline_cuda_destroy(streamline_cuda_ctx* c) { delete c; }

SL_EXPORT int streamline_cuda_set_inputs(streamline_cuda_ctx* c, const int32_t* host_positions, const uint8_t* host_mask,
                                         const float* host_inv_freq, float attention_scaling) {
  return guarded([&] { c->set_inputs(host_positions, host_mask, host_inv_freq, attention_scaling); });
}

SL_EXPORT int streamline_cuda_upload_hidden(streamline_cuda_ctx* c, const float* host_h) {
  return guarded([&] { c->upload_hidden(host_h); });
}

SL_EXPORT int streamline_cuda_download_hidden(streamline_cuda_ctx* c, float* host_h) {
  return guarded([&] { c->download_hidden(host_h); });
}

// roles[cuda::kRoleCount] in LayerRole order (see decoder_layer.cuh).
SL_EXPORT int streamline_cuda_upload_layer(streamline_cuda_ctx* c, int slot, const streamline_cuda_weight* roles) {
  return guarded([&] {
    HostTensor t[cuda::kRoleCount];
    for (int i = 0; i < cuda::kRoleCount; i++) t[i] = host_tensor(&roles[i]);
    c->upload_layer(slot, t);
  });
}

SL_EXPORT int streamline_cuda_upload_layer_qk_norm(streamline_cuda_ctx* c, int slot, const streamline_cuda_weight* q_norm,
                                                   const streamline_cuda_weight* k_norm) {
  return guarded([&] { c->upload_qk_norm(slot, host_tensor(q_norm), host_tensor(k_norm)); });
}

SL_EXPORT int streamline_cuda_upload_layer_post_norm(streamline_cuda_ctx* c, int slot,
                                                     const streamline_cuda_weight* post_attn_norm,
                                                     const streamline_cuda_weight* post_mlp_norm) {
  return guarded([&] { c->upload_post_norm(slot, host_tensor(post_attn_norm), host_tensor(post_mlp_norm)); });
}

SL_EXPORT int streamline_cuda_upload_head(streamline_cuda_ctx* c, const streamline_cuda_weight* norm_w,
                                          const streamline_cuda_weight* norm_b, const streamline_cuda_weight* project_out,
                                          int64_t proj_dim, const streamline_cuda_weight* lm_head, int64_t vocab) {
  return guarded([&] {
    c->upload_head(host_tensor(norm_w), host_tensor(norm_b), host_tensor(project_out), size_t(proj_dim),
                   host_tensor(lm_head), size_t(vocab));
  });
}

SL_EXPORT int streamline_cuda_head_logprobs(streamline_cuda_ctx* c, const int32_t* host_targets, float* host_logprobs) {
  return guarded([&] { c->head_logprobs(host_targets, host_logprobs); });
}

SL_EXPORT int streamline_cuda_run_layer(streamline_cuda_ctx* c, int slot) { return guarded([&] { c->run_layer(slot); }); }

SL_EXPORT int streamline_cuda_set_window(streamline_cuda_ctx* c, int64_t window) {
  return guarded([&] {
    if (window < 0) throw CudaError("set_window: window must be >= 0 (0 = full causal attention)");
    c->set_window(size_t(window));
  });
}

SL_EXPORT int streamline_cuda_save_state(streamline_cuda_ctx* c, int index) { return guarded([&] { c->save_state(index); }); }

SL_EXPORT int streamline_cuda_cosine_states(streamline_cuda_ctx* c, int i, int j, streamline_cuda_cosine* out) {
  return guarded([&] {
    CosineAccum a = c->cosine(i, j);
    out->sum = a.sum;
    out->count = a.count;
    out->zeros = a.zeros;
  });
}

// Cosine accumulation of two host tensors a, b [M, D] (f32; mask [M] or NULL) on the GPU: uploads, one fused pass,
// result added to *out. For states that were not produced on the GPU.
SL_EXPORT int streamline_cuda_cosine_host(const float* host_a, const float* host_b, const uint8_t* host_mask, int64_t M,
                                          int64_t D, streamline_cuda_cosine* out) {
  return guarded([&] {
    const size_t bytes = size_t(M) * size_t(D) * 4;
    struct Buf {
      void* p = nullptr;
      size_t n = 0;
      ~Buf() { device_free(p, n); }
    } a, b, m, acc;
    a.p = device_alloc(bytes); a.n = bytes;
    b.p = device_alloc(bytes); b.n = bytes;
    acc.p = device_alloc(sizeof(CosineAccum)); acc.n = sizeof(CosineAccum);
    SL_CUDA_CHECK(cudaMemcpy(a.p, host_a, bytes, cudaMemcpyHostToDevice));
    SL_CUDA_CHECK(cudaMemcpy(b.p, host_b, bytes, cudaMemcpyHostToDevice));
    if (host_mask) {
      m.p = device_alloc(size_t(M)); m.n = size_t(M);
      SL_CUDA_CHECK(cudaMemcpy(m.p, host_mask, size_t(M), cudaMemcpyHostToDevice));
    }
    CosineAccum h{out->sum, out->count, out->zeros};
    SL_CUDA_CHECK(cudaMemcpy(acc.p, &h, sizeof h, cudaMemcpyHostToDevice));
    cosine_accumulate(static_cast<CosineAccum*>(acc.p), static_cast<const float*>(a.p), static_cast<const float*>(b.p),
                      static_cast<const uint8_t*>(m.p), size_t(M), size_t(D), nullptr);
    SL_CUDA_CHECK(cudaMemcpy(&h, acc.p, sizeof h, cudaMemcpyDeviceToHost));
    out->sum = h.sum;
    out->count = h.count;
    out->zeros = h.zeros;
  });
}

SL_EXPORT int streamline_cuda_synchronize(streamline_cuda_ctx* c) { return guarded([&] { c->synchronize(); }); }

// Bytes of device memory held by the backend now and at most since the last reset.
SL_EXPORT int streamline_cuda_memory(uint64_t* current, uint64_t* peak, int reset_peak) {
  *current = device_bytes_current();
  *peak = device_bytes_peak();
  if (reset_peak) device_bytes_reset_peak();
  return 0;
}

// ---- replacement training ----------------------------------------------------------------------------------

struct streamline_cuda_train : TrainStep {
  using TrainStep::TrainStep;
};
static_assert(int(STREAMLINE_CUDA_TRAIN_ROLES) == int(kTrainRoles), "role order of streamline_cuda.h and replacement.h");
static_assert(int(STREAMLINE_CUDA_TRAIN_DOWN_B) == int(streamline::kRoleDownB), "role order of streamline_cuda.h and replacement.h");
static_assert(STREAMLINE_CUDA_TRAIN_ROLE_Q_NORM == int(streamline::kRoleQNormW) &&
                  STREAMLINE_CUDA_TRAIN_ROLE_K_NORM == int(streamline::kRoleKNormW),
              "q/k norm roles of streamline_cuda.h and replacement.h");
static_assert(STREAMLINE_CUDA_TRAIN_ROLE_POST_ATTN_NORM == int(streamline::kRolePostAttnNormW) &&
                  STREAMLINE_CUDA_TRAIN_ROLE_POST_MLP_NORM == int(streamline::kRolePostMlpNormW),
              "post norm roles of streamline_cuda.h and replacement.h");

SL_EXPORT int streamline_cuda_train_create(int32_t kind, const streamline_cuda_train_spec* in,
                                           const float* const* host_params, const float* host_inv_freq,
                                           streamline_cuda_train** out) {
  return guarded([&] {
    *out = nullptr;
    if (kind != 0 && kind != 1) throw CudaError("train_create: kind must be 0 (mlp) or 1 (layer)");
    if (in->batch <= 0 || in->seq_len <= 0 || in->hidden <= 0 || in->intermediate <= 0)
      throw CudaError("train_create: batch, seq_len, hidden and intermediate must be positive");
    if (kind == 1 && (in->heads <= 0 || in->kv_heads <= 0 || in->head_dim <= 0))
      throw CudaError("train_create: heads, kv_heads and head_dim must be positive for a layer");
    if (in->norm != 0 && in->norm != 1) throw CudaError("train_create: norm must be 0 (RMSNorm) or 1 (LayerNorm)");
    if (in->activation < 0 || in->activation > 3) throw CudaError("train_create: activation must be 0..3");
    ReplacementSpec s;
    s.B = size_t(in->batch);
    s.T = size_t(in->seq_len);
    s.D = size_t(in->hidden);
    // An mlp replacement keeps the model's attention shape too: its lm tail (train_set_lm_tail) has whole layers.
    const bool heads = in->heads > 0 && in->kv_heads > 0 && in->head_dim > 0;
    s.H = heads ? size_t(in->heads) : 0;
    s.Hk = heads ? size_t(in->kv_heads) : 0;
    s.Dh = heads ? size_t(in->head_dim) : 0;
    s.F = size_t(in->intermediate);
    s.layer_norm = in->norm == 1;
    s.norm_eps = in->norm_eps;
    s.act = Activation(in->activation);
    s.gated = in->gated != 0;
    s.use_rope = in->use_rope != 0;
    s.attn_scale = in->attn_scale != 0.f || s.Dh == 0 ? in->attn_scale : 1.f / std::sqrt(float(s.Dh));
    s.rope_attention_scaling = in->rope_attention_scaling;
    if (in->use_cublaslt && !lt::api()) throw CudaError(lt::reason());
    std::array<const float*, kTrainRoles> p{};
    for (int r = 0; r < kTrainRoles; r++) p[r] = host_params[r];
    *out = new streamline_cuda_train(kind == 1 ? ReplacementKind::Layer : ReplacementKind::MLP, s, p, host_inv_freq,
                                     in->use_cublaslt != 0);
  });
}

SL_EXPORT void streamline_cuda_train_destroy(streamline_cuda_train* t) { delete t; }

SL_EXPORT int streamline_cuda_train_step(streamline_cuda_train* t, const float* host_x, const float* host_target,
                                         const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                         float grad_scale, double* loss) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_step: batch must be positive");
    *loss = t->step(host_x, host_target, host_positions, host_mask, size_t(batch), grad_scale);
  });
}

// Prefetch halves of train_step (see TrainStep::stage for which thread owns what): stage may run on one thread while
// step_staged runs on another.
SL_EXPORT int streamline_cuda_train_stage(streamline_cuda_train* t, const float* host_x, const float* host_target,
                                          const int32_t* host_positions, const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_stage: batch must be positive");
    if (!host_x || !host_target) throw CudaError("train_stage: x and target are required");
    t->stage(host_x, host_target, host_positions, host_mask, size_t(batch));
  });
}

SL_EXPORT int streamline_cuda_train_stage_bf16(streamline_cuda_train* t, const uint16_t* const* host_x_rows,
                                               const uint16_t* const* host_target_rows, const int32_t* host_positions,
                                               const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_stage_bf16: batch must be positive");
    t->stage_bf16(host_x_rows, host_target_rows, host_positions, host_mask, size_t(batch));
  });
}

SL_EXPORT int streamline_cuda_train_keep_pairs(streamline_cuda_train* t, int64_t blocks, int targets,
                                               double max_fraction, int* kept) {
  return guarded([&] {
    if (blocks <= 0) throw CudaError("train_keep_pairs: blocks must be positive");
    if (!kept) throw CudaError("train_keep_pairs: kept is required");
    *kept = t->keep_pairs(size_t(blocks), targets != 0, max_fraction) ? 1 : 0;
  });
}

SL_EXPORT int streamline_cuda_train_put_pair(streamline_cuda_train* t, int64_t block, const uint16_t* host_x,
                                             const uint16_t* host_target) {
  return guarded([&] {
    if (block < 0) throw CudaError("train_put_pair: block must not be negative");
    t->put_pair(size_t(block), host_x, host_target);
  });
}

SL_EXPORT int streamline_cuda_train_stage_kept(streamline_cuda_train* t, const int64_t* blocks,
                                               const int32_t* host_positions, const uint8_t* host_mask,
                                               int64_t batch) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_stage_kept: batch must be positive");
    t->stage_kept(blocks, host_positions, host_mask, size_t(batch));
  });
}

SL_EXPORT int streamline_cuda_train_step_staged(streamline_cuda_train* t, float grad_scale, double* loss) {
  return guarded([&] { *loss = t->step_staged(grad_scale); });
}

SL_EXPORT int streamline_cuda_train_eval(streamline_cuda_train* t, const float* host_x, const float* host_target,
                                         const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                         double* host_losses) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_eval: batch must be positive");
    if (!host_losses) throw CudaError("train_eval: losses is required");
    t->eval(host_x, host_target, host_positions, host_mask, size_t(batch), host_losses);
  });
}

// The lm objective (issue 9): the tail's layers as host_layers[k * STREAMLINE_CUDA_ROLES + role].
SL_EXPORT int streamline_cuda_train_set_lm_tail(streamline_cuda_train* t, int64_t n_layers,
                                                const streamline_cuda_weight* host_layers,
                                                const streamline_cuda_weight* norm_w,
                                                const streamline_cuda_weight* norm_b,
                                                const streamline_cuda_weight* lm_head, int64_t vocab) {
  return guarded([&] {
    if (n_layers < 0) throw CudaError("train_set_lm_tail: n_layers must be >= 0");
    if (n_layers > 0 && !host_layers) throw CudaError("train_set_lm_tail: host_layers is required");
    if (!lm_head || !lm_head->data) throw CudaError("train_set_lm_tail: lm_head is required");
    if (vocab <= 0) throw CudaError("train_set_lm_tail: vocab must be positive");
    std::vector<std::array<HostTensor, cuda::kRoleCount>> roles(static_cast<size_t>(n_layers));
    std::vector<const HostTensor*> layers;
    for (int64_t k = 0; k < n_layers; k++) {
      for (int i = 0; i < cuda::kRoleCount; i++) roles[size_t(k)][i] = host_tensor(&host_layers[k * cuda::kRoleCount + i]);
      layers.push_back(roles[size_t(k)].data());
    }
    t->set_lm_tail(layers, host_tensor(norm_w), host_tensor(norm_b), host_tensor(lm_head), size_t(vocab));
  });
}

SL_EXPORT int streamline_cuda_train_set_lm_tail_qk_norm(streamline_cuda_train* t, int64_t n_layers,
                                                        const streamline_cuda_weight* host_norms) {
  return guarded([&] {
    if (n_layers < 0) throw CudaError("train_set_lm_tail_qk_norm: n_layers must be >= 0");
    if (n_layers > 0 && !host_norms) throw CudaError("train_set_lm_tail_qk_norm: host_norms is required");
    std::vector<std::pair<HostTensor, HostTensor>> norms(static_cast<size_t>(n_layers));
    for (int64_t k = 0; k < n_layers; k++)
      norms[size_t(k)] = {host_tensor(&host_norms[2 * k]), host_tensor(&host_norms[2 * k + 1])};
    t->set_lm_tail_qk_norm(norms);
  });
}

SL_EXPORT int streamline_cuda_train_set_windows(streamline_cuda_train* t, int64_t window, int64_t n_tail,
                                               const int64_t* tail_windows) {
  return guarded([&] {
    if (window < 0) throw CudaError("train_set_windows: window must be >= 0 (0 = full causal attention)");
    if (n_tail < 0) throw CudaError("train_set_windows: n_tail must be >= 0");
    std::vector<size_t> tw(size_t(n_tail), 0);
    for (int64_t k = 0; tail_windows && k < n_tail; k++) {
      if (tail_windows[k] < 0)
        throw CudaError("train_set_windows: tail_windows[" + std::to_string(k) + "] must be >= 0");
      tw[size_t(k)] = size_t(tail_windows[k]);
    }
    t->set_windows(size_t(window), tw);
  });
}

SL_EXPORT int streamline_cuda_train_step_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                            const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                            float grad_scale, double* loss) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_step_lm: batch must be positive");
    if (!loss) throw CudaError("train_step_lm: loss is required");
    *loss = t->step_lm(host_x, host_targets, host_positions, host_mask, size_t(batch), grad_scale);
  });
}

SL_EXPORT int streamline_cuda_train_eval_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                            const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                            double* host_losses) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_eval_lm: batch must be positive");
    t->eval_lm(host_x, host_targets, host_positions, host_mask, size_t(batch), host_losses);
  });
}

SL_EXPORT int streamline_cuda_train_stage_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                             const int32_t* host_positions, const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_stage_lm: batch must be positive");
    t->stage_lm(host_x, host_targets, host_positions, host_mask, size_t(batch));
  });
}

SL_EXPORT int streamline_cuda_train_stage_lm_bf16(streamline_cuda_train* t, const uint16_t* const* host_x_rows,
                                                  const int32_t* host_targets, const int32_t* host_positions,
                                                  const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_stage_lm_bf16: batch must be positive");
    t->stage_lm_bf16(host_x_rows, host_targets, host_positions, host_mask, size_t(batch));
  });
}

SL_EXPORT int streamline_cuda_train_stage_lm_kept(streamline_cuda_train* t, const int64_t* blocks,
                                                  const int32_t* host_targets, const int32_t* host_positions,
                                                  const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    if (batch <= 0) throw CudaError("train_stage_lm_kept: batch must be positive");
    t->stage_lm_kept(blocks, host_targets, host_positions, host_mask, size_t(batch));
  });
}

SL_EXPORT int streamline_cuda_train_step_lm_staged(streamline_cuda_train* t, float grad_scale, double* loss) {
  return guarded([&] {
    if (!loss) throw CudaError("train_step_lm_staged: loss is required");
    *loss = t->step_lm_staged(grad_scale);
  });
}

SL_EXPORT int streamline_cuda_train_apply(streamline_cuda_train* t, const streamline_cuda_adamw* o, double* grad_norm) {
  return guarded([&] {
    if (o->step < 1) throw CudaError("train_apply: step must be >= 1");
    AdamWOptions opt;
    opt.lr = o->lr;
    opt.beta1 = o->beta1;
    opt.beta2 = o->beta2;
    opt.eps = o->eps;
    opt.weight_decay = o->weight_decay;
    opt.step = o->step;
    *grad_norm = t->apply(opt, o->max_norm);
  });
}

namespace {
void check_role(const streamline_cuda_train* t, int32_t role, int64_t numel, const char* fn) {
  // The q/k and post norm roles exist once train_set_qk_norm / train_set_post_norm gave them (has() is false before).
  if (role < 0 || role >= kAllTrainRoles) throw CudaError(std::string(fn) + ": role out of range");
  if (!t->has(role)) throw CudaError(std::string(fn) + ": the replacement has no " + train_role_name(role));
  if (numel < 0 || size_t(numel) != t->numel(role))
    throw CudaError(std::string(fn) + ": " + train_role_name(role) + " has " + std::to_string(t->numel(role)) +
                    " elements, numel is " + std::to_string(numel));
}
}  // namespace

SL_EXPORT int streamline_cuda_train_set_qk_norm(streamline_cuda_train* t, const float* host_q_norm,
                                               const float* host_k_norm) {
  return guarded([&] { t->set_qk_norm(host_q_norm, host_k_norm); });
}

SL_EXPORT int streamline_cuda_train_set_post_norm(streamline_cuda_train* t, const float* host_post_attn_norm,
                                                  const float* host_post_mlp_norm) {
  return guarded([&] { t->set_post_norm(host_post_attn_norm, host_post_mlp_norm); });
}

SL_EXPORT int streamline_cuda_train_set_lm_tail_post_norm(streamline_cuda_train* t, int64_t n_layers,
                                                          const streamline_cuda_weight* host_norms) {
  return guarded([&] {
    if (n_layers < 0) throw CudaError("train_set_lm_tail_post_norm: n_layers must be >= 0");
    if (n_layers > 0 && !host_norms) throw CudaError("train_set_lm_tail_post_norm: host_norms is required");
    std::vector<std::pair<HostTensor, HostTensor>> norms(static_cast<size_t>(n_layers));
    for (int64_t k = 0; k < n_layers; k++)
      norms[size_t(k)] = {host_tensor(&host_norms[2 * k]), host_tensor(&host_norms[2 * k + 1])};
    t->set_lm_tail_post_norm(norms);
  });
}

SL_EXPORT int streamline_cuda_train_set_lm_tail_rope(streamline_cuda_train* t, int64_t n_layers,
                                                     const float* host_inv_freqs,
                                                     const float* host_attention_scalings) {
  return guarded([&] {
    if (n_layers < 0) throw CudaError("train_set_lm_tail_rope: n_layers must be >= 0");
    t->set_lm_tail_rope(size_t(n_layers), host_inv_freqs, host_attention_scalings);
  });
}

SL_EXPORT int streamline_cuda_train_set_rotary_dim(streamline_cuda_train* t, int64_t rot_dim,
                                                   const float* host_inv_freq) {
  return guarded([&] {
    if (rot_dim <= 0) throw CudaError("train_set_rotary_dim: rot_dim must be positive");
    t->set_rotary_dim(size_t(rot_dim), host_inv_freq);
  });
}

SL_EXPORT int streamline_cuda_train_get_params(streamline_cuda_train* t, int32_t role, float* host_out, int64_t numel) {
  return guarded([&] {
    check_role(t, role, numel, "train_get_params");
    t->get_param(role, host_out);
  });
}

SL_EXPORT int streamline_cuda_train_get_grads(streamline_cuda_train* t, int32_t role, float* host_out, int64_t numel) {
  return guarded([&] {
    check_role(t, role, numel, "train_get_grads");
    t->get_grad(role, host_out);
  });
}

SL_EXPORT int streamline_cuda_train_get_state(streamline_cuda_train* t, int32_t role, float* host_param, float* host_m,
                                              float* host_v, int64_t numel) {
  return guarded([&] {
    check_role(t, role, numel, "train_get_state");
    t->get_state(role, host_param, host_m, host_v);
  });
}

SL_EXPORT int streamline_cuda_train_set_state(streamline_cuda_train* t, int32_t role, const float* host_param,
                                              const float* host_m, const float* host_v, int64_t numel) {
  return guarded([&] {
    check_role(t, role, numel, "train_set_state");
    if (!host_param || !host_m || !host_v) throw CudaError("train_set_state: param, m and v are all required");
    t->set_state(role, host_param, host_m, host_v);
  });
}
