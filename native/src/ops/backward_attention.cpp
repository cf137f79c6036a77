// Backward pass of causal grouped-query attention (see attention_forward in ops.h), FlashAttention-2 style:
// the probabilities are recomputed from q, k and the forward log-sum-exp one key block at a time, so no T×T
// matrix is ever stored. For query head h (KV head h / (H/Hk)), with P_ij = exp(scale·q_i·k_j − lse_i) on the
// visible keys (j ≤ i, key_mask[j] = 1) and 0 elsewhere:
//   dP_ij = dO_i·v_j,  D_i = dO_i·O_i,  dS_ij = P_ij·(dP_ij − D_i)
//   dq_i = scale·Σ_j dS_ij·k_j,  dk_j = scale·Σ_{h in group} Σ_i dS_ij·q_i,  dv_j = Σ_{h in group} Σ_i P_ij·dO_i
// Work is split by (batch, query head): a task owns dq for its head and writes dk/dv for that head alone (into
// dk/dv directly when Hk = H, else into a per-head scratch that is summed over the group in head order), so
// there are no races and the result does not depend on the thread count. dq, dk, dv are overwritten.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "streamline/cpu_features.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

constexpr size_t kKeyBlock = 64;

struct AttnBwd {
  float *dq, *dk, *dv;
  const float *dout, *q, *k, *v, *out, *lse;
  const uint8_t* mask;
  size_t B, T, H, Hk, Dh;
  float scale;
  float *sk, *sv;  // per-head scratch [B, H, T, Dh] when H > Hk, else nullptr
};

// One (batch, query head) task. Inner loops are written so that the compiler vectorises them over the head
// dimension or the key block (no floating-point reductions in the innermost loops).
inline __attribute__((always_inline)) void head_task(const AttnBwd& a, size_t b, size_t h) {
  const size_t T = a.T, H = a.H, Hk = a.Hk, Dh = a.Dh, nrep = H / Hk, kvh = h / nrep;
  const size_t qs = H * Dh, ks = Hk * Dh;
  const float* Q = a.q + b * T * qs + h * Dh;
  const float* dO = a.dout + b * T * qs + h * Dh;
  const float* O = a.out + b * T * qs + h * Dh;
  float* dQ = a.dq + b * T * qs + h * Dh;
  const float* K = a.k + b * T * ks + kvh * Dh;
  const float* V = a.v + b * T * ks + kvh * Dh;
  float* dK;
  float* dV;
  size_t dks;
  if (a.sk) {
    dK = a.sk + (b * H + h) * T * Dh;
    dV = a.sv + (b * H + h) * T * Dh;
    dks = Dh;
  } else {
    dK = a.dk + b * T * ks + kvh * Dh;
    dV = a.dv + b * T * ks + kvh * Dh;
    dks = ks;
  }
  const float* lse = a.lse + (b * H + h) * T;
  const uint8_t* mask = a.mask ? a.mask + b * T : nullptr;
  const float scale = a.scale;

  size_t first_real = 0;  // queries before the first real key see nothing
  if (mask) {
    while (first_real < T && !mask[first_real]) first_real++;
  }
  std::vector<float> Dvec(T);
  for (size_t i = 0; i < T; i++) {
    double s = 0;
    for (size_t d = 0; d < Dh; d++) s += double(dO[i * qs + d]) * O[i * qs + d];
    Dvec[i] = float(s);
    std::memset(dQ + i * qs, 0, Dh * sizeof(float));
  }
  std::vector<float> KT(Dh * kKeyBlock), VT(Dh * kKeyBlock), dKacc(kKeyBlock * Dh), dVacc(kKeyBlock * Dh);
  float srow[kKeyBlock], prow[kKeyBlock];
  uint8_t kvalid[kKeyBlock];

  for (size_t j0 = 0; j0 < T; j0 += kKeyBlock) {
    const size_t bk = std::min(kKeyBlock, T - j0);
    std::fill(dKacc.begin(), dKacc.end(), 0.f);
    std::fill(dVacc.begin(), dVacc.end(), 0.f);
    bool any = false;
    for (size_t j = 0; j < bk; j++) {
      kvalid[j] = mask ? (mask[j0 + j] ? 1 : 0) : 1;
      any = any || kvalid[j];
      for (size_t d = 0; d < Dh; d++) {
        KT[d * kKeyBlock + j] = K[(j0 + j) * ks + d];
        VT[d * kKeyBlock + j] = V[(j0 + j) * ks + d];
      }
    }
    if (any) {
      for (size_t i = std::max(j0, first_real); i < T; i++) {
        const size_t jn = std::min(bk, i - j0 + 1);  // causal: keys j0 .. min(i, j0+bk-1)
        const float* qi = Q + i * qs;
        const float* doi = dO + i * qs;
        for (size_t j = 0; j < jn; j++) srow[j] = 0.f, prow[j] = 0.f;
        for (size_t d = 0; d < Dh; d++) {
          const float qv = qi[d], gv = doi[d];
          const float* kt = KT.data() + d * kKeyBlock;
          const float* vt = VT.data() + d * kKeyBlock;
          for (size_t j = 0; j < jn; j++) {
            srow[j] += qv * kt[j];
            prow[j] += gv * vt[j];  // dP for now
          }
        }
        const float li = lse[i], Di = Dvec[i];
        float* dqi = dQ + i * qs;
        for (size_t j = 0; j < jn; j++) {
          if (!kvalid[j]) continue;
          const float p = std::exp(scale * srow[j] - li);
          const float ds = p * (prow[j] - Di);
          const float* kj = K + (j0 + j) * ks;
          float* dkj = dKacc.data() + j * Dh;
          float* dvj = dVacc.data() + j * Dh;
          for (size_t d = 0; d < Dh; d++) {
            dqi[d] += ds * kj[d];
            dkj[d] += ds * qi[d];
            dvj[d] += p * doi[d];
          }
        }
      }
    }
    for (size_t j = 0; j < bk; j++) {
      float* dkr = dK + (j0 + j) * dks;
      float* dvr = dV + (j0 + j) * dks;
      for (size_t d = 0; d < Dh; d++) {
        dkr[d] = scale * dKacc[j * Dh + d];
        dvr[d] = dVacc[j * Dh + d];
      }
    }
  }
  for (size_t i = 0; i < T; i++)
    for (size_t d = 0; d < Dh; d++) dQ[i * qs + d] *= scale;
}

__attribute__((target("avx2,fma"))) void head_task_avx2(const AttnBwd& a, size_t b, size_t h) { head_task(a, b, h); }
void head_task_generic(const AttnBwd& a, size_t b, size_t h) { head_task(a, b, h); }

}  // namespace

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const uint8_t* key_mask, size_t B, size_t T,
                        size_t H, size_t Hk, size_t Dh, float scale) {
  if (B == 0 || T == 0 || H == 0 || Dh == 0) return;
  const size_t nrep = H / Hk;
  std::vector<float> sk, sv;
  if (nrep > 1) {
    sk.resize(B * H * T * Dh);
    sv.resize(B * H * T * Dh);
  }
  AttnBwd a{dq, dk, dv, dout, q, k, v, out, lse, key_mask, B, T, H, Hk, Dh, scale,
            nrep > 1 ? sk.data() : nullptr, nrep > 1 ? sv.data() : nullptr};
  const bool avx2 = cpu_level() >= CpuLevel::AVX2;
  parallel_for(B * H, 1, [&](size_t t0, size_t t1, int) {
    for (size_t t = t0; t < t1; t++) {
      if (avx2) head_task_avx2(a, t / H, t % H);
      else head_task_generic(a, t / H, t % H);
    }
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
                        size_t H, size_t Hk, size_t Dh, float scale) {
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
        bool visible = false;
        for (size_t j = 0; j <= i; j++) visible = visible || !key_mask || key_mask[b * T + j];
        if (!visible) continue;
        for (size_t j = 0; j <= i; j++) {
          P[j] = 0, dS[j] = 0;
          if (key_mask && !key_mask[b * T + j]) continue;
          const float* kj = k + ((b * T + j) * Hk + g) * Dh;
          const float* vj = v + ((b * T + j) * Hk + g) * Dh;
          double s = 0, dp = 0;
          for (size_t d = 0; d < Dh; d++) s += double(qi[d]) * kj[d], dp += double(doi[d]) * vj[d];
          P[j] = std::exp(double(scale) * s - double(lse[(b * H + h) * T + i]));
          dS[j] = P[j] * (dp - Di);
        }
        for (size_t j = 0; j <= i; j++) {
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
