// cuBLASLt loaded at run time with dlopen: neither the headers nor the library exist on the build machines (CI has
// nvcc only), so the few types, enum values and entry points used are declared here from the documented ABI.
//
// Where each value comes from (checked against copies of NVIDIA's headers in public repositories, 2026-11-28):
// - cublasLt.h as shipped in ggerganov/llama.cpp include/cuda/cublasLt.h: CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
//   _SCALE_TYPE = 1, _POINTER_MODE = 2, _TRANSA = 3, _TRANSB = 4, _EPILOGUE = 7, _BIAS_POINTER = 8;
//   CUBLASLT_MATRIX_LAYOUT_TYPE = 0 ... _LD = 4; cublasLtMatmulAlgo_t = struct { uint64_t data[8]; };
//   the prototypes of cublasLtCreate/Destroy, cublasLtMatmulDescCreate(desc*, cublasComputeType_t, cudaDataType_t),
//   cublasLtMatmulDescSetAttribute(desc, attr, const void*, size_t), cublasLtMatrixLayoutCreate(layout*,
//   cudaDataType, uint64_t rows, uint64_t cols, int64_t ld), cublasLtMatmul(handle, desc, alpha, A, Adesc, B, Bdesc,
//   beta, C, Cdesc, D, Ddesc, algo*, workspace, workspaceSize, stream), cublasLtGetVersion() -> size_t.
// - cublasLt.h copies (same header, newer releases) for CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,
//   CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1 (uint64_t value) and cublasLtMatmulHeuristicResult_t =
//   { cublasLtMatmulAlgo_t algo; size_t workspaceSize; cublasStatus_t state; float wavesCount; int reserved[4]; },
//   and cublasLtMatmulAlgoGetHeuristic(handle, desc, A, B, C, D, pref, int requested, result[], int* returned).
// - cublas_api.h (ggerganov/llama.cpp include/cuda/cublas_api.h): CUBLAS_COMPUTE_32F = 68, CUBLAS_OP_N = 0,
//   CUBLAS_OP_T = 1, CUBLAS_STATUS_SUCCESS = 0.
// - library_types.h, which ships with the CUDA runtime headers (checked in /usr/local/cuda/include here):
//   CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 (we include it rather than restating it).
#pragma once
#include <cuda_runtime.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace streamline {
namespace cuda {
namespace lt {

using Status = int;  // cublasStatus_t
constexpr Status kStatusSuccess = 0;
using ComputeType = int;  // cublasComputeType_t
constexpr ComputeType kCompute32F = 68;
constexpr int32_t kOpN = 0, kOpT = 1;  // cublasOperation_t

// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3;
constexpr int kDescTransB = 4;
// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;

struct Context;  // opaque cublasLtContext
using Handle = Context*;
using MatmulDesc = void*;
using MatrixLayout = void*;
using Preference = void*;

struct MatmulAlgo {
  uint64_t data[8];
};
struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(HeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");

struct Api {
  Status (*create)(Handle*);
  Status (*destroy)(Handle);
  Status (*matmul_desc_create)(MatmulDesc*, ComputeType, cudaDataType_t);
  Status (*matmul_desc_destroy)(MatmulDesc);
  Status (*matmul_desc_set_attribute)(MatmulDesc, int, const void*, size_t);
  Status (*matrix_layout_create)(MatrixLayout*, cudaDataType_t, uint64_t, uint64_t, int64_t);
  Status (*matrix_layout_destroy)(MatrixLayout);
  Status (*preference_create)(Preference*);
  Status (*preference_destroy)(Preference);
  Status (*preference_set_attribute)(Preference, int, const void*, size_t);
  Status (*algo_get_heuristic)(Handle, MatmulDesc, MatrixLayout, MatrixLayout, MatrixLayout, MatrixLayout, Preference,
                               int, HeuristicResult*, int*);
  Status (*matmul)(Handle, MatmulDesc, const void*, const void*, MatrixLayout, const void*, MatrixLayout, const void*,
                   const void*, MatrixLayout, void*, MatrixLayout, const MatmulAlgo*, void*, size_t, cudaStream_t);
  size_t (*get_version)();
  std::string path;  // the library that was opened
};

// The loaded API, or nullptr when no usable libcublasLt was found (reason() says why). Tries $STREAMLINE_CUBLASLT
// (a full path) first, then libcublasLt.so.13, then libcublasLt.so.12. Thread-safe; loads once.
const Api* api();
const std::string& reason();

}  // namespace lt
}  // namespace cuda
}  // namespace streamline
