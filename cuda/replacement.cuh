// One optimiser step of an `mlp` or `layer` replacement on the GPU (issue 9): the semantics of the CPU step
// (streamline::replacement_step, native/include/streamline/replacement.h) followed by clip_grad_norm and adamw_step
// (train.h), and the validation loss (the same forward and loss, no backward). Not here: the `lm` loss (frozen rest of
// the model) is in replacement_lm.cu; schedules are TypeScript's.
//
// Precision: f32 master weights, gradients and Adam moments; bf16 copies of the four weight groups feed every GEMM
// (bf16 operands, f32 accumulation through cuBLASLt: forward, dX and dW). Everything else is f32: the residual
// stream, norms, RoPE, the MLP's gate/up values and their gradients, the loss (summed in f64). q, k, v are rounded to
// bf16 once (after bias and RoPE) for the tensor-core attention, and the backward reads those same rounded values,
// so the recomputed probabilities agree with the forward's log-sum-exp.
//
// Saved between forward and backward (the CPU saves the same quantities): normed inputs (bf16, the dW operands),
// q/k/v (bf16; f32 copies of the rounded values too when the f32 attention backward runs), the attention output
// (bf16, and f32 for that kernel) and its lse, the residual after attention,
// the MLP's gate and up values (f32) and its hidden activation (bf16).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "common.cuh"
#include "gemm.cuh"
#include "lm_head.cuh"
#include "streamline/replacement.h"
#include "streamline/train.h"

namespace streamline {
namespace cuda {

// Replacement roles (streamline::ReplacementRole), named apart from the decoder layer's Role enum of this namespace.
// The q/k norms (streamline::kRoleQNormW on) are CPU-only: the C API numbers the roles before them.
constexpr int kTrainRoles = streamline::kCudaTrainRoles;
// Every role a TrainStep can hold: the C API's 17 plus Qwen3's q/k norms (kRoleQNormW, kRoleKNormW), which a layer
// replacement gets through set_qk_norm(), and Gemma's post-sublayer norms (kRolePostAttnNormW, kRolePostMlpNormW)
// through set_post_norm(), so that the create call keeps its role count.
constexpr int kAllTrainRoles = streamline::kCudaHeldRoles;
// role_name / role_shape of replacement.h: streamline_cuda.so does not link the CPU core, so they are restated here
// (the harness checks they agree).
const char* train_role_name(int role);
void train_role_shape(const ReplacementSpec& s, int role, size_t* rows, size_t* cols);

class TrainStep {
 public:
  // spec: B is the largest micro-batch a step may take (buffers are sized for it); grad_scale is the default for
  // step(). params[kTrainRoles]: host f32 arrays in the shapes of role_shape() (nullptr = absent; q/k/v/o weights for a
  // layer and up/down (+ gate when gated) weights are required). inv_freq[Dh/2] (host) for a layer with RoPE.
  // use_cublaslt = false runs every GEMM on the fallback kernel (tests).
  TrainStep(ReplacementKind kind, const ReplacementSpec& spec, const std::array<const float*, kTrainRoles>& params,
            const float* inv_freq, bool use_cublaslt = true);
  ~TrainStep();
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  // One micro-batch from host memory: x, target [batch*T, D] f32; positions [batch*T] (layer with RoPE; may be
  // nullptr otherwise); key_mask [batch*T] (nullptr = all real). Gradients += grad_scale * dloss/dparam; returns the
  // loss (mean over real tokens' elements; 0 and no gradient when no token is real). batch <= spec.B. Synchronises.
  double step(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask, size_t batch,
              float grad_scale);
  // The same on device pointers, asynchronous on stream(): the loss lands in loss_device(); the caller guarantees
  // at least one real token (the benchmark).
  void enqueue_step(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask,
                    size_t batch, float grad_scale);
  const double* loss_device() const { return loss_; }

  // Prefetch: step() split so that the next micro-batch's upload overlaps this one's compute. stage() copies a
  // micro-batch (arguments as in step()) into an idle input slot (two: x_/target_/pos_/mask_ and a second set
  // allocated at the first stage) on copy_, through the pinned staging halves, and returns once the host arrays may be
  // reused; the GPU-side copy may still be running. step_staged() runs step() on the oldest staged slot, its compute
  // stream first waiting for that slot's copy. Bitwise step()'s result: the same kernels on the same bytes.
  //
  // Threads: stage() may run on one thread while step_staged() runs on another (nothing else may overlap either).
  // Under mu_: slot states (in_[i].state/seq), next_seq_, allocs_ and bytes_ (stage allocates lazily). Owned by the
  // staging side (stage only): copy_, pinned_, staging_free_, next_half_, and the buffers and fields of a slot while
  // it is kStaging. Owned by the compute side (everything else in this class, stream_ included) and the buffers of a
  // slot while it is kInUse. A slot is restaged only after its consumed event (recorded on stream_ after the step that
  // read it) has completed on the GPU, so a later stage cannot overwrite inputs a kernel still reads.
  // Throws on misuse: a third batch while both slots are taken; step_staged with nothing staged.
  void stage(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask, size_t batch);
  // stage() from a bf16 pair cache: x_rows[b] / target_rows[b] point at sequence b's [T, D] bf16 states (one pointer
  // per sequence, so a batch of scattered cache blocks needs no gathering copy). They cross the bus as bf16 (half of
  // stage()'s bytes, and the host widens nothing) and are widened on the copy stream; bf16 -> f32 is exact, so
  // step_staged() is bitwise stage()'s on the widened values.
  void stage_bf16(const uint16_t* const* x_rows, const uint16_t* const* target_rows, const int32_t* positions,
                  const uint8_t* key_mask, size_t batch);
  double step_staged(float grad_scale);
  // Training pairs kept on the GPU, so that every epoch after the upload stages without host traffic. keep_pairs
  // reserves bf16 storage for `blocks` blocks of [T, D] states (x, and the target when `targets`) only when that, plus
  // what the trainer still allocates lazily (the second input slot), fits in max_fraction of the free device memory;
  // false (nothing allocated) otherwise. put_pair copies one block in (host bf16; target nullptr without targets).
  // stage_kept / stage_lm_kept stage a batch of put blocks by index, device to device, widened on the copy stream:
  // step_staged / step_lm_staged then give stage_bf16's results on those blocks. Call keep_pairs and put_pair
  // between steps (not while a stage or staged step runs); kept blocks are read-only to the stages.
  bool keep_pairs(size_t blocks, bool targets, double max_fraction);
  void put_pair(size_t block, const uint16_t* x, const uint16_t* target);
  void stage_kept(const int64_t* blocks, const int32_t* positions, const uint8_t* key_mask, size_t batch);
  void stage_lm_kept(const int64_t* blocks, const int32_t* targets, const int32_t* positions, const uint8_t* key_mask,
                     size_t batch);
  size_t kept_blocks() const { return kept_n_; }
  // Page-locked host bytes held (the staging halves; 0 until the first stage()).
  size_t pinned_bytes() const;
  // Bytes per staging half (default kStageChunk); only before the first stage(). Tests set a small odd size so that
  // small batches cross many chunk boundaries.
  void set_stage_chunk(size_t bytes);
  // Bytes per pinned staging half: bounded so prefetching costs little host memory whatever the batch; large enough
  // that each DMA is long against its launch (16 MiB ~ 0.3 ms at PCIe 5 rates).
  static constexpr size_t kStageChunk = size_t(16) << 20;

  // Validation (streamline::replacement_loss per sequence): the forward and loss of step() on the current weights, no
  // backward: gradients, master weights and moments are untouched, so it may run between micro-batches.
  // losses[batch] (host): sequence b's mean over its real tokens' elements (0 when it has none). Synchronises.
  void eval(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask, size_t batch,
            double* losses);

  // The `lm` objective (replacement_lm.cu; streamline::lm_loss_step / lm_loss_eval on the GPU). set_lm_tail: the
  // frozen layers after the window (layers[k][kRoleCount] in the decoder layer's role order, any float dtype; this
  // step's spec, pre-norm, no gate bias) and the head (norm_w / norm_b: the final norm, data == nullptr for none;
  // lm_head [vocab, D]), copied to the GPU (bf16 matrices, f32 vectors) together with one hidden-state buffer per
  // frozen layer. Replaces an earlier tail only once the new one is complete (a failure leaves the old one).
  void set_lm_tail(const std::vector<const HostTensor*>& layers, const HostTensor& norm_w, const HostTensor& norm_b,
                   const HostTensor& lm_head, size_t vocab);
  bool has_lm_tail() const { return tail_ != nullptr; }
  // Qwen3's per-head q/k norms of the frozen tail layers (after set_lm_tail, which drops earlier ones): norms[k] = layer
  // k's {q_norm, k_norm} ([Dh] each, any float dtype, kept f32; both or neither, data nullptr = none); norms.size() must
  // be the tail's layer count. Frozen: activation gradients flow through them, they get none. Throws CudaError.
  void set_lm_tail_qk_norm(const std::vector<std::pair<HostTensor, HostTensor>>& norms);
  // step() with the next-token loss: targets[batch*T] host (-1 = none, else < vocab). Forward R -> frozen layers (each
  // one's input kept) -> head loss; backward through the frozen layers in reverse, each recomputing its forward from
  // its input first (the last one's activations are still there), then R's forward again and its backward with
  // gradients. Returns the mean NLL over rows with a target (0, no gradient, when none has one). Synchronises.
  double step_lm(const float* x, const int32_t* targets, const int32_t* positions, const uint8_t* key_mask,
                 size_t batch, float grad_scale);
  // Validation: losses[b] = sequence b's mean NLL over its rows with a target (0 when none); nothing else changes.
  void eval_lm(const float* x, const int32_t* targets, const int32_t* positions, const uint8_t* key_mask, size_t batch,
               double* losses);
  // Prefetch for the lm loss: stage() and step_staged() with token targets (checked at stage_lm) instead of hidden-state
  // targets; the same two slots, threads and events. A staged step takes the oldest staged batch and refuses (leaving
  // it staged) one staged for the other loss. Bitwise step_lm's results.
  void stage_lm(const float* x, const int32_t* targets, const int32_t* positions, const uint8_t* key_mask,
                size_t batch);
  // stage_lm() with x from a bf16 pair cache, one pointer per sequence (see stage_bf16()).
  void stage_lm_bf16(const uint16_t* const* x_rows, const int32_t* targets, const int32_t* positions,
                     const uint8_t* key_mask, size_t batch);
  double step_lm_staged(float grad_scale);
  // Tests: rows per logits chunk of the tail's head (see LmHead::set_chunk_rows).
  void set_lm_chunk_rows(size_t rows);
  // Sliding attention windows (keys per query, 0 = full causal; query i sees keys j with i - j < window): the
  // replacement's (must be 0 for an mlp replacement; spec.window until set here) and one per frozen tail layer in
  // model order (Qwen2 mixes full and sliding layers): tail_windows.size() must equal the tail's layer count (0
  // without a tail). set_lm_tail resets the tail's windows to 0 and keeps the replacement's. Applies to every later
  // step, eval and staged step. Throws CudaError on a mismatch (nothing changed).
  void set_windows(size_t window, const std::vector<size_t>& tail_windows);
  size_t window() const { return window_; }

  // clip_grad_norm_(max_norm) (max_norm <= 0: no clipping) and one AdamW step on every parameter, then gradients are
  // zeroed. Returns the norm before clipping. When it is not finite nothing is updated and the gradients are kept
  // (the CPU trainer stops there with E_NUMERIC). Synchronises.
  double apply(const AdamWOptions& opt, double max_norm);
  // apply() without the finiteness check and the host round trip (benchmark).
  void enqueue_apply(const AdamWOptions& opt, double max_norm);
  void zero_grad();
  // Qwen3's per-head q/k RMSNorm as two more trainable parameters of a layer replacement (host f32 [Dh] each, both
  // required, RMSNorm layers only): forward normalises each q and k head after the bias and before RoPE, backward
  // adds their gradients (summed over the M·H / M·Hk head rows), clipping and AdamW include them. Call before the
  // first step; calling again overwrites them and zeroes their gradients and moments. Throws CudaError on misuse.
  void set_qk_norm(const float* q_norm, const float* k_norm);
  bool has_qk_norm() const { return numel_[kRoleQNormW] > 0; }
  // Gemma's post-sublayer ("sandwich") norms as trainable parameters (host f32 [D], weight only, the spec's norm kind
  // and eps): a layer replacement takes both, an mlp replacement post_mlp_norm only (post_attn_norm nullptr). Forward:
  // the attention output (+ o.bias) and the MLP output (+ down.bias) are normed before their residual adds, their
  // inputs kept; backward: the norm's backward of each sub-block output, dw summed over rows. Clipping and AdamW
  // include them. Call before the first step; calling again overwrites them and zeroes their gradients and moments.
  void set_post_norm(const float* post_attn_norm, const float* post_mlp_norm);
  bool has_post_norm() const { return numel_[kRolePostMlpNormW] > 0; }
  // The lm tail's frozen layers' post norms (after set_lm_tail, which drops earlier ones): norms[k] = layer k's
  // {post_attn_norm, post_mlp_norm} ([D] each, any float dtype, kept f32; both or neither); norms.size() must be the
  // tail's layer count. Activation gradients flow through them; they get none. Throws CudaError.
  void set_lm_tail_post_norm(const std::vector<std::pair<HostTensor, HostTensor>>& norms);
  // Per-layer RoPE of the lm tail's frozen layers (Gemma 3: sliding layers rotate with rope_local_base_freq, full ones
  // with rope_theta and its scaling), after set_lm_tail (which resets every layer to the trainer's): inv_freqs
  // [n_layers * rot/2] row-major (host f32, rot = rot() at the call), attention_scalings [n_layers]. A layer whose row
  // and scaling equal the trainer's, bit for bit, keeps the trainer's table; the others get one cos/sin table per
  // distinct (row, scaling), [M, rot/2] f32 each, built by each forward from the step's positions as the trainer's is.
  // n_layers must be the tail's layer count; needs a trainer created with RoPE. Replaces an earlier call's. Throws
  // CudaError (nothing changed) on misuse or when the tables cannot be allocated.
  void set_lm_tail_rope(size_t n_layers, const float* inv_freqs, const float* attention_scalings);
  // Distinct ropes of the tail besides the trainer's (tests: the dedupe).
  size_t lm_tail_rope_tables() const { return tail_ ? tail_->ropes.size() : 0; }
  // Partial rotary embeddings (Phi-4-mini): RoPE on the leading rot dims of each q/k head (even, 0 < rot <= Dh; the
  // rest pass unrotated), with host inv_freq[rot/2] (copied), in the replacement and the lm tail's frozen layers. The
  // C API's spec has no such field (its layout is fixed), hence a call; spec.rotary does the same for C++ callers.
  // Call between steps (before the first one); refused once set_lm_tail_rope has run on the current tail (its tables
  // and its comparison with the trainer's rope were made for the width and frequencies of then). Throws CudaError on
  // misuse.
  void set_rotary_dim(size_t rot, const float* inv_freq);
  size_t rot() const { return s_.rotary ? s_.rotary : s_.Dh; }
  bool has(int role) const { return role >= 0 && role < kAllTrainRoles && numel_[role] > 0; }
  size_t numel(int role) const { return numel_[role]; }
  void get_param(int role, float* host) const;  // f32 master weights (synchronises)
  void get_grad(int role, float* host) const;   // accumulated gradient (synchronises)
  // A role's master weights and AdamW moments, for checkpoints: get_state copies them out (any of the three may be
  // nullptr), set_state overwrites them and refreshes the bf16 GEMM copies so the next step sees the new weights.
  // Gradients are not part of the state: a checkpoint is taken between optimiser steps, where they are zero.
  void get_state(int role, float* param, float* m, float* v) const;
  void set_state(int role, const float* param, const float* m, const float* v);
  cudaStream_t stream() const { return stream_; }
  bool uses_cublaslt() const { return gemm_.uses_cublaslt(); }
  size_t device_bytes() const {
    std::lock_guard<std::mutex> lk(mu_);
    return bytes_;
  }

 private:
  // The upload shared by set_lm_tail_qk_norm and set_lm_tail_post_norm (replacement_lm.cu).
  void upload_tail_norm_pairs(const std::vector<std::pair<HostTensor, HostTensor>>& norms, size_t width,
                              const char* name_a, const char* name_b, int role_a, int role_b);
  void* alloc(size_t bytes);
  void release();
  void refresh_bf16();
  struct InputSlot {
    enum State { kFree, kStaging, kStaged, kInUse };
    float *x = nullptr, *target = nullptr;
    bf16 *x16 = nullptr, *target16 = nullptr;  // bf16 staging landing zones, allocated at a slot's first stage_bf16
    int32_t *pos = nullptr, *tg = nullptr;  // tg: the lm loss's token targets
    uint8_t* mask = nullptr;
    cudaEvent_t copied = nullptr, consumed = nullptr;
    State state = kFree;
    uint64_t seq = 0;  // staging order: step_staged takes the oldest
    size_t batch = 0;
    bool has_pos = false, has_mask = false, empty = false;  // empty: no real token / no target (no copy, no compute)
    bool lm = false;   // staged by stage_lm (token targets in tg)
    size_t count = 0;  // lm: rows with a target
  };
  // Takes a free slot for `want` (kStaging or kInUse), allocating the second slot's buffers (and, for staging, the
  // pinned halves and copy_) on first need; throws when both are taken. Caller holds mu_.
  InputSlot& take_slot(InputSlot::State want);
  // step/eval with host inputs: their argument checks, then a free slot taken (the caller frees it).
  InputSlot& take_direct_slot(size_t batch, const int32_t* positions);
  void free_slot(InputSlot& sl);
  // Host -> pinned half (CPU memcpy) -> device on copy_, chunk by chunk, alternating halves so the memcpy of one chunk
  // overlaps the DMA of the previous one.
  void stage_copy(void* dst, const void* src, size_t bytes);
  // Copies one micro-batch into a slot (on stream_, pageable); false (nothing copied) when the mask has no real token.
  bool upload_batch(InputSlot& sl, const float* x, const float* target, const int32_t* positions,
                    const uint8_t* key_mask, size_t batch);
  // One layer's weights as forward() and backward() read them: f32 vectors (norms, biases) by role and the bf16 GEMM
  // matrices. The trained replacement's (own_weights(): views of the master array and its bf16 copies) or a frozen
  // tail layer's.
  struct LayerDev {
    std::array<const float*, kAllTrainRoles> vec{};  // q/k and post norms among them (nullptr = none)
    const bf16 *wqkv = nullptr, *wo = nullptr, *wgate = nullptr, *wup = nullptr, *wdown = nullptr;
    size_t window = 0;  // the layer's sliding attention window (0 = none)
    int rope = -1;      // the layer's RoPE: -1 = the trainer's (inv_freq_, cos_, sin_), else tail_->ropes[rope]
  };
  LayerDev own_weights() const;
  // A RoPE as forward() uses it: device inverse frequencies [rot/2] and attention scaling, and the cos/sin tables
  // [M, rot/2] that each forward() rebuilds from the step's positions and the backward() after it reads. Each layer
  // backward runs right after its own forward (or its recomputation), but a table of its own per distinct rope keeps
  // that correct whatever runs in between.
  struct RopeDev {
    const float* inv_freq = nullptr;
    float scaling = 1.f;
    float *cos = nullptr, *sin = nullptr;
  };
  RopeDev rope_of(const LayerDev& w) const;
  // The activation buffers of a layer (attention, residual, RoPE tables): at construction for a layer replacement,
  // at set_lm_tail for an mlp one whose tail has layers.
  void alloc_layer_buffers();
  // out = block(x) (kind: mlp block or decoder layer), saving what backward() reads.
  void forward(const LayerDev& w, ReplacementKind kind, const float* x, const int32_t* positions, const uint8_t* mask,
               size_t B, float* out);
  // Upstream gradient in dy_. trainable: gradients += into grads_; otherwise (a frozen layer) no parameter gradient
  // and dL/dx lands in dh_.
  void backward(const LayerDev& w, ReplacementKind kind, bool trainable, const float* x, const uint8_t* mask, size_t B);
  void mlp_backward(const LayerDev& w, bool trainable, const float* dy, const float* x_in, float* dx_accum, size_t M);
  // The lm paths' host checks (a tail, x given, positions where RoPE needs them, targets < vocab); returns the rows
  // with a target.
  size_t lm_check(bool has_x, const int32_t* targets, const int32_t* positions, size_t batch) const;
  // Copies an lm micro-batch into a taken slot (on stream_, pageable).
  void lm_upload(InputSlot& sl, const float* x, const int32_t* targets, const int32_t* positions,
                 const uint8_t* key_mask, size_t batch);
  // R and the tail forward on a slot's device inputs (pos/mask: the slot's buffers or nullptr).
  void lm_forward(const InputSlot& sl, const int32_t* pos, const uint8_t* mask, size_t batch);
  // step_lm's device part on a slot (count rows with a target, > 0): forward, head, backward; the NLL sum lands in
  // tail_->seq[0]. Asynchronous on stream_.
  void enqueue_step_lm(const InputSlot& sl, const int32_t* pos, const uint8_t* mask, size_t batch, size_t count,
                       float grad_scale);
  // A staged batch's hidden states as the host holds them: one f32 array [batch * T, D], or one bf16 pointer per
  // sequence (stage_bf16).
  struct HostStates {
    const float* f32 = nullptr;
    const uint16_t* const* bf16_rows = nullptr;
    const int64_t* kept = nullptr;   // or block indices into kept_base (keep_pairs)
    const bf16* kept_base = nullptr;
  };
  // stage_kept's checks: every index names a block put_pair filled.
  void check_kept(const int64_t* blocks, size_t batch, const char* fn) const;
  // stage(), stage_bf16(), stage_lm() and stage_lm_bf16(): one staging path (target states for mse, tg for lm).
  void stage_any(HostStates x, HostStates target, const int32_t* tg, const int32_t* positions, const uint8_t* key_mask,
                 size_t batch, bool lm, size_t count);
  // One state array into a slot buffer on copy_: f32 as it is, bf16 rows into landing (lazily allocated by the
  // caller) and widened into dst there.
  void stage_states(float* dst, bf16* landing, const HostStates& h, size_t batch);
  // step_staged() and step_lm_staged(): the oldest staged slot, refused (left staged) when staged for the other loss.
  InputSlot& take_staged(bool lm);
  const float* p(int role) const { return numel_[role] ? params_ + off_[role] : nullptr; }
  float* g(int role) const { return numel_[role] ? grads_ + off_[role] : nullptr; }

  ReplacementKind kind_;
  ReplacementSpec s_;
  size_t window_ = 0;  // the replacement layer's sliding attention window (set_windows)
  Gemm gemm_;
  cudaStream_t stream_ = nullptr;
  std::vector<std::pair<void*, size_t>> allocs_;
  size_t bytes_ = 0;
  // f32 master state: one flat array each, every role at the same offset in all four (groups 256-byte aligned;
  // q/k/v weights contiguous so one dW GEMM fills them); padding stays zero through AdamW.
  size_t total_ = 0;
  std::array<size_t, kAllTrainRoles> off_{}, numel_{};
  float *params_ = nullptr, *grads_ = nullptr, *m_ = nullptr, *v_ = nullptr;
  // bf16 GEMM copies
  bf16 *wqkv_ = nullptr, *wo_ = nullptr, *wgate_ = nullptr, *wup_ = nullptr, *wdown_ = nullptr;
  // inputs
  float *x_ = nullptr, *target_ = nullptr, *inv_freq_ = nullptr, *cos_ = nullptr, *sin_ = nullptr;
  int32_t* pos_ = nullptr;
  uint8_t* mask_ = nullptr;
  // saved activations
  bf16 *a_bf_ = nullptr, *qkv_bf_ = nullptr, *attn_bf_ = nullptr, *n2_bf_ = nullptr, *mid_bf_ = nullptr;
  float *q_ = nullptr, *k_ = nullptr, *v_act_ = nullptr, *attn_ = nullptr, *lse_ = nullptr, *h1_ = nullptr;
  float *gate_ = nullptr, *up_ = nullptr;
  // scratch
  float *qkv_f_ = nullptr, *t_ = nullptr, *y_ = nullptr, *dy_ = nullptr, *dh_ = nullptr, *dmid_ = nullptr;
  float *dup_ = nullptr, *dn_ = nullptr, *dattn_ = nullptr;  // dup_: only with an up bias to train
  // q/k norms: the pre-norm q | k values (bias added, f32, [M, Q] then [M, KV]) the norm backward reads, and its dx
  float *qk_pre_ = nullptr, *dqk_pre_ = nullptr;
  void alloc_qk_buffers();
  // post norms: the sub-block outputs before their norms (o + o.bias, the MLP output + down.bias; f32 [M, D] each),
  // and the gradient reaching them
  float *opre_ = nullptr, *mpre_ = nullptr, *dpre_ = nullptr;
  void alloc_post_buffers(bool attn);  // attn: opre_ too (a layer's post_attn_norm)
  bf16 *dy_bf_ = nullptr, *dgate_bf_ = nullptr, *dup_bf_ = nullptr, *dqkv_bf_ = nullptr;
  double *loss_ = nullptr, *sumsq_ = nullptr, *eval_loss_ = nullptr;  // eval_loss_[B]: one per sequence
  size_t Q_ = 0, KV_ = 0, Nqkv_ = 0;
  bool rope_ = false;
  bool attn_tc_ = false;  // tensor-core attention backward (no f32 copies of q/k/v and O are kept)
  std::vector<float> inv_freq_host_;  // kept for an mlp replacement's tail (its buffers come with the tail)
  bool layer_buffers_ = false;
  // The lm objective's frozen rest of the model (set_lm_tail).
  struct Tail {
    std::vector<LayerDev> layers;
    std::vector<std::pair<void*, size_t>> allocs;  // weights and buffers, freed with the tail
    size_t bytes = 0;
    std::vector<float*> h;  // h[k]: frozen layer k's output (layer k+1's input; the last one the head's)
    std::unique_ptr<LmHead> head;
    double *nll = nullptr, *seq = nullptr;  // nll [B*T], per-sequence sums [B]
    // set_lm_tail_rope: one RopeDev per distinct rope other than the trainer's (layers[k].rope indexes it), and
    // their device buffers (replaced as a whole by a later call)
    std::vector<RopeDev> ropes;
    std::vector<std::pair<void*, size_t>> rope_allocs;
    bool rope_set = false;  // set_lm_tail_rope was called on this tail (set_rotary_dim refuses then)
    ~Tail();
  };
  std::unique_ptr<Tail> tail_;
  // prefetch (see stage())
  mutable std::mutex mu_;
  InputSlot in_[2];
  uint64_t next_seq_ = 0;
  cudaStream_t copy_ = nullptr;
  void* pinned_[2] = {nullptr, nullptr};
  cudaEvent_t staging_free_[2] = {nullptr, nullptr};
  int next_half_ = 0;
  size_t stage_chunk_ = kStageChunk;
  // kept pairs (keep_pairs): [kept_n_, T, D] bf16 each; kept_target_ null without targets
  bf16 *kept_x_ = nullptr, *kept_target_ = nullptr;
  size_t kept_n_ = 0;
  std::vector<bool> kept_put_;
};

}  // namespace cuda
}  // namespace streamline
