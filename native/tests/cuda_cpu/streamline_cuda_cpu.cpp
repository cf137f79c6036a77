// streamline_cuda_cpu.so: the C API of cuda/streamline_cuda.h implemented with the CPU kernels of streamline_core
// (decoder_layer_forward, mlp_block_forward, head_forward, cosine_accumulate; replacement_step, lm_loss_step,
// clip_grad_norm and adamw_step for training). TEST-ONLY, never shipped: it lets the
// TypeScript CUDA path (binding_cuda.cpp, engine/cuda.ts) run end to end on machines without a GPU, loaded through
// STREAMLINE_CUDA_LIBRARY, and compared with the CPU path. Since it runs the very kernels of the CPU path on the
// same inputs, results must agree exactly; a difference is a bug in the CUDA path's plumbing (inputs, slots, states,
// head), not precision. It is not a model of the GPU's precision (bf16 GEMM inputs): cuda/tests covers that.
//
// Semantics kept from the real backend: upload_layer copies the host weights before returning (the caller may
// reuse the memory), weights are checked against the spec by element count, a context holds one batch shape,
// memory() counts the bytes the contexts hold. Not modelled: streams, asynchrony. Partial rotary (rot_dim < head_dim,
// Phi-3's partial_rotary_factor) is the CPU layer's rotary_dim.
//
// Test hooks: with STREAMLINE_CUDA_CPU_CALLS=<file> in the environment, the calls whose number matters for speed on
// a GPU (context creation, head upload, training downloads and evals) each append one line to that file, so a test
// can count uploads. Built a second time with STREAMLINE_CUDA_CPU_OLD_TRAINER defined (streamline_cuda_cpu_old.so),
// it lacks streamline_cuda_train_eval, train_get_state/set_state, train_stage/step_staged, the lm functions
// (train_set_lm_tail, train_step_lm, train_eval_lm, train_stage_lm, train_step_lm_staged) and the sliding-window
// calls (set_window, train_set_windows), the q/k norm calls (upload_layer_qk_norm, train_set_qk_norm,
// train_set_lm_tail_qk_norm), the post-norm calls (upload_layer_post_norm, train_set_post_norm,
// train_set_lm_tail_post_norm), train_set_rotary_dim (logged "train_set_rotary_dim <rot>") and the tail's per-layer RoPE
// (train_set_lm_tail_rope, logged "train_set_lm_tail_rope <n_layers>"), like a backend built before
// those existed, so the callers' fallbacks are tested too. The lm functions log "train_set_lm_tail <n_layers>",
// "train_step_lm <batch>" and "train_eval_lm <batch>". train_stage / train_step_staged log "train_stage <batch>",
// "train_step_staged begin" and "train_step_staged end"; train_stage_lm / train_step_lm_staged log
// "train_stage_lm <batch>", "train_step_lm_staged begin" and "... end"; their bf16 forms (train_stage_bf16,
// train_stage_lm_bf16) and kept-pair forms (train_stage_kept, train_stage_lm_kept; train_keep_pairs logs
// "train_keep_pairs <blocks>" and compares with STREAMLINE_CUDA_CPU_FREE_BYTES, default 64 GiB, as the free device
// memory) log the same lines with " bf16" or " kept" appended; the old build lacks them all. With STREAMLINE_CUDA_CPU_WAIT_STAGE_MS=<ms>, a
// staged step (either loss) waits (at most that long) for a stage (either loss) issued after it began before it
// returns, so the log shows deterministically whether the caller stages the next batch while a step is in flight (the
// order a GPU overlaps); STREAMLINE_CUDA_CPU_FAIL_STAGED=<n> fails a trainer's n-th staged step (counting both losses)
// and holds the stage that overlaps it until the failure, so the caller's handling of that order is tested.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "streamline/cosine.h"
#include "streamline/dtype.h"
#include "streamline/error.h"
#include "streamline/lm_loss.h"
#include "streamline/model.h"
#include "streamline/replacement.h"
#include "streamline/train.h"
#include "streamline_cuda.h"

#define SL_EXPORT extern "C" __attribute__((visibility("default")))

using namespace streamline;

namespace {
thread_local std::string g_error;
std::mutex g_mu;
uint64_t g_current = 0, g_peak = 0;

void count_bytes(int64_t delta) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_current = uint64_t(int64_t(g_current) + delta);
  if (g_current > g_peak) g_peak = g_current;
}

std::mutex g_calls_mu;
void note_call(const std::string& line) {
  const char* file = std::getenv("STREAMLINE_CUDA_CPU_CALLS");
  if (!file || !*file) return;
  std::lock_guard<std::mutex> lk(g_calls_mu);
  if (FILE* f = std::fopen(file, "a")) {
    std::fprintf(f, "%s\n", line.c_str());
    std::fclose(f);
  }
}

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

// A buffer whose size is counted as "device" memory.
struct Buffer {
  std::vector<uint8_t> bytes;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { resize(0); }
  void resize(size_t n) {
    count_bytes(int64_t(n) - int64_t(bytes.size()));
    bytes.resize(n);
    bytes.shrink_to_fit();
  }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
};

size_t dtype_bytes(int32_t dt) {
  if (dt == 0) return 4;
  if (dt == 1 || dt == 2) return 2;
  throw Error("E_DTYPE", "weight dtype must be 0 (f32), 1 (f16) or 2 (bf16), got " + std::to_string(dt));
}

// Copies a host weight into owned memory and describes it with `shape` (checked against its element count).
WeightView copy_weight(Buffer& buf, const streamline_cuda_weight& w, std::vector<int64_t> shape, const char* role) {
  WeightView v;
  if (!w.data) { buf.resize(0); return v; }
  size_t n = 1;
  for (auto d : shape) n *= size_t(d);
  if (size_t(w.numel) != n)
    throw Error("E_SHAPE", std::string("layer weight ") + role + ": expected " + std::to_string(n) + " elements, got " +
                               std::to_string(w.numel));
  size_t nb = n * dtype_bytes(w.dtype);
  buf.resize(nb);
  if (nb) std::memcpy(buf.bytes.data(), w.data, nb);
  static const float kEmpty = 0.0f;
  v.data = nb ? static_cast<const void*>(buf.bytes.data()) : &kEmpty;
  v.dtype = DType(w.dtype);
  v.shape = std::move(shape);
  return v;
}

const char* const kRoleNames[STREAMLINE_CUDA_ROLES] = {
    "attn_norm.weight", "attn_norm.bias", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
    "o.weight", "o.bias", "mlp_norm.weight", "mlp_norm.bias", "gate.weight", "gate.bias", "up.weight", "up.bias",
    "down.weight", "down.bias"};

struct Slot {
  Buffer buf[STREAMLINE_CUDA_ROLES];
  Buffer qk_buf[2];  // upload_layer_qk_norm's q_norm.weight, k_norm.weight
  Buffer post_buf[2];  // upload_layer_post_norm's post_attn_norm.weight, post_mlp_norm.weight
  LayerWeights w;
  bool loaded = false;
};
}  // namespace

struct streamline_cuda_ctx {
  LayerSpec spec;
  bool mlp_only = false;
  size_t M = 0;
  Buffer h, positions, mask, inv_freq;
  bool has_mask = false, has_positions = false, has_inv = false;
  Slot slots[2];
  std::map<int, Buffer> states;
  Buffer head_buf[4];
  HeadSpec head_spec;
  HeadWeights head_w;
  bool head_loaded = false;
};

SL_EXPORT int streamline_cuda_probe(int* device_count, int* runtime_version, char* name, int name_len, char* reason,
                                    int reason_len) {
  *device_count = 1;
  *runtime_version = 0;
  std::snprintf(name, size_t(name_len), "%s", "CPU (streamline_cuda_cpu test backend)");
  if (reason_len > 0) reason[0] = 0;
  return 1;
}

SL_EXPORT const char* streamline_cuda_last_error(void) { return g_error.c_str(); }

SL_EXPORT int streamline_cuda_cublaslt_available(char* reason, int reason_len) { return 1; }

SL_EXPORT int streamline_cuda_create(const streamline_cuda_layer_spec* in, streamline_cuda_ctx** out) {
  return guarded([&] {
    *out = nullptr;
    if (in->batch <= 0 || in->seq_len <= 0 || in->hidden <= 0 || in->intermediate <= 0)
      throw Error("E_SHAPE", "create: batch, seq_len, hidden and intermediate must be positive");
    if (in->rot_dim < 0 || in->rot_dim % 2 != 0 || in->rot_dim > in->head_dim)
      throw Error("E_SHAPE", "create: rot_dim must be even and at most head_dim (0 = head_dim)");
    auto c = std::make_unique<streamline_cuda_ctx>();
    LayerSpec& s = c->spec;
    s.batch = size_t(in->batch);
    s.seq_len = size_t(in->seq_len);
    s.hidden = size_t(in->hidden);
    s.heads = size_t(in->heads);
    s.kv_heads = size_t(in->kv_heads);
    s.head_dim = size_t(in->head_dim);
    s.intermediate = size_t(in->intermediate);
    s.norm = in->norm == 1 ? NormKind::Layer : NormKind::Rms;
    s.norm_eps = in->norm_eps;
    s.act = Activation(in->activation);
    s.gated_mlp = in->gated != 0;
    s.pre_norm = in->pre_norm != 0;
    s.use_rope = in->use_rope != 0 && in->mlp_only == 0;
    s.attn_scale = in->attn_scale;
    s.rotary_dim = size_t(in->rot_dim);
    c->mlp_only = in->mlp_only != 0;
    if (!c->mlp_only && (s.heads == 0 || s.kv_heads == 0 || s.head_dim == 0))
      throw Error("E_SHAPE", "create: heads, kv_heads and head_dim must be positive for a decoder layer");
    c->M = s.batch * s.seq_len;
    c->h.resize(c->M * s.hidden * 4);
    note_call("create " + std::to_string(s.batch) + "x" + std::to_string(s.seq_len) + (c->mlp_only ? " mlp" : ""));
    *out = c.release();
  });
}

SL_EXPORT void streamline_cuda_destroy(streamline_cuda_ctx* c) { delete c; }

SL_EXPORT int streamline_cuda_set_inputs(streamline_cuda_ctx* c, const int32_t* host_positions, const uint8_t* host_mask,
                                         const float* host_inv_freq, float attention_scaling) {
  return guarded([&] {
    const size_t M = c->M;
    c->has_positions = host_positions != nullptr;
    c->positions.resize(c->has_positions ? M * 4 : 0);
    if (host_positions) std::memcpy(c->positions.bytes.data(), host_positions, M * 4);
    c->has_mask = host_mask != nullptr;
    c->mask.resize(c->has_mask ? M : 0);
    if (host_mask) std::memcpy(c->mask.bytes.data(), host_mask, M);
    if (c->spec.use_rope) {
      if (!host_positions || !host_inv_freq) throw Error("E_SHAPE", "set_inputs: RoPE needs positions and inv_freq");
      const size_t half = (c->spec.rotary_dim ? c->spec.rotary_dim : c->spec.head_dim) / 2;
      c->inv_freq.resize(half * 4);
      std::memcpy(c->inv_freq.bytes.data(), host_inv_freq, half * 4);
      c->has_inv = true;
    }
    c->spec.rope_attention_scaling = attention_scaling;
  });
}

SL_EXPORT int streamline_cuda_upload_hidden(streamline_cuda_ctx* c, const float* host_h) {
  return guarded([&] { std::memcpy(c->h.bytes.data(), host_h, c->h.bytes.size()); });
}

SL_EXPORT int streamline_cuda_download_hidden(streamline_cuda_ctx* c, float* host_h) {
  return guarded([&] { std::memcpy(host_h, c->h.bytes.data(), c->h.bytes.size()); });
}

SL_EXPORT int streamline_cuda_upload_layer(streamline_cuda_ctx* c, int slot, const streamline_cuda_weight* roles) {
  return guarded([&] {
    if (slot != 0 && slot != 1) throw Error("E_SHAPE", "upload_layer: slot must be 0 or 1");
    const LayerSpec& s = c->spec;
    const int64_t D = int64_t(s.hidden), F = int64_t(s.intermediate), Q = int64_t(s.heads * s.head_dim),
                  KV = int64_t(s.kv_heads * s.head_dim);
    const std::vector<int64_t> shapes[STREAMLINE_CUDA_ROLES] = {{D}, {D}, {Q, D}, {Q}, {KV, D}, {KV}, {KV, D}, {KV},
                                                                {D, Q}, {D}, {D}, {D}, {F, D}, {F}, {F, D}, {F},
                                                                {D, F}, {D}};
    Slot& sl = c->slots[slot];
    sl.w = LayerWeights{};
    for (int r = 0; r < STREAMLINE_CUDA_ROLES; r++)
      *layer_weight_role(sl.w, kRoleNames[r]) = copy_weight(sl.buf[r], roles[r], shapes[r], kRoleNames[r]);
    sl.qk_buf[0].resize(0);
    sl.qk_buf[1].resize(0);
    sl.post_buf[0].resize(0);
    sl.post_buf[1].resize(0);
    validate_layer(s, sl.w, c->mlp_only);
    sl.loaded = true;
  });
}

#ifndef STREAMLINE_CUDA_CPU_OLD_TRAINER
SL_EXPORT int streamline_cuda_upload_layer_qk_norm(streamline_cuda_ctx* c, int slot, const streamline_cuda_weight* q_norm,
                                                   const streamline_cuda_weight* k_norm) {
  return guarded([&] {
    if (slot != 0 && slot != 1) throw Error("E_SHAPE", "upload_layer_qk_norm: slot must be 0 or 1");
    Slot& sl = c->slots[slot];
    if (!sl.loaded) throw Error("E_SHAPE", "upload_layer_qk_norm: no layer uploaded into this slot");
    sl.w.q_norm_w = WeightView{};  // a refused upload leaves the slot without norms, as on the GPU
    sl.w.k_norm_w = WeightView{};
    if (!q_norm || !q_norm->data || !k_norm || !k_norm->data)
      throw Error("E_SHAPE", "upload_layer_qk_norm: give both q_norm.weight and k_norm.weight");
    const int64_t Dh = int64_t(c->spec.head_dim);
    LayerWeights w = sl.w;
    w.q_norm_w = copy_weight(sl.qk_buf[0], *q_norm, {Dh}, "q_norm.weight");
    w.k_norm_w = copy_weight(sl.qk_buf[1], *k_norm, {Dh}, "k_norm.weight");
    validate_layer(c->spec, w, c->mlp_only);
    sl.w = w;
    note_call("upload_layer_qk_norm");
  });
}

SL_EXPORT int streamline_cuda_upload_layer_post_norm(streamline_cuda_ctx* c, int slot,
                                                     const streamline_cuda_weight* post_attn_norm,
                                                     const streamline_cuda_weight* post_mlp_norm) {
  return guarded([&] {
    if (slot != 0 && slot != 1) throw Error("E_SHAPE", "upload_layer_post_norm: slot must be 0 or 1");
    Slot& sl = c->slots[slot];
    if (!sl.loaded) throw Error("E_SHAPE", "upload_layer_post_norm: no layer uploaded into this slot");
    sl.w.post_attn_norm_w = WeightView{};  // a refused upload leaves the slot without post norms, as on the GPU
    sl.w.post_mlp_norm_w = WeightView{};
    const bool has_attn = post_attn_norm && post_attn_norm->data, has_mlp = post_mlp_norm && post_mlp_norm->data;
    if (c->mlp_only && (has_attn || !has_mlp))
      throw Error("E_SHAPE", "upload_layer_post_norm: an mlp block takes post_mlp_norm.weight only (it has no attention)");
    if (!c->mlp_only && (!has_attn || !has_mlp))
      throw Error("E_SHAPE", "upload_layer_post_norm: give both post_attn_norm.weight and post_mlp_norm.weight");
    const int64_t D = int64_t(c->spec.hidden);
    LayerWeights w = sl.w;
    if (has_attn) w.post_attn_norm_w = copy_weight(sl.post_buf[0], *post_attn_norm, {D}, "post_attn_norm.weight");
    w.post_mlp_norm_w = copy_weight(sl.post_buf[1], *post_mlp_norm, {D}, "post_mlp_norm.weight");
    validate_layer(c->spec, w, c->mlp_only);
    sl.w = w;
    note_call("upload_layer_post_norm");
  });
}
#endif

SL_EXPORT int streamline_cuda_run_layer(streamline_cuda_ctx* c, int slot) {
  return guarded([&] {
    if (slot != 0 && slot != 1) throw Error("E_SHAPE", "run_layer: slot must be 0 or 1");
    Slot& sl = c->slots[slot];
    if (!sl.loaded) throw Error("E_SHAPE", "run_layer: no layer uploaded into this slot");
    float* h = c->h.f32();
    const uint8_t* mask = c->has_mask ? c->mask.bytes.data() : nullptr;
    if (c->mlp_only) {
      mlp_block_forward(h, h, c->spec, sl.w);
    } else {
      const int32_t* pos = c->has_positions ? reinterpret_cast<const int32_t*>(c->positions.bytes.data()) : nullptr;
      const float* inv = c->has_inv ? c->inv_freq.f32() : nullptr;
      decoder_layer_forward(h, h, c->spec, sl.w, pos, mask, inv, nullptr);
    }
  });
}

#ifndef STREAMLINE_CUDA_CPU_OLD_TRAINER
SL_EXPORT int streamline_cuda_set_window(streamline_cuda_ctx* c, int64_t window) {
  return guarded([&] {
    if (window < 0) throw Error("E_SHAPE", "set_window: window must be >= 0");
    if (window > 0 && size_t(window) != c->spec.window) note_call("set_window " + std::to_string(window));
    c->spec.window = size_t(window);
  });
}
#endif

SL_EXPORT int streamline_cuda_upload_head(streamline_cuda_ctx* c, const streamline_cuda_weight* norm_w,
                                          const streamline_cuda_weight* norm_b, const streamline_cuda_weight* project_out,
                                          int64_t proj_dim, const streamline_cuda_weight* lm_head, int64_t vocab) {
  return guarded([&] {
    const int64_t D = int64_t(c->spec.hidden);
    HeadSpec s;
    s.hidden = size_t(D);
    s.vocab = size_t(vocab);
    s.proj_dim = size_t(proj_dim);
    s.norm = c->spec.norm;
    s.norm_eps = c->spec.norm_eps;
    s.final_norm = norm_w && norm_w->data;
    static const streamline_cuda_weight kNone{nullptr, 0, 0};
    HeadWeights w;
    w.norm_w = copy_weight(c->head_buf[0], norm_w ? *norm_w : kNone, {D}, "final_norm.weight");
    w.norm_b = copy_weight(c->head_buf[1], norm_b ? *norm_b : kNone, {D}, "final_norm.bias");
    w.project_out = copy_weight(c->head_buf[2], project_out ? *project_out : kNone, {proj_dim, D}, "project_out.weight");
    w.lm_head = copy_weight(c->head_buf[3], lm_head ? *lm_head : kNone, {vocab, proj_dim ? proj_dim : D}, "lm_head.weight");
    validate_head(s, w);
    note_call("upload_head");
    c->head_spec = s;
    c->head_w = w;
    c->head_loaded = true;
  });
}

SL_EXPORT int streamline_cuda_head_logprobs(streamline_cuda_ctx* c, const int32_t* host_targets, float* host_logprobs) {
  return guarded([&] {
    if (!c->head_loaded) throw Error("E_SHAPE", "head_logprobs: upload_head first");
    head_forward(c->h.f32(), c->M, c->head_spec, c->head_w, host_targets, nullptr, host_logprobs);
  });
}

SL_EXPORT int streamline_cuda_save_state(streamline_cuda_ctx* c, int index) {
  return guarded([&] {
    if (index < 0 || index >= 4096) throw Error("E_SHAPE", "save_state: index out of range");
    Buffer& b = c->states[index];
    b.resize(c->h.bytes.size());
    std::memcpy(b.bytes.data(), c->h.bytes.data(), b.bytes.size());
  });
}

SL_EXPORT int streamline_cuda_cosine_states(streamline_cuda_ctx* c, int i, int j, streamline_cuda_cosine* out) {
  return guarded([&] {
    auto a = c->states.find(i), b = c->states.find(j);
    if (a == c->states.end() || b == c->states.end()) throw Error("E_SHAPE", "cosine: state not saved");
    CosineSum acc;
    cosine_accumulate(&acc, a->second.f32(), b->second.f32(), c->has_mask ? c->mask.bytes.data() : nullptr, c->M,
                      c->spec.hidden);
    out->sum = acc.sum;
    out->count = acc.count;
    out->zeros = acc.zeros;
  });
}

SL_EXPORT int streamline_cuda_cosine_host(const float* host_a, const float* host_b, const uint8_t* host_mask, int64_t M,
                                          int64_t D, streamline_cuda_cosine* out) {
  return guarded([&] {
    CosineSum acc{out->sum, out->count, out->zeros};
    cosine_accumulate(&acc, host_a, host_b, host_mask, size_t(M), size_t(D));
    out->sum = acc.sum;
    out->count = acc.count;
    out->zeros = acc.zeros;
  });
}

SL_EXPORT int streamline_cuda_synchronize(streamline_cuda_ctx* c) { return 0; }

SL_EXPORT int streamline_cuda_memory(uint64_t* current, uint64_t* peak, int reset_peak) {
  std::lock_guard<std::mutex> lk(g_mu);
  *current = g_current;
  *peak = g_peak;
  if (reset_peak) g_peak = g_current;
  return 0;
}

// ---- Replacement training: streamline::replacement_step, clip_grad_norm and adamw_step on host copies, i.e. the CPU
// trainer's arithmetic (packages/core/src/train/trainer.ts) behind the C API, so a run through the CUDA trainer path
// must give bitwise the CPU trainer's weights.
namespace {
struct TrainRole {
  int role;
  std::vector<float> p, g, m, v;
};

// The lm tail (train_set_lm_tail): owned copies of the frozen layers and the head, in their own dtypes, as the CPU
// lm binding reads them in place from the memory-mapped checkpoint.
struct LmTail {
  std::vector<std::unique_ptr<Buffer>> bufs;
  FrozenTail tail;  // tail.layer.batch is set per call
};
}  // namespace

struct streamline_cuda_train {
  ReplacementKind kind;
  ReplacementSpec spec;  // spec.B: the largest micro-batch
  std::vector<TrainRole> roles;  // present roles, sorted by role name (see apply)
  std::vector<float> inv_freq;  // RoPE of R and of the tail's layers (kept for any kind when use_rope is set)
  // The frozen layers' spec: the C API spec as a full decoder layer (for an mlp replacement too, whose own spec ignores
  // heads and use_rope), as the CPU lm binding reads the JS spec a second time with kind 'layer'.
  LayerSpec lm_layer;
  std::unique_ptr<LmTail> lm;
  Buffer counted;  // the bytes of the arrays above, for memory()
  // Prefetch: the real backend's two input slots, as copies (FIFO); a slot stays taken while its step runs. Both
  // losses share the slots; `lm` says which stage filled one, so a step of the other loss refuses it.
  struct Staged {
    bool lm = false;
    std::vector<float> x, y;          // y: the mse target (empty for lm)
    std::vector<int32_t> targets;     // lm: next-token ids (empty for mse)
    std::vector<int32_t> pos;
    std::vector<uint8_t> mask;
    int64_t batch = 0;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Staged> staged;
  int stepping = 0;
  uint64_t stages = 0;  // train_stage / train_stage_lm calls so far (the wait hook)
  std::atomic<int> staged_steps{0};  // train_step_staged / train_step_lm_staged calls so far (the failure hook)
  bool injected = false;  // the failure hook has failed its step
  // Pairs kept "on the GPU" (train_keep_pairs): bf16 bits per block; kept_put says which blocks were put.
  std::vector<std::vector<uint16_t>> kept_x, kept_y;
  std::vector<bool> kept_put;
  bool kept_targets = false;
};

namespace {
// The real backend uploads step's and eval's inputs into a free input slot as well.
void need_free_slot(streamline_cuda_train* t) {
  std::lock_guard<std::mutex> lk(t->mu);
  if (t->staged.size() + size_t(t->stepping) >= 2)
    throw Error("E_CUDA", "both input slots hold staged batches: run step_staged before step or eval");
}

// A micro-batch's spec and the trainer's weights and gradient buffers by role, as both CPU steps take them.
struct StepArgs {
  ReplacementSpec s;
  ReplacementParams p{};
  ReplacementGrads g{};
};
StepArgs step_args(streamline_cuda_train* t, int64_t batch, float grad_scale) {
  StepArgs a;
  a.s = t->spec;
  a.s.B = size_t(batch);
  a.s.grad_scale = grad_scale;
  for (auto& r : t->roles) { a.p[r.role] = r.p.data(); a.g[r.role] = r.g.data(); }
  return a;
}

double cpu_train_step(streamline_cuda_train* t, const float* host_x, const float* host_target,
                      const int32_t* host_positions, const uint8_t* host_mask, int64_t batch, float grad_scale) {
  const StepArgs a = step_args(t, batch, grad_scale);
  const ReplacementSpec& s = a.s;
  const ReplacementParams& p = a.p;
  const ReplacementGrads& g = a.g;
  return replacement_step(t->kind, s, p, g, host_x, host_target, s.use_rope ? host_positions : nullptr, host_mask,
                          s.use_rope ? t->inv_freq.data() : nullptr);
}
}  // namespace

SL_EXPORT int streamline_cuda_train_create(int32_t kind, const streamline_cuda_train_spec* in,
                                           const float* const* host_params, const float* host_inv_freq,
                                           streamline_cuda_train** out) {
  return guarded([&] {
    *out = nullptr;
    if (kind != 0 && kind != 1) throw Error("E_SHAPE", "train_create: kind must be 0 (mlp) or 1 (layer)");
    if (in->batch <= 0 || in->seq_len <= 0 || in->hidden <= 0 || in->intermediate <= 0)
      throw Error("E_SHAPE", "train_create: batch, seq_len, hidden and intermediate must be positive");
    auto t = std::make_unique<streamline_cuda_train>();
    t->kind = kind == 1 ? ReplacementKind::Layer : ReplacementKind::MLP;
    ReplacementSpec& s = t->spec;
    s.B = size_t(in->batch);
    s.T = size_t(in->seq_len);
    s.D = size_t(in->hidden);
    s.H = size_t(in->heads);
    s.Hk = size_t(in->kv_heads);
    s.Dh = size_t(in->head_dim);
    s.F = size_t(in->intermediate);
    s.layer_norm = in->norm == 1;
    s.norm_eps = in->norm_eps;
    s.act = Activation(in->activation);
    s.gated = in->gated != 0;
    s.use_rope = kind == 1 && in->use_rope != 0;
    // The CPU spec holds the resolved scale; the C API's 0 means 1/sqrt(head_dim), as the binding resolves it.
    s.attn_scale = in->attn_scale != 0 ? in->attn_scale : (s.Dh ? float(1.0 / std::sqrt(double(s.Dh))) : 1.f);
    s.rope_attention_scaling = in->rope_attention_scaling;
    if (kind == 1 && (s.H == 0 || s.Hk == 0 || s.Dh == 0 || s.H % s.Hk != 0))
      throw Error("E_SHAPE", "train_create: heads, kv_heads, head_dim must be positive and heads a multiple of kv_heads");
    if (s.use_rope && !host_inv_freq) throw Error("E_SHAPE", "train_create: RoPE needs inv_freq");
    if (in->use_rope != 0 && host_inv_freq && s.Dh > 0) t->inv_freq.assign(host_inv_freq, host_inv_freq + s.Dh / 2);
    ReplacementSpec ls = s;
    ls.use_rope = in->use_rope != 0;
    t->lm_layer = layer_spec_of(ls);
    size_t bytes = 0;
    for (int r = 0; r < kCudaTrainRoles; r++) {  // host_params has STREAMLINE_CUDA_TRAIN_ROLES entries
      if (!host_params[r]) continue;
      size_t rows, cols;
      role_shape(s, r, &rows, &cols);
      TrainRole tr{r, std::vector<float>(host_params[r], host_params[r] + rows * cols), std::vector<float>(rows * cols, 0.f),
                   std::vector<float>(rows * cols, 0.f), std::vector<float>(rows * cols, 0.f)};
      bytes += 16 * rows * cols;
      t->roles.push_back(std::move(tr));
    }
    if (t->roles.empty()) throw Error("E_SHAPE", "train_create: no parameters");
    // The TS trainer passes its tensors sorted by role name, and grad_norm sums tensor by tensor: the same order
    // gives the same f64 sum, hence the same clipping factor.
    std::sort(t->roles.begin(), t->roles.end(),
              [](const TrainRole& a, const TrainRole& b) { return std::strcmp(role_name(a.role), role_name(b.role)) < 0; });
    t->counted.resize(bytes);
    *out = t.release();
  });
}

SL_EXPORT void streamline_cuda_train_destroy(streamline_cuda_train* t) { delete t; }

#ifndef STREAMLINE_CUDA_CPU_OLD_TRAINER
// Qwen3's q/k norms as two more roles of a layer replacement: replacement_step / lm_loss_step train them as the CPU
// trainer does; kept in the name order the clipping sum follows.
SL_EXPORT int streamline_cuda_train_set_qk_norm(streamline_cuda_train* t, const float* host_q_norm,
                                               const float* host_k_norm) {
  return guarded([&] {
    if (t->kind != ReplacementKind::Layer) throw Error("E_SHAPE", "train_set_qk_norm: q/k norms belong to a layer replacement");
    if (t->spec.layer_norm) throw Error("E_SHAPE", "train_set_qk_norm: q/k norms are RMSNorms, the layer's norm is a LayerNorm");
    if (!host_q_norm || !host_k_norm) throw Error("E_SHAPE", "train_set_qk_norm: give both q_norm and k_norm");
    const size_t Dh = t->spec.Dh;
    t->roles.erase(std::remove_if(t->roles.begin(), t->roles.end(),
                                  [](const TrainRole& r) { return r.role == kRoleQNormW || r.role == kRoleKNormW; }),
                   t->roles.end());
    for (int r : {int(kRoleQNormW), int(kRoleKNormW)}) {
      const float* src = r == kRoleQNormW ? host_q_norm : host_k_norm;
      t->roles.push_back(TrainRole{r, std::vector<float>(src, src + Dh), std::vector<float>(Dh, 0.f),
                                   std::vector<float>(Dh, 0.f), std::vector<float>(Dh, 0.f)});
    }
    std::sort(t->roles.begin(), t->roles.end(),
              [](const TrainRole& a, const TrainRole& b) { return std::strcmp(role_name(a.role), role_name(b.role)) < 0; });
    size_t bytes = 0;
    for (const auto& r : t->roles) bytes += 16 * r.p.size();
    t->counted.resize(bytes);
    note_call("train_set_qk_norm");
  });
}

// Gemma's post-sublayer norms as roles of the replacement (post_mlp_norm only for an mlp one), in the name order.
SL_EXPORT int streamline_cuda_train_set_post_norm(streamline_cuda_train* t, const float* host_post_attn_norm,
                                                 const float* host_post_mlp_norm) {
  return guarded([&] {
    const bool layer = t->kind == ReplacementKind::Layer;
    if (!host_post_mlp_norm) throw Error("E_SHAPE", "train_set_post_norm: post_mlp_norm is required");
    if (layer != (host_post_attn_norm != nullptr))
      throw Error("E_SHAPE", layer ? "train_set_post_norm: a layer replacement takes both post_attn_norm and post_mlp_norm"
                                   : "train_set_post_norm: an mlp replacement takes post_mlp_norm only");
    const size_t D = t->spec.D;
    t->roles.erase(std::remove_if(t->roles.begin(), t->roles.end(),
                                  [](const TrainRole& r) { return r.role == kRolePostAttnNormW || r.role == kRolePostMlpNormW; }),
                   t->roles.end());
    for (int r : {int(kRolePostAttnNormW), int(kRolePostMlpNormW)}) {
      const float* src = r == kRolePostAttnNormW ? host_post_attn_norm : host_post_mlp_norm;
      if (!src) continue;
      t->roles.push_back(TrainRole{r, std::vector<float>(src, src + D), std::vector<float>(D, 0.f),
                                   std::vector<float>(D, 0.f), std::vector<float>(D, 0.f)});
    }
    std::sort(t->roles.begin(), t->roles.end(),
              [](const TrainRole& a, const TrainRole& b) { return std::strcmp(role_name(a.role), role_name(b.role)) < 0; });
    size_t bytes = 0;
    for (const auto& r : t->roles) bytes += 16 * r.p.size();
    t->counted.resize(bytes);
    note_call("train_set_post_norm");
  });
}

// Partial RoPE: the CPU spec's rotary (R) and the tail's rotary_dim, with the narrower inv_freq both steps read.
SL_EXPORT int streamline_cuda_train_set_rotary_dim(streamline_cuda_train* t, int64_t rot_dim,
                                                   const float* host_inv_freq) {
  return guarded([&] {
    if (!t->lm_layer.use_rope) throw Error("E_SHAPE", "train_set_rotary_dim: the trainer was created without RoPE");
    if (rot_dim <= 0 || rot_dim % 2 != 0 || size_t(rot_dim) > t->spec.Dh)
      throw Error("E_SHAPE", "train_set_rotary_dim: rot_dim must be even and in (0, head_dim]");
    if (!host_inv_freq) throw Error("E_SHAPE", "train_set_rotary_dim: inv_freq[rot_dim / 2] is required");
    t->inv_freq.assign(host_inv_freq, host_inv_freq + rot_dim / 2);
    t->spec.rotary = size_t(rot_dim);
    t->lm_layer.rotary_dim = size_t(rot_dim);
    note_call("train_set_rotary_dim " + std::to_string(rot_dim));
  });
}
#endif

SL_EXPORT int streamline_cuda_train_step(streamline_cuda_train* t, const float* host_x, const float* host_target,
                                         const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                         float grad_scale, double* loss) {
  return guarded([&] {
    if (batch <= 0 || size_t(batch) > t->spec.B)
      throw Error("E_SHAPE", "train_step: batch must be in [1, " + std::to_string(t->spec.B) + "]");
    if (t->spec.use_rope && !host_positions) throw Error("E_SHAPE", "train_step: RoPE needs positions");
    need_free_slot(t);
    *loss = cpu_train_step(t, host_x, host_target, host_positions, host_mask, batch, grad_scale);
  });
}

#ifndef STREAMLINE_CUDA_CPU_OLD_TRAINER
namespace {
using Staged = streamline_cuda_train::Staged;

// STREAMLINE_CUDA_CPU_FAIL_STAGED's step number, 0 when unset.
int fail_staged_at() {
  const char* f = std::getenv("STREAMLINE_CUDA_CPU_FAIL_STAGED");
  return f ? std::atoi(f) : 0;
}

// Takes the idle input slot (the real backend's two, shared by both losses).
void push_staged(streamline_cuda_train* t, Staged&& b, const char* fn) {
  std::unique_lock<std::mutex> lk(t->mu);
  if (t->staged.size() + size_t(t->stepping) >= 2)
    throw Error("E_CUDA", std::string(fn) + ": both input slots hold batches no step_staged has finished with (step first)");
  t->staged.push_back(std::move(b));
  t->stages++;
  t->cv.notify_all();
  // A pipelined trainer stages batch n + 1 during staged step n: with the failure hook on step n, that stage returns
  // only after the step has failed, so the caller sees the step's rejection while its stage is still pending (the
  // order in which an unhandled rejection would show).
  if (const int n = fail_staged_at(); n > 0 && t->stages == uint64_t(n) + 1)
    t->cv.wait_for(lk, std::chrono::milliseconds(500), [&] { return t->injected; });
}

// The staged step of either loss on the oldest staged batch: `fn` names it in errors, `log` in the call log. A batch
// staged for the other loss is refused and stays staged (the real backend's TrainStep::take_staged, same message).
template <typename F> void run_staged(streamline_cuda_train* t, bool lm, const char* fn, const char* log, F&& step) {
  Staged b;
  uint64_t stages_before;
  {
    std::lock_guard<std::mutex> lk(t->mu);
    if (t->staged.empty()) throw Error("E_CUDA", std::string(fn) + ": no staged batch (stage one first)");
    if (t->staged.front().lm != lm)
      throw Error("E_CUDA", std::string(fn) + ": the oldest staged batch was staged for the " + (lm ? "mse" : "lm") +
                                " loss (" + (lm ? "step_staged" : "step_lm_staged") + " takes it)");
    b = std::move(t->staged.front());
    t->staged.pop_front();
    t->stepping++;
    stages_before = t->stages;
  }
  note_call(std::string(log) + " begin");
  // STREAMLINE_CUDA_CPU_FAIL_STAGED=<n>: the trainer's n-th staged step (1-based, either loss) fails, after the next
  // stage had time to start, as a GPU error during the overlap would.
  const int call = ++t->staged_steps;
  if (fail_staged_at() == call) {
    std::unique_lock<std::mutex> lk(t->mu);
    t->cv.wait_for(lk, std::chrono::milliseconds(500), [&] { return t->stages != stages_before; });
    t->stepping--;
    t->injected = true;
    t->cv.notify_all();
    throw Error("E_CUDA", std::string(fn) + ": injected failure (STREAMLINE_CUDA_CPU_FAIL_STAGED)");
  }
  struct Release {  // the slot is free again however the step ends
    streamline_cuda_train* t;
    ~Release() {
      std::lock_guard<std::mutex> lk(t->mu);
      t->stepping--;
    }
  } release{t};
  step(b);
  std::unique_lock<std::mutex> lk(t->mu);
  if (const char* w = std::getenv("STREAMLINE_CUDA_CPU_WAIT_STAGE_MS"))
    t->cv.wait_for(lk, std::chrono::milliseconds(std::atol(w)), [&] { return t->stages != stages_before; });
  note_call(std::string(log) + " end");
}
}  // namespace

namespace {
// train_stage, train_stage_bf16 and train_stage_kept once the states are f32 (logged "train_stage <batch><tag>").
void stage_mse(streamline_cuda_train* t, std::vector<float> x, std::vector<float> y, const int32_t* host_positions,
               const uint8_t* host_mask, int64_t batch, const char* tag) {
  const size_t M = size_t(batch) * t->spec.T;
  note_call("train_stage " + std::to_string(batch) + tag);
  Staged b;
  b.x = std::move(x);
  b.y = std::move(y);
  if (host_positions) b.pos.assign(host_positions, host_positions + M);
  if (host_mask) b.mask.assign(host_mask, host_mask + M);
  b.batch = batch;
  push_staged(t, std::move(b), "stage");
}
void check_stage_batch(const streamline_cuda_train* t, int64_t batch, const char* fn) {
  if (batch <= 0 || size_t(batch) > t->spec.B)
    throw Error("E_SHAPE", std::string(fn) + ": batch must be in [1, " + std::to_string(t->spec.B) + "]");
}
}  // namespace

SL_EXPORT int streamline_cuda_train_stage(streamline_cuda_train* t, const float* host_x, const float* host_target,
                                          const int32_t* host_positions, const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    check_stage_batch(t, batch, "train_stage");
    if (t->spec.use_rope && !host_positions) throw Error("E_SHAPE", "train_stage: RoPE needs positions");
    const size_t n = size_t(batch) * t->spec.T * t->spec.D;
    stage_mse(t, std::vector<float>(host_x, host_x + n), std::vector<float>(host_target, host_target + n),
              host_positions, host_mask, batch, "");
  });
}

SL_EXPORT int streamline_cuda_train_step_staged(streamline_cuda_train* t, float grad_scale, double* loss) {
  return guarded([&] {
    run_staged(t, false, "step_staged", "train_step_staged", [&](const Staged& b) {
      *loss = cpu_train_step(t, b.x.data(), b.y.data(), b.pos.empty() ? nullptr : b.pos.data(),
                             b.mask.empty() ? nullptr : b.mask.data(), b.batch, grad_scale);
    });
  });
}
#endif

#ifndef STREAMLINE_CUDA_CPU_OLD_TRAINER
// replacement_loss on each sequence alone, with the CPU trainer's own arguments for a validation block (B = 1): the
// numbers its validation sums.
SL_EXPORT int streamline_cuda_train_eval(streamline_cuda_train* t, const float* host_x, const float* host_target,
                                         const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                         double* host_losses) {
  return guarded([&] {
    if (batch <= 0 || size_t(batch) > t->spec.B)
      throw Error("E_SHAPE", "train_eval: batch must be in [1, " + std::to_string(t->spec.B) + "]");
    if (t->spec.use_rope && !host_positions) throw Error("E_SHAPE", "train_eval: RoPE needs positions");
    need_free_slot(t);
    note_call("train_eval " + std::to_string(batch));
    ReplacementSpec s = t->spec;
    s.B = 1;
    ReplacementParams p{};
    for (auto& r : t->roles) p[r.role] = r.p.data();
    const size_t T = s.T, D = s.D;
    for (size_t b = 0; b < size_t(batch); b++)
      host_losses[b] = replacement_loss(t->kind, s, p, host_x + b * T * D, host_target + b * T * D,
                                        s.use_rope ? host_positions + b * T : nullptr, host_mask ? host_mask + b * T : nullptr,
                                        s.use_rope ? t->inv_freq.data() : nullptr);
  });
}
#endif

#ifndef STREAMLINE_CUDA_CPU_OLD_TRAINER
// The lm loss: lm_loss_step / lm_loss_eval on the copied tail with the CPU lm binding's arguments (binding_lmloss.cpp:
// weights in their own dtypes, the tail's LayerSpec for the call's batch, positions and inv_freq only with RoPE), so
// that a cuda lm run through this library is bitwise the CPU's.
SL_EXPORT int streamline_cuda_train_set_lm_tail(streamline_cuda_train* t, int64_t n_layers,
                                                const streamline_cuda_weight* host_layers,
                                                const streamline_cuda_weight* norm_w, const streamline_cuda_weight* norm_b,
                                                const streamline_cuda_weight* lm_head, int64_t vocab) {
  return guarded([&] {
    const char* fn = "train_set_lm_tail";
    if (n_layers < 0) throw Error("E_SHAPE", std::string(fn) + ": n_layers must be >= 0");
    if (n_layers > 0 && !host_layers) throw Error("E_SHAPE", std::string(fn) + ": host_layers is NULL");
    if (!lm_head || !lm_head->data) throw Error("E_SHAPE", std::string(fn) + ": lm_head is required");
    if (vocab <= 0) throw Error("E_SHAPE", std::string(fn) + ": vocab must be positive");
    const LayerSpec& ls = t->lm_layer;
    if (n_layers > 0 && (ls.heads == 0 || ls.kv_heads == 0 || ls.head_dim == 0))
      throw Error("E_SHAPE", std::string(fn) + ": the trainer was created without heads, kv_heads and head_dim, which the "
                                               "frozen layers need");
    if (n_layers > 0 && ls.use_rope && t->inv_freq.empty())
      throw Error("E_SHAPE", std::string(fn) + ": the frozen layers use RoPE but the trainer was created without inv_freq");
    // Built aside and swapped in at the end: a failure changes nothing.
    auto lm = std::make_unique<LmTail>();
    auto buf = [&]() -> Buffer& { lm->bufs.push_back(std::make_unique<Buffer>()); return *lm->bufs.back(); };
    const int64_t D = int64_t(ls.hidden), F = int64_t(ls.intermediate), Q = int64_t(ls.heads * ls.head_dim),
                  KV = int64_t(ls.kv_heads * ls.head_dim);
    const std::vector<int64_t> shapes[STREAMLINE_CUDA_ROLES] = {{D}, {D}, {Q, D}, {Q}, {KV, D}, {KV}, {KV, D}, {KV},
                                                                {D, Q}, {D}, {D}, {D}, {F, D}, {F}, {F, D}, {F},
                                                                {D, F}, {D}};
    lm->tail.layer = ls;
    for (int64_t k = 0; k < n_layers; k++) {
      const std::string what = std::string(fn) + ": layers[" + std::to_string(k) + "]";
      const streamline_cuda_weight* roles = host_layers + k * STREAMLINE_CUDA_ROLES;
      if (roles[STREAMLINE_CUDA_GATE_B].data)
        throw Error("E_UNSUPPORTED", what + ": gate.bias (Llama mlp_bias) is not supported by the lm loss");
      LayerWeights w;
      try {
        for (int r = 0; r < STREAMLINE_CUDA_ROLES; r++)
          *layer_weight_role(w, kRoleNames[r]) = copy_weight(buf(), roles[r], shapes[r], kRoleNames[r]);
        validate_layer(ls, w);
      } catch (const Error& e) {
        throw Error(e.code, what + ": " + e.what());
      }
      lm->tail.layers.push_back(w);
    }
    static const streamline_cuda_weight kNone{nullptr, 0, 0};
    HeadSpec& h = lm->tail.head;
    h.hidden = size_t(D);
    h.vocab = size_t(vocab);
    h.norm = ls.norm;
    h.norm_eps = ls.norm_eps;
    h.final_norm = norm_w && norm_w->data;
    HeadWeights& hw = lm->tail.head_w;
    try {
      hw.norm_w = copy_weight(buf(), norm_w ? *norm_w : kNone, {D}, "final_norm.weight");
      hw.norm_b = copy_weight(buf(), norm_b ? *norm_b : kNone, {D}, "final_norm.bias");
      hw.lm_head = copy_weight(buf(), *lm_head, {vocab, D}, "lm_head.weight");
      validate_head(h, hw);
    } catch (const Error& e) {
      throw Error(e.code, std::string(fn) + ": head: " + e.what());
    }
    note_call(std::string(fn) + " " + std::to_string(n_layers));
    t->lm = std::move(lm);
  });
}

// The tail layers' q/k norms into the frozen tail's LayerWeights (lm_loss_step runs them as the CPU does).
SL_EXPORT int streamline_cuda_train_set_lm_tail_qk_norm(streamline_cuda_train* t, int64_t n_layers,
                                                        const streamline_cuda_weight* host_norms) {
  return guarded([&] {
    const char* fn = "train_set_lm_tail_qk_norm";
    if (!t->lm) throw Error("E_SHAPE", std::string(fn) + ": train_set_lm_tail first");
    auto& layers = t->lm->tail.layers;
    if (n_layers != int64_t(layers.size()))
      throw Error("E_SHAPE", std::string(fn) + ": " + std::to_string(n_layers) + " layers' norms for a tail of " +
                                 std::to_string(layers.size()) + " layers");
    if (n_layers > 0 && !host_norms) throw Error("E_SHAPE", std::string(fn) + ": host_norms is NULL");
    const int64_t Dh = int64_t(t->lm->tail.layer.head_dim);
    std::vector<LayerWeights> next = layers;  // applied only when every layer validates
    for (int64_t k = 0; k < n_layers; k++) {
      const std::string what = std::string(fn) + ": layers[" + std::to_string(k) + "]";
      try {
        for (int i = 0; i < 2; i++) {
          t->lm->bufs.push_back(std::make_unique<Buffer>());
          (i == 0 ? next[size_t(k)].q_norm_w : next[size_t(k)].k_norm_w) =
              copy_weight(*t->lm->bufs.back(), host_norms[2 * k + i], {Dh}, i == 0 ? "q_norm.weight" : "k_norm.weight");
        }
        validate_layer(t->lm->tail.layer, next[size_t(k)]);
      } catch (const Error& e) {
        throw Error(e.code, what + ": " + e.what());
      }
    }
    layers = next;
    note_call(std::string(fn) + " " + std::to_string(n_layers));
  });
}

// The tail layers' post norms into the frozen tail's LayerWeights, like their q/k norms.
SL_EXPORT int streamline_cuda_train_set_lm_tail_post_norm(streamline_cuda_train* t, int64_t n_layers,
                                                          const streamline_cuda_weight* host_norms) {
  return guarded([&] {
    const char* fn = "train_set_lm_tail_post_norm";
    if (!t->lm) throw Error("E_SHAPE", std::string(fn) + ": train_set_lm_tail first");
    auto& layers = t->lm->tail.layers;
    if (n_layers != int64_t(layers.size()))
      throw Error("E_SHAPE", std::string(fn) + ": " + std::to_string(n_layers) + " layers' norms for a tail of " +
                                 std::to_string(layers.size()) + " layers");
    if (n_layers > 0 && !host_norms) throw Error("E_SHAPE", std::string(fn) + ": host_norms is NULL");
    const int64_t D = int64_t(t->lm->tail.layer.hidden);
    std::vector<LayerWeights> next = layers;  // applied only when every layer validates
    for (int64_t k = 0; k < n_layers; k++) {
      const std::string what = std::string(fn) + ": layers[" + std::to_string(k) + "]";
      try {
        for (int i = 0; i < 2; i++) {
          t->lm->bufs.push_back(std::make_unique<Buffer>());
          (i == 0 ? next[size_t(k)].post_attn_norm_w : next[size_t(k)].post_mlp_norm_w) =
              copy_weight(*t->lm->bufs.back(), host_norms[2 * k + i], {D},
                          i == 0 ? "post_attn_norm.weight" : "post_mlp_norm.weight");
        }
        validate_layer(t->lm->tail.layer, next[size_t(k)]);
      } catch (const Error& e) {
        throw Error(e.code, what + ": " + e.what());
      }
    }
    layers = next;
    note_call(std::string(fn) + " " + std::to_string(n_layers));
  });
}

// Per-layer RoPE of the tail: FrozenTail::inv_freqs / rope_scalings, which lm_loss_step reads as the CPU lm binding
// gives them (there a layer rotating like R has no row of its own; here it repeats R's, the same values).
SL_EXPORT int streamline_cuda_train_set_lm_tail_rope(streamline_cuda_train* t, int64_t n_layers,
                                                     const float* host_inv_freqs,
                                                     const float* host_attention_scalings) {
  return guarded([&] {
    const char* fn = "train_set_lm_tail_rope";
    if (!t->lm) throw Error("E_SHAPE", std::string(fn) + ": train_set_lm_tail first");
    if (!t->lm_layer.use_rope) throw Error("E_SHAPE", std::string(fn) + ": the trainer was created without RoPE");
    const size_t L = t->lm->tail.layers.size();
    if (n_layers != int64_t(L))
      throw Error("E_SHAPE", std::string(fn) + ": " + std::to_string(n_layers) + " layers' RoPE given, the lm tail has " +
                                 std::to_string(L));
    if (L > 0 && (!host_inv_freqs || !host_attention_scalings))
      throw Error("E_SHAPE", std::string(fn) + ": inv_freqs and attention_scalings are required");
    const size_t half = (t->lm_layer.rotary_dim ? t->lm_layer.rotary_dim : t->lm_layer.head_dim) / 2;
    std::vector<std::vector<float>> inv(L);
    std::vector<float> sc(L);
    for (size_t k = 0; k < L; k++) {
      inv[k].assign(host_inv_freqs + k * half, host_inv_freqs + (k + 1) * half);
      sc[k] = host_attention_scalings[k];
      bool finite = std::isfinite(sc[k]);
      for (float v : inv[k]) finite = finite && std::isfinite(v);
      if (!finite) throw Error("E_SHAPE", std::string(fn) + ": layers[" + std::to_string(k) + "]: values must be finite");
    }
    t->lm->tail.inv_freqs = std::move(inv);
    t->lm->tail.rope_scalings = std::move(sc);
    note_call(std::string(fn) + " " + std::to_string(n_layers));
  });
}

SL_EXPORT int streamline_cuda_train_set_windows(streamline_cuda_train* t, int64_t window, int64_t n_tail,
                                                const int64_t* tail_windows) {
  return guarded([&] {
    const char* fn = "train_set_windows";
    if (window < 0 || n_tail < 0) throw Error("E_SHAPE", std::string(fn) + ": window and n_tail must be >= 0");
    if (window > 0 && t->kind != ReplacementKind::Layer)
      throw Error("E_SHAPE", std::string(fn) + ": an mlp replacement has no attention window");
    const int64_t have = t->lm ? int64_t(t->lm->tail.layers.size()) : 0;
    if (n_tail != have)
      throw Error("E_SHAPE", std::string(fn) + ": " + std::to_string(n_tail) + " tail windows for a tail of " +
                                 std::to_string(have) + " layers");
    std::vector<size_t> tail(size_t(n_tail), 0);
    std::string log = std::string(fn) + " " + std::to_string(window);
    for (int64_t k = 0; k < n_tail; k++) {
      const int64_t w = tail_windows ? tail_windows[k] : 0;
      if (w < 0) throw Error("E_SHAPE", std::string(fn) + ": tail windows must be >= 0");
      tail[size_t(k)] = size_t(w);
      log += " " + std::to_string(w);
    }
    t->spec.window = size_t(window);
    if (t->lm) t->lm->tail.windows = tail;
    note_call(log);
  });
}

namespace {
// The input checks of every lm call (train_stage_lm makes them before it takes a slot, so a bad target fails there).
void check_lm_inputs(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                     const int32_t* host_positions, int64_t batch, const char* fn) {
  if (!t->lm) throw Error("E_SHAPE", std::string(fn) + ": no lm tail (call train_set_lm_tail first)");
  if (batch <= 0 || size_t(batch) > t->spec.B)
    throw Error("E_SHAPE", std::string(fn) + ": batch must be in [1, " + std::to_string(t->spec.B) + "]");
  if (!host_x || !host_targets) throw Error("E_SHAPE", std::string(fn) + ": x and targets are required");
  if ((t->spec.use_rope || t->lm_layer.use_rope) && !host_positions)
    throw Error("E_SHAPE", std::string(fn) + ": RoPE needs positions");
  const size_t M = size_t(batch) * t->spec.T, V = t->lm->tail.head.vocab;
  for (size_t m = 0; m < M; m++)
    if (host_targets[m] >= 0 && size_t(host_targets[m]) >= V)
      throw Error("E_TOKEN_RANGE", std::string(fn) + ": targets[" + std::to_string(m) + "] = " +
                                       std::to_string(host_targets[m]) + " is outside the vocabulary [0, " +
                                       std::to_string(V) + ")");
}

// The checks train_step_lm and train_eval_lm share; returns the tail with its spec for `batch` sequences.
FrozenTail lm_call(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                   const int32_t* host_positions, int64_t batch, const char* fn) {
  check_lm_inputs(t, host_x, host_targets, host_positions, batch, fn);
  need_free_slot(t);
  FrozenTail tail = t->lm->tail;  // views into t->lm's buffers
  tail.layer.batch = size_t(batch);
  return tail;
}

// train_step_lm's arithmetic, shared with train_step_lm_staged so that both are lm_loss_step on the same arguments.
double cpu_lm_step(streamline_cuda_train* t, const FrozenTail& tail, const float* host_x, const int32_t* host_targets,
                   const int32_t* host_positions, const uint8_t* host_mask, int64_t batch, float grad_scale) {
  const StepArgs a = step_args(t, batch, grad_scale);
  const ReplacementSpec& s = a.s;
  const ReplacementParams& p = a.p;
  const ReplacementGrads& g = a.g;
  const bool rope = s.use_rope || tail.layer.use_rope;
  return lm_loss_step(t->kind, s, p, g, host_x, tail, host_targets, rope ? host_positions : nullptr, host_mask,
                      rope ? t->inv_freq.data() : nullptr);
}
}  // namespace

SL_EXPORT int streamline_cuda_train_step_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                            const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                            float grad_scale, double* loss) {
  return guarded([&] {
    FrozenTail tail = lm_call(t, host_x, host_targets, host_positions, batch, "train_step_lm");
    note_call("train_step_lm " + std::to_string(batch));
    *loss = cpu_lm_step(t, tail, host_x, host_targets, host_positions, host_mask, batch, grad_scale);
  });
}

// Prefetch for the lm loss: the batch is checked and copied at stage (into the slots train_stage uses), and
// train_step_lm_staged is train_step_lm's arithmetic on the copy, with the tail current when it runs.
SL_EXPORT int streamline_cuda_train_stage_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                             const int32_t* host_positions, const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    check_lm_inputs(t, host_x, host_targets, host_positions, batch, "train_stage_lm");
    note_call("train_stage_lm " + std::to_string(batch));
    const size_t M = size_t(batch) * t->spec.T, n = M * t->spec.D;
    Staged b;
    b.lm = true;
    b.x.assign(host_x, host_x + n);
    b.targets.assign(host_targets, host_targets + M);
    if (host_positions) b.pos.assign(host_positions, host_positions + M);
    if (host_mask) b.mask.assign(host_mask, host_mask + M);
    b.batch = batch;
    push_staged(t, std::move(b), "stage");  // the real backend's message: the slots are one pool
  });
}

namespace {
// bf16 rows, one pointer per sequence, widened exactly (as the GPU widens them).
std::vector<float> widen_rows(const uint16_t* const* rows, int64_t batch, size_t TD, const char* fn) {
  if (!rows) throw Error("E_SHAPE", std::string(fn) + ": rows are required");
  std::vector<float> out(size_t(batch) * TD);
  for (size_t b = 0; b < size_t(batch); b++) {
    if (!rows[b]) throw Error("E_SHAPE", std::string(fn) + ": sequence " + std::to_string(b) + " has no x or target rows");
    for (size_t i = 0; i < TD; i++) out[b * TD + i] = bf16_to_f32(rows[b][i]);
  }
  return out;
}
}  // namespace

SL_EXPORT int streamline_cuda_train_stage_bf16(streamline_cuda_train* t, const uint16_t* const* host_x_rows,
                                               const uint16_t* const* host_target_rows, const int32_t* host_positions,
                                               const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    check_stage_batch(t, batch, "train_stage_bf16");
    if (t->spec.use_rope && !host_positions) throw Error("E_SHAPE", "train_stage_bf16: RoPE needs positions");
    const size_t TD = t->spec.T * t->spec.D;
    std::vector<float> x = widen_rows(host_x_rows, batch, TD, "train_stage_bf16");
    std::vector<float> y = widen_rows(host_target_rows, batch, TD, "train_stage_bf16");
    stage_mse(t, std::move(x), std::move(y), host_positions, host_mask, batch, " bf16");
  });
}

// Pairs kept on the device, modelled by host copies. The free memory keep_pairs compares with is
// STREAMLINE_CUDA_CPU_FREE_BYTES (default 64 GiB), so a test can make the pairs not fit; the second-slot allowance is
// the real backend's.
SL_EXPORT int streamline_cuda_train_keep_pairs(streamline_cuda_train* t, int64_t blocks, int targets,
                                               double max_fraction, int* kept) {
  return guarded([&] {
    if (blocks <= 0) throw Error("E_SHAPE", "train_keep_pairs: blocks must be positive");
    if (!kept) throw Error("E_SHAPE", "train_keep_pairs: kept is required");
    if (!t->kept_x.empty()) throw Error("E_SHAPE", "keep_pairs: pairs are kept already");
    if (!(max_fraction > 0 && max_fraction <= 1)) throw Error("E_SHAPE", "keep_pairs: max_fraction must be in (0, 1]");
    const char* env = std::getenv("STREAMLINE_CUDA_CPU_FREE_BYTES");
    const double free_b = env ? std::strtod(env, nullptr) : double(size_t(64) << 30);
    const size_t TD = t->spec.T * t->spec.D, M = t->spec.B * t->spec.T;
    const double need = double(blocks) * double(TD) * 2 * (targets ? 2 : 1) + double(M * t->spec.D * 8 + M * 9);
    note_call("train_keep_pairs " + std::to_string(blocks));
    *kept = need <= max_fraction * free_b ? 1 : 0;
    if (!*kept) return;
    t->kept_x.assign(size_t(blocks), {});
    if (targets) t->kept_y.assign(size_t(blocks), {});
    t->kept_put.assign(size_t(blocks), false);
    t->kept_targets = targets != 0;
  });
}

SL_EXPORT int streamline_cuda_train_put_pair(streamline_cuda_train* t, int64_t block, const uint16_t* host_x,
                                             const uint16_t* host_target) {
  return guarded([&] {
    if (block < 0 || size_t(block) >= t->kept_x.size())
      throw Error("E_SHAPE", "put_pair: block " + std::to_string(block) + " is not among the " +
                                 std::to_string(t->kept_x.size()) + " kept (keep_pairs first)");
    if (!host_x || (host_target != nullptr) != t->kept_targets)
      throw Error("E_SHAPE", t->kept_targets ? "put_pair: x and target are required" : "put_pair: x only (pairs kept without targets)");
    const size_t TD = t->spec.T * t->spec.D;
    t->kept_x[size_t(block)].assign(host_x, host_x + TD);
    if (host_target) t->kept_y[size_t(block)].assign(host_target, host_target + TD);
    t->kept_put[size_t(block)] = true;
  });
}

namespace {
// The kept blocks of a stage as row pointers (the bf16 stages' input), after the real backend's checks.
std::vector<const uint16_t*> kept_rows(streamline_cuda_train* t, const int64_t* blocks, int64_t batch, bool target,
                                       const char* fn) {
  check_stage_batch(t, batch, fn);
  if (!blocks) throw Error("E_SHAPE", std::string(fn) + ": blocks are required");
  std::vector<const uint16_t*> rows;
  for (int64_t b = 0; b < batch; b++) {
    const int64_t k = blocks[b];
    if (k < 0 || size_t(k) >= t->kept_put.size() || !t->kept_put[size_t(k)])
      throw Error("E_SHAPE", std::string(fn) + ": block " + std::to_string(k) + " (sequence " + std::to_string(b) +
                                 ") was not put (put_pair fills blocks [0, " + std::to_string(t->kept_put.size()) + "))");
    rows.push_back(target ? t->kept_y[size_t(k)].data() : t->kept_x[size_t(k)].data());
  }
  return rows;
}
}  // namespace

SL_EXPORT int streamline_cuda_train_stage_kept(streamline_cuda_train* t, const int64_t* blocks,
                                               const int32_t* host_positions, const uint8_t* host_mask,
                                               int64_t batch) {
  return guarded([&] {
    const std::vector<const uint16_t*> xr = kept_rows(t, blocks, batch, false, "stage_kept");
    if (!t->kept_targets) throw Error("E_SHAPE", "stage_kept: the pairs were kept without targets (stage_lm_kept takes them)");
    const std::vector<const uint16_t*> yr = kept_rows(t, blocks, batch, true, "stage_kept");
    if (t->spec.use_rope && !host_positions) throw Error("E_SHAPE", "stage_kept: RoPE needs positions");
    const size_t TD = t->spec.T * t->spec.D;
    std::vector<float> x = widen_rows(xr.data(), batch, TD, "stage_kept"), y = widen_rows(yr.data(), batch, TD, "stage_kept");
    stage_mse(t, std::move(x), std::move(y), host_positions, host_mask, batch, " kept");
  });
}

namespace {
// train_stage_lm_bf16 and train_stage_lm_kept: bf16 rows widened, then train_stage_lm's checks and copy (logged
// "train_stage_lm <batch><tag>").
void stage_lm_rows(streamline_cuda_train* t, const uint16_t* const* rows, const int32_t* host_targets,
                   const int32_t* host_positions, const uint8_t* host_mask, int64_t batch, const char* fn,
                   const char* tag) {
  check_stage_batch(t, batch, fn);
  const size_t TD = t->spec.T * t->spec.D, M = size_t(batch) * t->spec.T;
  std::vector<float> x = widen_rows(rows, batch, TD, fn);
  check_lm_inputs(t, x.data(), host_targets, host_positions, batch, fn);
  note_call("train_stage_lm " + std::to_string(batch) + tag);
  Staged b;
  b.lm = true;
  b.x = std::move(x);
  b.targets.assign(host_targets, host_targets + M);
  if (host_positions) b.pos.assign(host_positions, host_positions + M);
  if (host_mask) b.mask.assign(host_mask, host_mask + M);
  b.batch = batch;
  push_staged(t, std::move(b), "stage");
}
}  // namespace

SL_EXPORT int streamline_cuda_train_stage_lm_bf16(streamline_cuda_train* t, const uint16_t* const* host_x_rows,
                                                  const int32_t* host_targets, const int32_t* host_positions,
                                                  const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    stage_lm_rows(t, host_x_rows, host_targets, host_positions, host_mask, batch, "train_stage_lm_bf16", " bf16");
  });
}

SL_EXPORT int streamline_cuda_train_stage_lm_kept(streamline_cuda_train* t, const int64_t* blocks,
                                                  const int32_t* host_targets, const int32_t* host_positions,
                                                  const uint8_t* host_mask, int64_t batch) {
  return guarded([&] {
    const std::vector<const uint16_t*> xr = kept_rows(t, blocks, batch, false, "stage_lm_kept");
    stage_lm_rows(t, xr.data(), host_targets, host_positions, host_mask, batch, "stage_lm_kept", " kept");
  });
}

SL_EXPORT int streamline_cuda_train_step_lm_staged(streamline_cuda_train* t, float grad_scale, double* loss) {
  return guarded([&] {
    run_staged(t, true, "step_lm_staged", "train_step_lm_staged", [&](const Staged& b) {
      // The tail cannot be removed, only replaced: the one staging checked against is still there (or a newer one).
      FrozenTail tail = t->lm->tail;
      tail.layer.batch = size_t(b.batch);
      *loss = cpu_lm_step(t, tail, b.x.data(), b.targets.data(), b.pos.empty() ? nullptr : b.pos.data(),
                          b.mask.empty() ? nullptr : b.mask.data(), b.batch, grad_scale);
    });
  });
}

// lm_loss_eval of each sequence alone (B = 1), as the CPU trainer's lm validation calls it per block.
SL_EXPORT int streamline_cuda_train_eval_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                            const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                            double* host_losses) {
  return guarded([&] {
    FrozenTail tail = lm_call(t, host_x, host_targets, host_positions, batch, "train_eval_lm");
    if (!host_losses) throw Error("E_SHAPE", "train_eval_lm: losses is NULL");
    note_call("train_eval_lm " + std::to_string(batch));
    ReplacementSpec s = t->spec;
    s.B = 1;
    tail.layer.batch = 1;
    ReplacementParams p{};
    for (auto& r : t->roles) p[r.role] = r.p.data();
    const bool rope = s.use_rope || tail.layer.use_rope;
    const size_t T = s.T, D = s.D;
    for (size_t b = 0; b < size_t(batch); b++)
      host_losses[b] = lm_loss_eval(t->kind, s, p, host_x + b * T * D, tail, host_targets + b * T,
                                    rope ? host_positions + b * T : nullptr, host_mask ? host_mask + b * T : nullptr,
                                    rope ? t->inv_freq.data() : nullptr);
  });
}
#endif

SL_EXPORT int streamline_cuda_train_apply(streamline_cuda_train* t, const streamline_cuda_adamw* o, double* grad_norm_out) {
  return guarded([&] {
    std::vector<float*> grads;
    std::vector<size_t> sizes;
    for (auto& r : t->roles) { grads.push_back(r.g.data()); sizes.push_back(r.g.size()); }
    // Non-finite: nothing changes (the real backend reads the norm before clipping), so the norm comes first.
    double norm = grad_norm(grads, sizes);
    *grad_norm_out = norm;
    if (!std::isfinite(norm)) return;
    if (o->max_norm > 0) clip_grad_norm(grads, sizes, o->max_norm);
    AdamWOptions opt;
    opt.lr = o->lr;
    opt.beta1 = o->beta1;
    opt.beta2 = o->beta2;
    opt.eps = o->eps;
    opt.weight_decay = o->weight_decay;
    opt.step = o->step;
    std::vector<AdamWTensor> ts;
    for (auto& r : t->roles) ts.push_back({r.p.data(), r.g.data(), r.m.data(), r.v.data(), r.p.size()});
    adamw_step(ts, opt);
    for (auto& r : t->roles) std::fill(r.g.begin(), r.g.end(), 0.f);
  });
}

namespace {
int copy_role(streamline_cuda_train* t, int32_t role, float* host_out, int64_t numel, bool grads) {
  return guarded([&] {
    for (auto& r : t->roles) {
      if (r.role != role) continue;
      const std::vector<float>& src = grads ? r.g : r.p;
      if (numel < 0 || size_t(numel) != src.size())
        throw Error("E_SHAPE", std::string("train_get: ") + role_name(role) + " has " + std::to_string(src.size()) +
                                   " elements, asked for " + std::to_string(numel));
      std::memcpy(host_out, src.data(), src.size() * 4);
      return;
    }
    throw Error("E_SHAPE", "train_get: role " + std::to_string(role) + " is not a parameter of this replacement");
  });
}
}  // namespace

SL_EXPORT int streamline_cuda_train_get_params(streamline_cuda_train* t, int32_t role, float* host_out, int64_t numel) {
  note_call(std::string("train_get_params ") + role_name(role));
  return copy_role(t, role, host_out, numel, false);
}

SL_EXPORT int streamline_cuda_train_get_grads(streamline_cuda_train* t, int32_t role, float* host_out, int64_t numel) {
  return copy_role(t, role, host_out, numel, true);
}

#ifndef STREAMLINE_CUDA_CPU_OLD_TRAINER
namespace {
TrainRole& find_role(streamline_cuda_train* t, int32_t role, int64_t numel, const char* fn) {
  for (auto& r : t->roles) {
    if (r.role != role) continue;
    if (numel < 0 || size_t(numel) != r.p.size())
      throw Error("E_SHAPE", std::string(fn) + ": " + role_name(role) + " has " + std::to_string(r.p.size()) +
                                 " elements, asked for " + std::to_string(numel));
    return r;
  }
  throw Error("E_SHAPE", std::string(fn) + ": role " + std::to_string(role) + " is not a parameter of this replacement");
}
}  // namespace

SL_EXPORT int streamline_cuda_train_get_state(streamline_cuda_train* t, int32_t role, float* host_param, float* host_m,
                                              float* host_v, int64_t numel) {
  return guarded([&] {
    const TrainRole& r = find_role(t, role, numel, "train_get_state");
    if (host_param) std::memcpy(host_param, r.p.data(), r.p.size() * 4);
    if (host_m) std::memcpy(host_m, r.m.data(), r.m.size() * 4);
    if (host_v) std::memcpy(host_v, r.v.data(), r.v.size() * 4);
  });
}

SL_EXPORT int streamline_cuda_train_set_state(streamline_cuda_train* t, int32_t role, const float* host_param,
                                              const float* host_m, const float* host_v, int64_t numel) {
  return guarded([&] {
    TrainRole& r = find_role(t, role, numel, "train_set_state");
    if (!host_param || !host_m || !host_v) throw Error("E_SHAPE", "train_set_state: param, m and v are all required");
    std::memcpy(r.p.data(), host_param, r.p.size() * 4);
    std::memcpy(r.m.data(), host_m, r.m.size() * 4);
    std::memcpy(r.v.data(), host_v, r.v.size() * 4);
  });
}
#endif
