/* The C API of streamline_cuda.so (plain C, no CUDA headers needed): what the addon resolves with cuda_symbol() and
 * any other host program may dlopen. Every int-returning function returns 0 on success and -1 on failure, after which
 * streamline_cuda_last_error() (per thread) says why. Pointers named host_* are host memory.
 *
 * A context holds one batch of B x T tokens on the GPU: the hidden state, two weight slots (upload layer k+1 into one
 * while layer k runs from the other) and saved boundary states for scoring. Typical use:
 *   create(spec) -> set_inputs(positions, mask, inv_freq) -> upload_hidden(h0) -> save_state(0)
 *   upload_layer(0, L0); for k: run_layer(k % 2); upload_layer((k + 1) % 2, L(k+1)); save_state(k + 1)
 *   cosine_states(i, j) for the pairs wanted -> destroy. */
#ifndef STREAMLINE_CUDA_H
#define STREAMLINE_CUDA_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layer description. norm: 0 RMSNorm, 1 LayerNorm. activation: 0 SiLU, 1 ReLU, 2 GELU (erf), 3 GELU (tanh).
 * rot_dim: rotated dims per head (0 = head_dim). attn_scale: 0 = 1/sqrt(head_dim). mlp_only: the `mlp` replacement
 * block x + MLP(norm(x)). use_cublaslt: 1 = GEMMs through cuBLASLt (fails when it cannot be loaded), 0 = fallback. */
typedef struct streamline_cuda_layer_spec {
  int64_t batch, seq_len, hidden, heads, kv_heads, head_dim, intermediate, rot_dim;
  int32_t norm, activation, gated, pre_norm, use_rope, mlp_only, use_cublaslt;
  float norm_eps, attn_scale;
} streamline_cuda_layer_spec;

/* One layer weight in host memory (e.g. a memory-mapped safetensors file); data = NULL when absent.
 * dtype: 0 f32, 1 f16, 2 bf16 (streamline::DType). */
typedef struct streamline_cuda_weight {
  const void* data;
  int32_t dtype;
  int64_t numel;
} streamline_cuda_weight;

/* Layer roles, the order of the roles array (the role table of native/src/model/decoder_layer.cpp). */
enum {
  STREAMLINE_CUDA_ATTN_NORM_W, STREAMLINE_CUDA_ATTN_NORM_B, STREAMLINE_CUDA_Q_W, STREAMLINE_CUDA_Q_B,
  STREAMLINE_CUDA_K_W, STREAMLINE_CUDA_K_B, STREAMLINE_CUDA_V_W, STREAMLINE_CUDA_V_B, STREAMLINE_CUDA_O_W,
  STREAMLINE_CUDA_O_B, STREAMLINE_CUDA_MLP_NORM_W, STREAMLINE_CUDA_MLP_NORM_B, STREAMLINE_CUDA_GATE_W,
  STREAMLINE_CUDA_GATE_B, STREAMLINE_CUDA_UP_W, STREAMLINE_CUDA_UP_B, STREAMLINE_CUDA_DOWN_W, STREAMLINE_CUDA_DOWN_B,
  STREAMLINE_CUDA_ROLES
};

/* Accumulated cosine of one pair of boundary states (the fields of streamline::CosineSum). */
typedef struct streamline_cuda_cosine {
  double sum;
  uint64_t count, zeros;
} streamline_cuda_cosine;

typedef struct streamline_cuda_ctx streamline_cuda_ctx;

const char* streamline_cuda_last_error(void);
int streamline_cuda_cublaslt_available(char* reason, int reason_len);
int streamline_cuda_create(const streamline_cuda_layer_spec* spec, streamline_cuda_ctx** out);
void streamline_cuda_destroy(streamline_cuda_ctx* ctx);
/* May be called again between run_layer calls of one batch (same positions and mask) to rotate the next layers with
 * other frequencies (Gemma 3's sliding layers): it waits for the queued work, rebuilds the RoPE tables and leaves the
 * hidden state, saved states and weight slots alone. */
int streamline_cuda_set_inputs(streamline_cuda_ctx* ctx, const int32_t* host_positions, const uint8_t* host_mask,
                               const float* host_inv_freq, float attention_scaling);
int streamline_cuda_upload_hidden(streamline_cuda_ctx* ctx, const float* host_h);
int streamline_cuda_download_hidden(streamline_cuda_ctx* ctx, float* host_h);
int streamline_cuda_upload_layer(streamline_cuda_ctx* ctx, int slot, const streamline_cuda_weight* roles);
int streamline_cuda_run_layer(streamline_cuda_ctx* ctx, int slot);
/* Qwen3's per-head q/k RMSNorm for the layer last uploaded into `slot` (call after upload_layer, which clears them):
 * q_norm and k_norm [head_dim] (both required; RMSNorm layers only; eps = the spec's norm_eps). run_layer then
 * RMS-normalises each q and k head over head_dim after the q/k bias and before RoPE. Optional: libraries built before
 * it lack the symbol (the addon resolves it with dlsym and refuses such layers without it). */
int streamline_cuda_upload_layer_qk_norm(streamline_cuda_ctx* ctx, int slot, const streamline_cuda_weight* q_norm,
                                         const streamline_cuda_weight* k_norm);
/* Gemma 2/3's post-sublayer ("sandwich") norms for the layer last uploaded into `slot` (call after upload_layer,
 * which clears them): post_attn_norm and post_mlp_norm [hidden], weight only, the spec's norm kind and eps; both
 * required in a layer context, post_attn_norm NULL in an mlp-block context (mlp_only); pre-norm layers only. run_layer
 * then norms the attention output projection (+ o.bias) before its residual add and the MLP's down projection
 * (+ down.bias) before its own: h = x + pn1(o(...)), out = h + pn2(mlp(n2(h))). A refused call leaves the slot
 * without post norms. Optional: libraries built before it lack the symbol (the addon resolves it with dlsym and
 * refuses such layers without it). */
int streamline_cuda_upload_layer_post_norm(streamline_cuda_ctx* ctx, int slot,
                                           const streamline_cuda_weight* post_attn_norm,
                                           const streamline_cuda_weight* post_mlp_norm);
/* The sliding window (keys per query; 0 = full causal attention) applied by later run_layer calls. Default 0.
 * Query i then sees keys j with i - j < window (Hugging Face's sliding_window). Negative fails. Optional: libraries
 * built before it lack the symbol (the addon resolves it with dlsym). */
int streamline_cuda_set_window(streamline_cuda_ctx* ctx, int64_t window);
/* Evaluation head: final norm (weight/bias NULL or data NULL = none; the layers' norm kind and eps), OPT project_out
 * [proj_dim, D] (proj_dim 0 = none), LM head [vocab, D or proj_dim]; uploaded once. head_logprobs: host_logprobs[m] =
 * log_softmax(logits[m])[host_targets[m]] for the current hidden state (0 where the target is < 0). */
int streamline_cuda_upload_head(streamline_cuda_ctx* ctx, const streamline_cuda_weight* norm_w,
                                const streamline_cuda_weight* norm_b, const streamline_cuda_weight* project_out,
                                int64_t proj_dim, const streamline_cuda_weight* lm_head, int64_t vocab);
int streamline_cuda_head_logprobs(streamline_cuda_ctx* ctx, const int32_t* host_targets, float* host_logprobs);
int streamline_cuda_save_state(streamline_cuda_ctx* ctx, int index);
int streamline_cuda_cosine_states(streamline_cuda_ctx* ctx, int i, int j, streamline_cuda_cosine* out);
int streamline_cuda_cosine_host(const float* host_a, const float* host_b, const uint8_t* host_mask, int64_t M, int64_t D,
                                streamline_cuda_cosine* out);
int streamline_cuda_synchronize(streamline_cuda_ctx* ctx);
int streamline_cuda_memory(uint64_t* current, uint64_t* peak, int reset_peak);

/* ---- Replacement training (issue 9) ---------------------------------------------------------------------------
 * One optimiser step of an `mlp` or `layer` replacement with the semantics of the CPU replacementStep + clipGradNorm +
 * adamwStep (native/include/streamline/replacement.h, train.h): f32 master weights, gradients and Adam moments on the
 * GPU, bf16 copies of the weights for the GEMMs (f32 accumulation). Typical use, per optimiser step:
 *   for each micro-batch: train_step(x, target, positions, mask, batch, grad_scale, &loss)
 *   train_apply(&options, &grad_norm)       (clip, AdamW, gradients zeroed)
 * train_eval(validation batch, losses) for the validation loss on the GPU, and train_get_params(role) whenever the
 * weights are wanted on the host (best checkpoint, export). */

/* kind: 0 mlp, 1 layer. batch: the largest micro-batch a step may take. norm: 0 RMSNorm, 1 LayerNorm. activation as in
 * the layer spec. use_rope: rotate all head_dim dims with host_inv_freq[head_dim / 2] (in a layer replacement, and in
 * the frozen layers of an lm tail; train_set_rotary_dim narrows it to leading dims). heads / kv_heads / head_dim: required for a layer; for an mlp replacement they (and
 * use_rope, host_inv_freq) matter only to an lm tail with layers (0 = none given). attn_scale: 0 = 1/sqrt(head_dim).
 * use_cublaslt: 1 = GEMMs through cuBLASLt (fails when it cannot be loaded), 0 = fallback kernel. */
typedef struct streamline_cuda_train_spec {
  int64_t batch, seq_len, hidden, heads, kv_heads, head_dim, intermediate;
  int32_t norm, activation, gated, use_rope, use_cublaslt;
  float norm_eps, attn_scale, rope_attention_scaling;
} streamline_cuda_train_spec;

/* Replacement roles: the order of host_params (streamline::ReplacementRole; no gate bias, unlike the layer roles). */
enum {
  STREAMLINE_CUDA_TRAIN_ATTN_NORM_W, STREAMLINE_CUDA_TRAIN_ATTN_NORM_B, STREAMLINE_CUDA_TRAIN_Q_W,
  STREAMLINE_CUDA_TRAIN_Q_B, STREAMLINE_CUDA_TRAIN_K_W, STREAMLINE_CUDA_TRAIN_K_B, STREAMLINE_CUDA_TRAIN_V_W,
  STREAMLINE_CUDA_TRAIN_V_B, STREAMLINE_CUDA_TRAIN_O_W, STREAMLINE_CUDA_TRAIN_O_B, STREAMLINE_CUDA_TRAIN_MLP_NORM_W,
  STREAMLINE_CUDA_TRAIN_MLP_NORM_B, STREAMLINE_CUDA_TRAIN_GATE_W, STREAMLINE_CUDA_TRAIN_UP_W, STREAMLINE_CUDA_TRAIN_UP_B,
  STREAMLINE_CUDA_TRAIN_DOWN_W, STREAMLINE_CUDA_TRAIN_DOWN_B, STREAMLINE_CUDA_TRAIN_ROLES
};

/* Qwen3's per-head q/k norms of a layer replacement: roles after STREAMLINE_CUDA_TRAIN_ROLES (which stays 17, the length
 * of train_create's host_params), accepted by get_params / get_grads / get_state / set_state once
 * train_set_qk_norm has given them. */
#define STREAMLINE_CUDA_TRAIN_ROLE_Q_NORM 17
#define STREAMLINE_CUDA_TRAIN_ROLE_K_NORM 18
/* Gemma's post-sublayer norms of a replacement: accepted by get_params / get_grads / get_state / set_state once
 * train_set_post_norm has given them (an mlp replacement has post_mlp_norm only). */
#define STREAMLINE_CUDA_TRAIN_ROLE_POST_ATTN_NORM 19
#define STREAMLINE_CUDA_TRAIN_ROLE_POST_MLP_NORM 20

/* AdamW (torch.optim.AdamW arithmetic) and clipping. step: 1-based. max_norm <= 0: no clipping. */
typedef struct streamline_cuda_adamw {
  double lr, beta1, beta2, eps, weight_decay, max_norm;
  int64_t step;
} streamline_cuda_adamw;

typedef struct streamline_cuda_train streamline_cuda_train;

/* host_params[STREAMLINE_CUDA_TRAIN_ROLES]: f32 arrays in the role shapes (row-major [out, in]), NULL = absent; copied. */
int streamline_cuda_train_create(int32_t kind, const streamline_cuda_train_spec* spec, const float* const* host_params,
                                 const float* host_inv_freq, streamline_cuda_train** out);
void streamline_cuda_train_destroy(streamline_cuda_train* t);
/* One micro-batch: host_x, host_target [batch * seq_len, hidden]; host_positions [batch * seq_len] (needed with RoPE,
 * else may be NULL); host_mask [batch * seq_len] (1 = real token; NULL = all real). Gradients += grad_scale * dloss;
 * *loss = mean squared error over the real tokens (0, and no gradient, when none is real). */
int streamline_cuda_train_step(streamline_cuda_train* t, const float* host_x, const float* host_target,
                               const int32_t* host_positions, const uint8_t* host_mask, int64_t batch, float grad_scale,
                               double* loss);
/* Prefetch (optional, resolved with dlsym like train_eval): the same step split in two so that the upload of the next
 * micro-batch overlaps the current one's compute. train_stage copies a micro-batch (inputs as in train_step) into the
 * trainer's idle device input slot (there are two) on a separate copy stream, through a bounded pinned staging buffer,
 * and returns as soon as the host arrays may be reused (before the upload has finished on the GPU). It may run on
 * another thread while train_step_staged runs (no other call may overlap either). Fails when both slots already hold
 * batches that no step_staged has finished with. train_step_staged runs train_step's step on the oldest staged batch
 * (bitwise train_step's loss and gradients on the same inputs); fails when no batch is staged. */
int streamline_cuda_train_stage(streamline_cuda_train* t, const float* host_x, const float* host_target,
                                const int32_t* host_positions, const uint8_t* host_mask, int64_t batch);
int streamline_cuda_train_step_staged(streamline_cuda_train* t, float grad_scale, double* loss);
/* Prefetch from a bf16 pair cache (optional, resolved with dlsym): train_stage with the states as bf16 bits and one
 * pointer per sequence: host_x_rows[b] and host_target_rows[b] point at sequence b's [seq_len, hidden] bf16 rows. They
 * cross the bus as bf16 and are widened on the GPU (exact), so train_step_staged is bitwise train_stage's on the
 * widened values; no gathering copy on the host for a batch of scattered cache blocks. */
int streamline_cuda_train_stage_bf16(streamline_cuda_train* t, const uint16_t* const* host_x_rows,
                                     const uint16_t* const* host_target_rows, const int32_t* host_positions,
                                     const uint8_t* host_mask, int64_t batch);
/* Training pairs kept on the GPU (optional, dlsym): train_keep_pairs reserves bf16 storage for `blocks` blocks of
 * [seq_len, hidden] states (x, and the target when targets != 0) when that and the trainer's own later allocations fit
 * in max_fraction of the free device memory: *kept = 1, else 0 and nothing is allocated. train_put_pair copies block
 * `block` in (bf16 bits; host_target NULL without targets). train_stage_kept stages a batch of put blocks by index
 * (blocks[batch]), device to device: train_step_staged then gives train_stage_bf16's result on those blocks' rows.
 * Not while a stage or staged step is in flight. */
int streamline_cuda_train_keep_pairs(streamline_cuda_train* t, int64_t blocks, int targets, double max_fraction,
                                     int* kept);
int streamline_cuda_train_put_pair(streamline_cuda_train* t, int64_t block, const uint16_t* host_x,
                                   const uint16_t* host_target);
int streamline_cuda_train_stage_kept(streamline_cuda_train* t, const int64_t* blocks, const int32_t* host_positions,
                                     const uint8_t* host_mask, int64_t batch);
/* Validation: the loss of the current weights on `batch` sequences (inputs as in train_step), forward only: no
 * gradient, weight or moment changes, so it may run between micro-batch steps. host_losses[batch] receives each
 * sequence's mean squared error over its own real tokens (0 when it has none): replacement_loss of that sequence
 * alone, which the CPU trainer's validation averages over blocks. Optional: absent from backends built before it
 * (callers resolve it with dlsym and fall back to get_params and a CPU forward). */
int streamline_cuda_train_eval(streamline_cuda_train* t, const float* host_x, const float* host_target,
                               const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                               double* host_losses);
/* Clip, AdamW, zero the gradients. *grad_norm: the global norm before clipping; when it is not finite nothing is
 * updated and the gradients are kept (returns 0: the caller decides, as the CPU trainer stops with E_NUMERIC). */
int streamline_cuda_train_apply(streamline_cuda_train* t, const streamline_cuda_adamw* options, double* grad_norm);
/* Qwen3: adds the per-head q/k RMSNorm weights (host f32 [head_dim] each, both required, copied) to a layer
 * replacement (RMSNorm only) as two more trainable parameters: each q and k head is RMS-normalised over head_dim after
 * the bias and before RoPE (eps = norm_eps), their gradients sum over all head rows, clipping and AdamW include them.
 * Call before the first step. Optional: libraries built before it lack the symbol (the addon then trains on the CPU). */
int streamline_cuda_train_set_qk_norm(streamline_cuda_train* t, const float* host_q_norm, const float* host_k_norm);
/* Gemma 2/3: adds the post-sublayer norms (host f32 [hidden] each, copied; weight only, the spec's norm kind and eps)
 * as trainable parameters: a layer replacement takes both, an mlp replacement post_mlp_norm only (host_post_attn_norm
 * NULL). The attention output (+ o.bias) and the MLP output (+ down.bias) are normed before their residual adds;
 * clipping and AdamW include them (roles 19 / 20). Call before the first step. Optional: libraries built before it
 * lack the symbol (the addon then trains on the CPU). */
int streamline_cuda_train_set_post_norm(streamline_cuda_train* t, const float* host_post_attn_norm,
                                        const float* host_post_mlp_norm);
/* Partial rotary embeddings (Phi-4-mini's partial_rotary_factor): rotate only the leading rot_dim dims of each q/k
 * head (even, 0 < rot_dim <= head_dim; the rest pass unrotated), with host_inv_freq[rot_dim / 2] (copied; it replaces
 * train_create's head_dim / 2 entries), in a layer replacement and in the lm tail's frozen layers. The trainer must
 * have been created with use_rope. Call before the first step (and before train_set_lm_tail). Optional: libraries
 * built before it lack the symbol (the addon then trains such a model on the CPU). */
int streamline_cuda_train_set_rotary_dim(streamline_cuda_train* t, int64_t rot_dim, const float* host_inv_freq);
/* Copy a role's f32 master weights (or its accumulated gradient) to host_out[numel]; numel must match the role. */
int streamline_cuda_train_get_params(streamline_cuda_train* t, int32_t role, float* host_out, int64_t numel);
int streamline_cuda_train_get_grads(streamline_cuda_train* t, int32_t role, float* host_out, int64_t numel);
/* Checkpoint/resume: a role's f32 master weights and AdamW first/second moments (numel each; numel must match the
 * role). get_state: any of host_param, host_m, host_v may be NULL (not copied). set_state: all three required; it also
 * refreshes the bf16 weight copies, so the next train_step uses the new weights. Gradients are not state: call both
 * between train_apply and the next train_step, where they are zero. The AdamW step count is the caller's (options). */
int streamline_cuda_train_get_state(streamline_cuda_train* t, int32_t role, float* host_param, float* host_m,
                                    float* host_v, int64_t numel);
int streamline_cuda_train_set_state(streamline_cuda_train* t, int32_t role, const float* host_param,
                                    const float* host_m, const float* host_v, int64_t numel);

/* ---- The lm loss on the GPU (issue 9; optional, resolved with dlsym: backends built before it train --loss lm on
 * the CPU) ---------------------------------------------------------------------------------------------------------
 * train_set_lm_tail: the frozen rest of the model after the window, which train_step_lm and train_eval_lm run R's
 * output through: n_layers decoder layers in model order (host_layers[k * STREAMLINE_CUDA_ROLES + role], the layer
 * roles above, any float dtype; the trainer's spec; pre-norm; GATE_B must be absent), then the head: the final norm
 * (norm_w / norm_b NULL or data NULL = none; the spec's norm kind and eps) and lm_head [vocab, hidden] (the tied
 * embedding where there is no lm_head). Copied to the GPU once (matrices as bf16, vectors as f32; the host arrays may
 * be released on return); replaces an earlier tail. Fails, changing nothing, when it does not fit in GPU memory.
 * n_layers 0 is valid (the window ends at the last layer). Only R is trained: the frozen layers and the head get no
 * gradients; their activations are recomputed in the backward rather than stored (one hidden state per frozen layer
 * is kept).
 * train_step_lm: train_step with the next-token loss: host_targets[batch * seq_len] is the token id each row
 * predicts (-1 = none; >= vocab fails); *loss = mean NLL (nats) over the rows with a target, the CPU's
 * lm_loss_step; gradients += grad_scale * dloss (0, no gradient, when no row has a target). Fails without a tail.
 * train_eval_lm: validation: host_losses[b] = sequence b's mean NLL over its own rows with a target (0 when none):
 * lm_loss_eval of that sequence alone. No state changes. */
int streamline_cuda_train_set_lm_tail(streamline_cuda_train* t, int64_t n_layers, const streamline_cuda_weight* host_layers,
                                      const streamline_cuda_weight* norm_w, const streamline_cuda_weight* norm_b,
                                      const streamline_cuda_weight* lm_head, int64_t vocab);
int streamline_cuda_train_step_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                  const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                  float grad_scale, double* loss);
int streamline_cuda_train_eval_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                  const int32_t* host_positions, const uint8_t* host_mask, int64_t batch,
                                  double* host_losses);
/* Qwen3: the per-head q/k RMSNorm weights of the lm tail's frozen layers, after train_set_lm_tail (which drops earlier
 * ones): host_norms[2 * k] = layer k's q_norm, host_norms[2 * k + 1] its k_norm ([head_dim] each, any float dtype;
 * both or neither, data NULL = none); n_layers = the tail's layer count. Frozen: gradients flow through them to R.
 * Optional: libraries built before it lack the symbol (the addon then trains such a tail on the CPU). */
int streamline_cuda_train_set_lm_tail_qk_norm(streamline_cuda_train* t, int64_t n_layers,
                                              const streamline_cuda_weight* host_norms);
/* Gemma: the post-sublayer norms of the lm tail's frozen layers, after train_set_lm_tail (which drops earlier ones):
 * host_norms[2 * k] = layer k's post_attn_norm, host_norms[2 * k + 1] its post_mlp_norm ([hidden] each, any float
 * dtype; both or neither, data NULL = none); n_layers = the tail's layer count. Frozen: gradients flow through them
 * to R. Optional: libraries built before it lack the symbol (the addon then trains such a tail on the CPU). */
int streamline_cuda_train_set_lm_tail_post_norm(streamline_cuda_train* t, int64_t n_layers,
                                                const streamline_cuda_weight* host_norms);
/* Gemma 3: per-layer RoPE of the lm tail's frozen layers (its sliding layers rotate with rope_local_base_freq, its
 * full layers with rope_theta and rope_scaling), after train_set_lm_tail (which resets every frozen layer to the
 * trainer's RoPE): host_inv_freqs[n_layers * rot_dim / 2] row-major (layer k's inverse frequencies; rot_dim = head_dim,
 * or train_set_rotary_dim's), host_attention_scalings[n_layers] (each layer's cos/sin factor, the spec's
 * rope_attention_scaling for the trainer's own). A layer given the trainer's values, bit for bit, may simply repeat
 * them: it shares the trainer's cos/sin table; every other distinct (frequencies, scaling) gets one table of its own
 * ([batch * seq_len, rot_dim / 2] f32 cos and sin), rebuilt from the step's positions at each forward as the trainer's
 * is. Replaces an earlier call's. Fails, changing nothing, when n_layers differs from the tail's, without a tail, when
 * the trainer was created without use_rope, or on a non-finite value; train_set_rotary_dim fails after it (call that
 * first). Copied; the host arrays may be released on return. Optional: libraries built before it lack the symbol (the
 * addon then trains such a tail on the CPU). */
int streamline_cuda_train_set_lm_tail_rope(streamline_cuda_train* t, int64_t n_layers, const float* host_inv_freqs,
                                           const float* host_attention_scalings);
/* Training: the layer replacement's attention window (must be 0 for an mlp replacement) and the lm tail's
 * per-layer windows (n_tail = the tail's layer count, in model order; tail_windows NULL = all 0; fails when
 * n_tail differs from the tail set by train_set_lm_tail, or 0 without a tail). set_lm_tail resets the tail's
 * windows to 0; the replacement window is kept. Applies to train_step*, train_eval*, staged and kept steps.
 * Windows are keys per query (0 = full causal); negative fails. Optional (dlsym), like the lm calls. Call it
 * between steps, not while a staged step runs. */
int streamline_cuda_train_set_windows(streamline_cuda_train* t, int64_t window, int64_t n_tail,
                                      const int64_t* tail_windows);
/* Prefetch for the lm loss (optional, like train_stage): train_stage_lm copies a micro-batch (x, targets, positions,
 * mask as in train_step_lm; targets are checked here) into the idle input slot exactly as train_stage does, and
 * train_step_lm_staged runs train_step_lm on the oldest staged batch: bitwise train_step_lm's loss and gradients. The
 * two slots are shared with train_stage: a step_staged whose oldest batch was staged for the other loss fails (and
 * leaves it staged). */
int streamline_cuda_train_stage_lm(streamline_cuda_train* t, const float* host_x, const int32_t* host_targets,
                                   const int32_t* host_positions, const uint8_t* host_mask, int64_t batch);
int streamline_cuda_train_step_lm_staged(streamline_cuda_train* t, float grad_scale, double* loss);
/* train_stage_lm with x from a bf16 pair cache, one pointer per sequence (as train_stage_bf16; optional). */
int streamline_cuda_train_stage_lm_bf16(streamline_cuda_train* t, const uint16_t* const* host_x_rows,
                                        const int32_t* host_targets, const int32_t* host_positions,
                                        const uint8_t* host_mask, int64_t batch);
/* train_stage_lm from kept blocks (train_keep_pairs with or without targets; optional). */
int streamline_cuda_train_stage_lm_kept(streamline_cuda_train* t, const int64_t* blocks, const int32_t* host_targets,
                                        const int32_t* host_positions, const uint8_t* host_mask, int64_t batch);

#ifdef __cplusplus
}
#endif
#endif
