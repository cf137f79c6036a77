// cuBLASLt GEMM (row-major y = x W^T expressed column-major: y^T[N,M] = W[N,K] (as K x N, transposed) · x^T[K,M])
// and the tiled fallback kernel.
#include "cublaslt_loader.h"
#include "gemm.cuh"

namespace streamline {
namespace cuda {

namespace {
constexpr int kTM = 64, kTN = 64, kTK = 16, kThreads = 256;

// y[m, n] = sum_k x(m, k) · w(n, k) (+ bias[n]) (+ beta · y[m, n]) with x(m, k) = x[m*xsm + k*xsk] and
// w(n, k) = w[n*wsn + k*wsk]: the forward (x · W^T) and, with strides swapped, both backward products.
template <typename TX>
__global__ void gemm_tiled_kernel(void* y, int ydt, const TX* x, size_t xsm, size_t xsk, const void* w, int wdt,
                                  size_t wsn, size_t wsk, const float* bias, size_t M, size_t N, size_t K, float beta) {
  __shared__ float As[kTM][kTK + 1];
  __shared__ float Ws[kTN][kTK + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const size_t m0 = size_t(blockIdx.y) * kTM, n0 = size_t(blockIdx.x) * kTN;
  float acc[4][4] = {};
  for (size_t k0 = 0; k0 < K; k0 += kTK) {
    for (int e = tid; e < kTM * kTK; e += kThreads) {
      const int r = e / kTK, c = e % kTK;
      const size_t m = m0 + r, k = k0 + c, n = n0 + r;
      As[r][c] = (m < M && k < K) ? to_f32(x[m * xsm + k * xsk]) : 0.f;
      Ws[r][c] = (n < N && k < K) ? wload(w, wdt, n * wsn + k * wsk) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kTK; c++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) { a[i] = As[ty * 4 + i][c]; b[i] = Ws[tx * 4 + i][c]; }
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const size_t m = m0 + ty * 4 + i, n = n0 + tx * 4 + j;
      if (m >= M || n >= N) continue;
      float v = acc[i][j];
      if (bias) v += bias[n];
      if (ydt == int(DType::F32)) {
        float* yp = static_cast<float*>(y) + m * N + n;
        *yp = beta != 0.f ? v + beta * *yp : v;
      } else {
        bf16* yp = static_cast<bf16*>(y) + m * N + n;
        *yp = __float2bfloat16_rn(beta != 0.f ? v + beta * __bfloat162float(*yp) : v);
      }
    }
}

template <typename TX>
void launch_tiled(void* y, DType ydt, const TX* x, size_t xsm, size_t xsk, const void* w, DType wdt, size_t wsn,
                  size_t wsk, const float* bias, size_t M, size_t N, size_t K, float beta, cudaStream_t s) {
  if (M == 0 || N == 0) return;
  if ((M + kTM - 1) / kTM > 65535) throw CudaError("gemm fallback: M too large");
  dim3 grid(unsigned((N + kTN - 1) / kTN), unsigned((M + kTM - 1) / kTM));
  gemm_tiled_kernel<TX><<<grid, kThreads, 0, s>>>(y, int(ydt), x, xsm, xsk, w, int(wdt), wsn, wsk, bias, M, N, K, beta);
  SL_LAUNCH_CHECK();
}

void lt_check(lt::Status st, const char* what) {
  if (st != lt::kStatusSuccess) throw CudaError(std::string("cuBLASLt ") + what + " failed with status " + std::to_string(st));
}
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
// cuBLASLt's heuristic assumes 256-byte aligned operands unless told otherwise (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*,
// default 256): the backward products take the fallback kernel for anything less aligned instead of risking an
// algorithm that needs it.
bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 255u) == 0; }
}  // namespace

void gemm_fallback(void* y, DType ydt, const bf16* x, const bf16* w, const float* bias, size_t M, size_t N, size_t K,
                   float beta, cudaStream_t s) {
  launch_tiled<bf16>(y, ydt, x, K, 1, w, DType::BF16, K, 1, bias, M, N, K, beta, s);
}

// dx[m, k] = sum_n dy[m, n] · w[n, k]: rows m, columns k, reduction over n.
void gemm_fallback_dx(float* dx, const bf16* dy, const bf16* w, size_t M, size_t N, size_t K, float beta, cudaStream_t s) {
  launch_tiled<bf16>(dx, DType::F32, dy, N, 1, w, DType::BF16, 1, K, nullptr, M, K, N, beta, s);
}

// dw[n, k] += sum_m dy[m, n] · x[m, k]: rows n, columns k, reduction over the tokens m.
void gemm_fallback_dw(float* dw, const bf16* dy, const bf16* x, size_t M, size_t N, size_t K, cudaStream_t s) {
  launch_tiled<bf16>(dw, DType::F32, dy, 1, N, x, DType::BF16, 1, K, nullptr, N, K, M, 1.f, s);
}

void linear_forward(float* y, const float* x, const void* w, DType wdt, const float* bias, size_t M, size_t N, size_t K,
                    bool accumulate, cudaStream_t s) {
  launch_tiled<float>(y, DType::F32, x, K, 1, w, wdt, K, 1, bias, M, N, K, accumulate ? 1.f : 0.f, s);
}

Gemm::Gemm(bool use_cublaslt) {
  const lt::Api* a = use_cublaslt ? lt::api() : nullptr;
  if (!a) return;
  lt::Handle h = nullptr;
  lt_check(a->create(&h), "create");
  handle_ = h;
  workspace_ = device_alloc(kWorkspaceBytes);
  workspace_bytes_ = kWorkspaceBytes;
}

Gemm::~Gemm() {
  const lt::Api* a = lt::api();
  if (a) {
    for (auto& kv : plans_) {
      a->matmul_desc_destroy(kv.second.desc);
      a->matrix_layout_destroy(kv.second.a);
      a->matrix_layout_destroy(kv.second.b);
      a->matrix_layout_destroy(kv.second.c);
    }
    if (handle_) a->destroy(static_cast<lt::Handle>(handle_));
  }
  device_free(workspace_, workspace_bytes_);
}

// Every product is written column-major for cuBLASLt (a row-major [R, C] matrix is a column-major C x R one):
//   forward y[M,N] = x · W^T  ->  y^T (N x M) = op_T(W as K x N) · (x as K x M)
//   dx[M,K] = dy · W          ->  dx^T (K x M) = (W as K x N) · (dy as N x M)
//   dw[N,K] += dy^T · x       ->  dw^T (K x N) = (x as K x M) · op_T(dy as N x M)
const Gemm::Plan& Gemm::plan(Op op, DType ydt, size_t M, size_t N, size_t K) {
  auto key = std::make_tuple(int(op), int(ydt), M, N, K);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const lt::Api* a = lt::api();
  Plan p;
  lt_check(a->matmul_desc_create(&p.desc, lt::kCompute32F, CUDA_R_32F), "MatmulDescCreate");
  int32_t ta = op == kForward ? lt::kOpT : lt::kOpN, tb = op == kDw ? lt::kOpT : lt::kOpN;
  lt_check(a->matmul_desc_set_attribute(p.desc, lt::kDescTransA, &ta, sizeof ta), "set TRANSA");
  lt_check(a->matmul_desc_set_attribute(p.desc, lt::kDescTransB, &tb, sizeof tb), "set TRANSB");
  const cudaDataType_t cdt = ydt == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  if (op == kForward) {
    lt_check(a->matrix_layout_create(&p.a, CUDA_R_16BF, K, N, int64_t(K)), "layout A");
    lt_check(a->matrix_layout_create(&p.b, CUDA_R_16BF, K, M, int64_t(K)), "layout B");
    lt_check(a->matrix_layout_create(&p.c, cdt, N, M, int64_t(N)), "layout C");
  } else if (op == kDx) {
    lt_check(a->matrix_layout_create(&p.a, CUDA_R_16BF, K, N, int64_t(K)), "layout A");
    lt_check(a->matrix_layout_create(&p.b, CUDA_R_16BF, N, M, int64_t(N)), "layout B");
    lt_check(a->matrix_layout_create(&p.c, cdt, K, M, int64_t(K)), "layout C");
  } else {
    lt_check(a->matrix_layout_create(&p.a, CUDA_R_16BF, K, M, int64_t(K)), "layout A");
    lt_check(a->matrix_layout_create(&p.b, CUDA_R_16BF, N, M, int64_t(N)), "layout B");
    lt_check(a->matrix_layout_create(&p.c, cdt, K, N, int64_t(K)), "layout C");
  }
  lt::Preference pref = nullptr;
  lt_check(a->preference_create(&pref), "PreferenceCreate");
  uint64_t ws = workspace_bytes_;
  lt_check(a->preference_set_attribute(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof ws), "set workspace");
  lt::HeuristicResult r[4] = {};
  int n = 0;
  lt::Status st = a->algo_get_heuristic(static_cast<lt::Handle>(handle_), p.desc, p.a, p.b, p.c, p.c, pref, 4, r, &n);
  a->preference_destroy(pref);
  // No algorithm for this shape (e.g. leading dimensions that break 16-byte alignment on some versions):
  // this shape runs on the fallback kernel instead of failing.
  if (st != lt::kStatusSuccess || n == 0) p.fallback = true;
  for (int i = 0; i < 8; i++) p.algo[i] = r[0].algo.data[i];
  p.workspace = r[0].workspaceSize;
  return plans_.emplace(key, p).first->second;
}

void Gemm::matmul(const Plan& p, const void* a, const void* b, void* c, float beta, cudaStream_t s) {
  const float alpha = 1.f;
  lt::MatmulAlgo algo;
  for (int i = 0; i < 8; i++) algo.data[i] = p.algo[i];
  lt_check(lt::api()->matmul(static_cast<lt::Handle>(handle_), p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.c, c, p.c,
                             &algo, workspace_, workspace_bytes_, s),
           "Matmul");
}

void Gemm::run(void* y, DType ydt, const bf16* x, const bf16* w, size_t M, size_t N, size_t K, float beta,
               cudaStream_t s) {
  if (M == 0 || N == 0) return;
  if (beta != 0.f && ydt != DType::F32) throw CudaError("Gemm::run: accumulation needs an f32 output");
  // Same alignment rule as the backward products: callers pass row offsets (the head's row chunks), which can
  // leave an operand off the 256-byte alignment the heuristic assumed.
  if (!handle_ || !aligned(y) || !aligned(x) || !aligned(w)) {
    gemm_fallback(y, ydt, x, w, nullptr, M, N, K, beta, s);
    return;
  }
  const Plan& p = plan(kForward, ydt, M, N, K);
  if (p.fallback) {
    gemm_fallback(y, ydt, x, w, nullptr, M, N, K, beta, s);
    return;
  }
  matmul(p, w, x, y, beta, s);
}

void Gemm::run_dx(float* dx, const bf16* dy, const bf16* w, size_t M, size_t N, size_t K, float beta, cudaStream_t s) {
  if (M == 0 || K == 0) return;
  if (beta != 0.f && beta != 1.f) throw CudaError("Gemm::run_dx: beta must be 0 or 1");
  // N == 0: an empty sum; cuBLASLt rejects a zero inner dimension, the fallback writes beta * dx.
  const Plan* p = handle_ && N > 0 && aligned(dx) && aligned(dy) && aligned(w) ? &plan(kDx, DType::F32, M, N, K) : nullptr;
  if (!p || p->fallback) {
    gemm_fallback_dx(dx, dy, w, M, N, K, beta, s);
    return;
  }
  matmul(*p, w, dy, dx, beta, s);
}

void Gemm::run_dw(float* dw, const bf16* dy, const bf16* x, size_t M, size_t N, size_t K, cudaStream_t s) {
  if (N == 0 || K == 0 || M == 0) return;  // no tokens: nothing to add
  const Plan* p = handle_ && aligned(dw) && aligned(dy) && aligned(x) ? &plan(kDw, DType::F32, M, N, K) : nullptr;
  if (!p || p->fallback) {
    gemm_fallback_dw(dw, dy, x, M, N, K, s);
    return;
  }
  matmul(*p, x, dy, dw, 1.f, s);
}

}  // namespace cuda
}  // namespace streamline
