// Backward pass of causal grouped-query attention (see attention_forward in ops.h), FlashAttention-2 style:
// the probabilities are recomputed from q, k and the forward log-sum-exp one key block at a time, so no T×T
// matrix is ever stored. For query head h (KV head h / (H/Hk)), with P_ij = exp(scale·q_i·k_j − lse_i) on the
// visible keys (j ≤ i, key_mask[j] = 1, i − j < window when there is one) and 0 elsewhere:
//   dP_ij = dO_i·v_j,  D_i = dO_i·O_i,  dS_ij = P_ij·(dP_ij − D_i)
//   dq_i = scale·Σ_j dS_ij·k_j,  dk_j = scale·Σ_{h in group} Σ_i dS_ij·q_i,  dv_j = Σ_{h in group} Σ_i P_ij·dO_i
// Work is split by (batch, query head): a task owns dq for its head and writes dk/dv for that head alone (into
// dk/dv directly when Hk = H, else into a per-head scratch that is summed over the group in head order), so
// there are no races and the result does not depend on the thread count. dq, dk, dv are overwritten.
// Within a task, 64×64 blocks of S = Q·Kᵀ and dP = dO·Vᵀ are formed with a register-tiled micro-GEMM (AVX2+FMA,
// 6×16 tiles; a plain loop otherwise) and turned into P and dS with a vectorised exp; the products Pᵀ·dO,
// dSᵀ·Q and dS·K accumulate dv, dk and dq.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <immintrin.h>

#include "streamline/cpu_features.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

constexpr size_t kBlock = 64;  // query and key block (a multiple of the 16-wide micro-tile)

// Block primitives, one set per instruction level.
struct Kernels {
  // C[M, N] += A[M, K] · B[K, N]; row strides lda/ldb/ldc; N a multiple of 16.
  void (*gemm)(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, size_t M, size_t N,
               size_t K);
  // Row r of S (kBlock wide): P = exp(scale·S − lse[r]) where lo[r] <= j < lim[r] and kvalid[j], else 0 (written
  // over S); dS = P·(dP − Dv[r]) written over dP.
  void (*softmax_grad)(float* S, float* dP, size_t rows, const float* lse, const float* Dv, const int* lo,
                       const int* lim, const uint32_t* kvalid, float scale);
};

void gemm_generic(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, size_t M, size_t N,
                  size_t K) {
  for (size_t i = 0; i < M; i++)
    for (size_t k = 0; k < K; k++) {
      const float a = A[i * lda + k];
      const float* b = B + k * ldb;
      float* c = C + i * ldc;
      for (size_t j = 0; j < N; j++) c[j] += a * b[j];
    }
}

void softmax_grad_generic(float* S, float* dP, size_t rows, const float* lse, const float* Dv, const int* lo,
                          const int* lim, const uint32_t* kvalid, float scale) {
  for (size_t r = 0; r < rows; r++)
    for (size_t j = 0; j < kBlock; j++) {
      float* s = S + r * kBlock + j;
      float* d = dP + r * kBlock + j;
      const float p = (int(j) >= lo[r] && int(j) < lim[r] && kvalid[j]) ? std::exp(scale * *s - lse[r]) : 0.f;
      *s = p;
      *d = p * (*d - Dv[r]);
    }
}

template <int MR>
__attribute__((target("avx2,fma"), always_inline)) inline void tile_avx2(float* C, size_t ldc, const float* A,
                                                                         size_t lda, const float* B, size_t ldb,
                                                                         size_t K) {
  __m256 c0[MR], c1[MR];
  for (int r = 0; r < MR; r++) {
    c0[r] = _mm256_loadu_ps(C + r * ldc);
    c1[r] = _mm256_loadu_ps(C + r * ldc + 8);
  }
  for (size_t k = 0; k < K; k++) {
    const __m256 b0 = _mm256_loadu_ps(B + k * ldb), b1 = _mm256_loadu_ps(B + k * ldb + 8);
    for (int r = 0; r < MR; r++) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm256_storeu_ps(C + r * ldc, c0[r]);
    _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
  }
}

__attribute__((target("avx2,fma"))) void gemm_avx2(float* C, size_t ldc, const float* A, size_t lda, const float* B,
                                                   size_t ldb, size_t M, size_t N, size_t K) {
  for (size_t i0 = 0; i0 < M; i0 += 6) {
    const size_t mr = std::min<size_t>(6, M - i0);
    for (size_t j0 = 0; j0 < N; j0 += 16) {
      float* c = C + i0 * ldc + j0;
      const float* a = A + i0 * lda;
      const float* b = B + j0;
      switch (mr) {
        case 6: tile_avx2<6>(c, ldc, a, lda, b, ldb, K); break;
        case 5: tile_avx2<5>(c, ldc, a, lda, b, ldb, K); break;
        case 4: tile_avx2<4>(c, ldc, a, lda, b, ldb, K); break;
        case 3: tile_avx2<3>(c, ldc, a, lda, b, ldb, K); break;
        case 2: tile_avx2<2>(c, ldc, a, lda, b, ldb, K); break;
        default: tile_avx2<1>(c, ldc, a, lda, b, ldb, K); break;
      }
    }
  }
}

// exp on 8 floats (Cephes expf polynomial, inputs clamped to [-87.3, 88.3]; about 2 ulp).
__attribute__((target("avx2,fma"), always_inline)) inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

__attribute__((target("avx2,fma"))) void softmax_grad_avx2(float* S, float* dP, size_t rows, const float* lse,
                                                           const float* Dv, const int* lo, const int* lim,
                                                           const uint32_t* kvalid, float scale) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (size_t r = 0; r < rows; r++) {
    const __m256 vl = _mm256_set1_ps(lse[r]), vd = _mm256_set1_ps(Dv[r]);
    const __m256i vlim = _mm256_set1_epi32(lim[r]), vlo = _mm256_set1_epi32(lo[r] - 1);
    for (size_t j = 0; j < kBlock; j += 8) {
      float* s = S + r * kBlock + j;
      float* d = dP + r * kBlock + j;
      const __m256i idx = _mm256_add_epi32(step, _mm256_set1_epi32(int(j)));
      // keep where lo <= j < lim (j > lo - 1, lim > j) and the key is real; masked lanes become exactly 0 (bitwise
      // and).
      const __m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(vlim, idx), _mm256_cmpgt_epi32(idx, vlo));
      const __m256i keep = _mm256_and_si256(in, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kvalid + j)));
      const __m256 p = _mm256_and_ps(exp_avx2(_mm256_fmsub_ps(vs, _mm256_loadu_ps(s), vl)), _mm256_castsi256_ps(keep));
      _mm256_storeu_ps(s, p);
      _mm256_storeu_ps(d, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(d), vd)));
    }
  }
}

struct AttnBwd {
  float *dq, *dk, *dv;
  const float *dout, *q, *k, *v, *out, *lse;
  const uint8_t* mask;
  size_t B, T, H, Hk, Dh;
  float scale;
  size_t window;
  float *sk, *sv;  // per-head scratch [B, H, T, Dh] when H > Hk, else nullptr
};

// Per-thread working memory, reused across the tasks of a chunk.
struct Work {
  std::vector<float> Qp, dOp, Kp, Vp, dQp, KT, VT, S, dP, PT, dST, dKacc, dVacc, Dv, lse;
  std::vector<int> lo, lim;
  std::vector<uint32_t> kvalid;
};

// One (batch, query head) task on contiguous copies of its rows, padded to Dhp (a multiple of 16) with zeros.
void head_task(const AttnBwd& a, const Kernels& kern, Work& w, size_t b, size_t h) {
  const size_t T = a.T, H = a.H, Hk = a.Hk, Dh = a.Dh, nrep = H / Hk, kvh = h / nrep;
  const size_t Dhp = (Dh + 15) / 16 * 16, qs = H * Dh, ks = Hk * Dh;
  const float* Q = a.q + b * T * qs + h * Dh;
  const float* dO = a.dout + b * T * qs + h * Dh;
  const float* O = a.out + b * T * qs + h * Dh;
  const float* K = a.k + b * T * ks + kvh * Dh;
  const float* V = a.v + b * T * ks + kvh * Dh;
  const float* lse = a.lse + (b * H + h) * T;
  const uint8_t* mask = a.mask ? a.mask + b * T : nullptr;
  float* dK;
  float* dV;
  size_t dks;
  if (a.sk) {
    dK = a.sk + (b * H + h) * T * Dh, dV = a.sv + (b * H + h) * T * Dh, dks = Dh;
  } else {
    dK = a.dk + b * T * ks + kvh * Dh, dV = a.dv + b * T * ks + kvh * Dh, dks = ks;
  }
  float* dQ = a.dq + b * T * qs + h * Dh;

  const size_t TP = (T + kBlock - 1) / kBlock * kBlock;
  for (auto* v : {&w.Qp, &w.dOp, &w.Kp, &w.Vp, &w.dQp}) v->assign(TP * Dhp, 0.f);
  w.Dv.assign(TP, 0.f);
  w.lse.assign(TP, 0.f);
  size_t first_real = 0;  // queries before the first real key see nothing
  if (mask)
    while (first_real < T && !mask[first_real]) first_real++;
  for (size_t i = 0; i < T; i++) {
    double s = 0;
    for (size_t d = 0; d < Dh; d++) {
      w.Qp[i * Dhp + d] = Q[i * qs + d];
      w.dOp[i * Dhp + d] = dO[i * qs + d];
      w.Kp[i * Dhp + d] = K[i * ks + d];
      w.Vp[i * Dhp + d] = V[i * ks + d];
      s += double(dO[i * qs + d]) * O[i * qs + d];
    }
    w.Dv[i] = float(s);
    // rows that see no key (before the first real one, or a window of padding) have lse = -inf and P = 0
    w.lse[i] = i >= first_real && lse[i] != -INFINITY ? lse[i] : 0.f;
  }
  w.KT.resize(Dhp * kBlock), w.VT.resize(Dhp * kBlock);
  w.S.resize(kBlock * kBlock), w.dP.resize(kBlock * kBlock), w.PT.resize(kBlock * kBlock), w.dST.resize(kBlock * kBlock);
  w.dKacc.resize(kBlock * Dhp), w.dVacc.resize(kBlock * Dhp);
  w.lo.resize(kBlock), w.lim.resize(kBlock), w.kvalid.resize(kBlock);

  for (size_t j0 = 0; j0 < T; j0 += kBlock) {
    const size_t bk = std::min(kBlock, T - j0);
    bool any = false;
    for (size_t j = 0; j < kBlock; j++) {
      const bool real = j < bk && (!mask || mask[j0 + j]);
      w.kvalid[j] = real ? 0xffffffffu : 0u;
      any = any || real;
      for (size_t d = 0; d < Dhp; d++) {
        w.KT[d * kBlock + j] = w.Kp[(j0 + j) * Dhp + d];  // rows past T are zero padding
        w.VT[d * kBlock + j] = w.Vp[(j0 + j) * Dhp + d];
      }
    }
    std::fill(w.dKacc.begin(), w.dKacc.end(), 0.f);
    std::fill(w.dVacc.begin(), w.dVacc.end(), 0.f);
    if (any) {
      // with a window, queries from j0 + bk - 1 + window on see none of this block's keys
      const size_t iend = a.window ? std::min(T, j0 + bk - 1 + a.window) : T;
      for (size_t i0 = j0; i0 < iend; i0 += kBlock) {
        const size_t bq = std::min(kBlock, T - i0);
        if (i0 + bq <= first_real) continue;
        for (size_t r = 0; r < bq; r++) {
          const size_t i = i0 + r, first = window_first_key(i, a.window);
          // causal: key j0 + j is visible when j <= i - j0, and inside the window when j0 + j >= first; rows that
          // see no key at all are zeroed.
          w.lim[r] = i < first_real ? 0 : int(std::min<size_t>(kBlock, i - j0 + 1));
          w.lo[r] = first > j0 ? int(std::min<size_t>(kBlock, first - j0)) : 0;
        }
        std::fill(w.S.begin(), w.S.end(), 0.f);
        std::fill(w.dP.begin(), w.dP.end(), 0.f);
        kern.gemm(w.S.data(), kBlock, w.Qp.data() + i0 * Dhp, Dhp, w.KT.data(), kBlock, bq, kBlock, Dhp);
        kern.gemm(w.dP.data(), kBlock, w.dOp.data() + i0 * Dhp, Dhp, w.VT.data(), kBlock, bq, kBlock, Dhp);
        kern.softmax_grad(w.S.data(), w.dP.data(), bq, w.lse.data() + i0, w.Dv.data() + i0, w.lo.data(),
                          w.lim.data(), w.kvalid.data(), a.scale);
        for (size_t j = 0; j < kBlock; j++)
          for (size_t r = 0; r < bq; r++) {
            w.PT[j * kBlock + r] = w.S[r * kBlock + j];
            w.dST[j * kBlock + r] = w.dP[r * kBlock + j];
          }
        kern.gemm(w.dVacc.data(), Dhp, w.PT.data(), kBlock, w.dOp.data() + i0 * Dhp, Dhp, bk, Dhp, bq);
        kern.gemm(w.dKacc.data(), Dhp, w.dST.data(), kBlock, w.Qp.data() + i0 * Dhp, Dhp, bk, Dhp, bq);
        kern.gemm(w.dQp.data() + i0 * Dhp, Dhp, w.dP.data(), kBlock, w.Kp.data() + j0 * Dhp, Dhp, bq, Dhp, bk);
      }
    }
    for (size_t j = 0; j < bk; j++)
      for (size_t d = 0; d < Dh; d++) {
        dK[(j0 + j) * dks + d] = a.scale * w.dKacc[j * Dhp + d];
        dV[(j0 + j) * dks + d] = w.dVacc[j * Dhp + d];
      }
  }
  for (size_t i = 0; i < T; i++)
    for (size_t d = 0; d < Dh; d++) dQ[i * qs + d] = a.scale * w.dQp[i * Dhp + d];
}

}  // namespace

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const uint8_t* key_mask, size_t B, size_t T,
                        size_t H, size_t Hk, size_t Dh, float scale, size_t window) {
  if (B == 0 || T == 0 || H == 0 || Dh == 0) return;
  const size_t nrep = H / Hk;
  std::vector<float> sk, sv;
  if (nrep > 1) {
    sk.resize(B * H * T * Dh);
    sv.resize(B * H * T * Dh);
  }
  AttnBwd a{dq, dk, dv, dout, q, k, v, out, lse, key_mask, B, T, H, Hk, Dh, scale, window,
            nrep > 1 ? sk.data() : nullptr, nrep > 1 ? sv.data() : nullptr};
  const Kernels kern = cpu_level() >= CpuLevel::AVX2 ? Kernels{gemm_avx2, softmax_grad_avx2}
                                                     : Kernels{gemm_generic, softmax_grad_generic};
  parallel_for(B * H, 1, [&](size_t t0, size_t t1, int) {
    Work w;
    for (size_t t = t0; t < t1; t++) head_task(a, kern, w, t / H, t % H);
  });
  if (nrep == 1) return;
  // dk/dv[b, t, g, :] = Σ_r scratch[b, g·nrep + r, t, :], heads added in order.
  parallel_for(B * T, 16, [&](size_t r0, size_t r1, int) {
    for (size_t bt = r0; bt < r1; bt++) {
      size_t b = bt / T, t = bt % T;
      for (size_t g = 0; g < Hk; g++) {
        float* dkr = dk + (bt * Hk + g) * Dh;
        float* dvr = dv + (bt * Hk + g) * Dh;
        std::fill(dkr, dkr + Dh, 0.f);
        std::fill(dvr, dvr + Dh, 0.f);
        for (size_t r = 0; r < nrep; r++) {
          const float* pk = sk.data() + ((b * H + g * nrep + r) * T + t) * Dh;
          const float* pv = sv.data() + ((b * H + g * nrep + r) * T + t) * Dh;
          for (size_t d = 0; d < Dh; d++) dkr[d] += pk[d], dvr[d] += pv[d];
        }
      }
    }
  });
}

namespace ref {

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const uint8_t* key_mask, size_t B, size_t T,
                        size_t H, size_t Hk, size_t Dh, float scale, size_t window) {
  const size_t nrep = H / Hk;
  std::vector<double> gq(B * T * H * Dh, 0.0), gk(B * T * Hk * Dh, 0.0), gv(B * T * Hk * Dh, 0.0);
  std::vector<double> P(T), dS(T);
  for (size_t b = 0; b < B; b++)
    for (size_t h = 0; h < H; h++) {
      const size_t g = h / nrep;
      for (size_t i = 0; i < T; i++) {
        const float* qi = q + ((b * T + i) * H + h) * Dh;
        const float* doi = dout + ((b * T + i) * H + h) * Dh;
        const float* oi = out + ((b * T + i) * H + h) * Dh;
        double Di = 0;
        for (size_t d = 0; d < Dh; d++) Di += double(doi[d]) * oi[d];
        const size_t lo = window_first_key(i, window);
        bool visible = false;
        for (size_t j = lo; j <= i; j++) visible = visible || !key_mask || key_mask[b * T + j];
        if (!visible) continue;
        for (size_t j = 0; j <= i; j++) P[j] = 0, dS[j] = 0;
        for (size_t j = lo; j <= i; j++) {
          if (key_mask && !key_mask[b * T + j]) continue;
          const float* kj = k + ((b * T + j) * Hk + g) * Dh;
          const float* vj = v + ((b * T + j) * Hk + g) * Dh;
          double s = 0, dp = 0;
          for (size_t d = 0; d < Dh; d++) s += double(qi[d]) * kj[d], dp += double(doi[d]) * vj[d];
          P[j] = std::exp(double(scale) * s - double(lse[(b * H + h) * T + i]));
          dS[j] = P[j] * (dp - Di);
        }
        for (size_t j = lo; j <= i; j++) {
          const float* kj = k + ((b * T + j) * Hk + g) * Dh;
          for (size_t d = 0; d < Dh; d++) {
            gq[((b * T + i) * H + h) * Dh + d] += double(scale) * dS[j] * kj[d];
            gk[((b * T + j) * Hk + g) * Dh + d] += double(scale) * dS[j] * qi[d];
            gv[((b * T + j) * Hk + g) * Dh + d] += P[j] * doi[d];
          }
        }
      }
    }
  for (size_t i = 0; i < gq.size(); i++) dq[i] = float(gq[i]);
  for (size_t i = 0; i < gk.size(); i++) dk[i] = float(gk[i]), dv[i] = float(gv[i]);
}

}  // namespace ref
}  // namespace streamline
