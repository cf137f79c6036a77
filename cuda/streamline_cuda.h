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
int streamline_cuda_set_inputs(streamline_cuda_ctx* ctx, const int32_t* host_positions, const uint8_t* host_mask,
                               const float* host_inv_freq, float attention_scaling);
int streamline_cuda_upload_hidden(streamline_cuda_ctx* ctx, const float* host_h);
int streamline_cuda_download_hidden(streamline_cuda_ctx* ctx, float* host_h);
int streamline_cuda_upload_layer(streamline_cuda_ctx* ctx, int slot, const streamline_cuda_weight* roles);
int streamline_cuda_run_layer(streamline_cuda_ctx* ctx, int slot);
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

#ifdef __cplusplus
}
#endif
#endif
