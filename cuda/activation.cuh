// Activations on the GPU: SiLU, ReLU, GELU (erf) and GELU (tanh), plain and gated (SwiGLU), with the CPU contract
// signatures plus a stream, and the row forms the decoder layer uses on bf16 GEMM outputs.
#pragma once
#include "common.cuh"
#include "streamline/ops.h"

namespace streamline {
namespace cuda {

void activation_forward(float* y, const float* x, size_t n, Activation act, cudaStream_t s);
void gated_forward(float* y, const float* gate, const float* up, size_t n, Activation act, cudaStream_t s);
// y = bf16(act(gate) · up), or bf16(act(up)) when gate is nullptr: gated_forward / activation_forward and a cast in
// one pass (bitwise the same), for the training step's down GEMM input.
void mlp_hidden_bf16(bf16* y, const float* gate, const float* up, size_t n, Activation act, cudaStream_t s);

// gu[M, 2F] bf16 (gate in columns [0, F), up in [F, 2F)) -> y[M, F] = act(gate + gate_bias) * (up + up_bias).
void gated_rows_bf16(bf16* y, const bf16* gu, const float* gate_bias, const float* up_bias, size_t M, size_t F,
                     Activation act, cudaStream_t s);
// In place on x[M, F] bf16: x = act(x + bias) (bias may be nullptr). OPT's fc1.
void activation_rows_bf16(bf16* x, const float* bias, size_t M, size_t F, Activation act, cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
