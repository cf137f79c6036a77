// Flash-style causal GQA attention.
//
// scalar kernel (f32 and bf16 inputs; validation and odd head sizes): a block takes 32 queries of one (b, h);
// each warp owns 4 queries, each lane owns head dims lane, lane+32, ...; K/V tiles of 16 keys live in shared memory
// and every key updates the running (max, sum, acc) of the query exactly (one exp per key).
//
// wmma kernel (bf16, Dh = 32, 64, 80, 96, 128 or 256): a block of 4 warps takes 64 queries of one (b, h); per 64-key tile,
// S = Q K^T with bf16 tensor-core fragments (f32 accumulate) into shared memory, each warp runs the online softmax
// over its 16 rows, writes P in bf16, rescales its rows of the f32 O tile and adds P V with tensor cores.
// Invalid keys (beyond T, padding, or in the future of every query of the tile) are zeroed in K/V and get
// probability exactly 0, so NaN in a padding row can never leak into a real query.
//
// Sliding window (W > 0: query i sees keys j with i - j < W): both kernels start a query tile's key loop at the
// tile holding the first query's first key (window_first), so key tiles wholly before the tile's windows are never
// read. The scalar kernel skips each key outside a query's window exactly as it skips future keys (never multiplied:
// NaN/inf there cannot reach the output). The wmma kernel zeroes keys before the first query's window in K/V (exact
// exclusion, like padding); in P·V each warp skips the 16-key chunks before all of its rows' windows and computes
// the chunks its rows' window edges cross with scalar products over each row's visible keys only, so no
// out-of-window value row is ever multiplied (the mma's 0 · NaN). Future keys keep the diagonal's caveat.
#include <mma.h>

#include <cstdlib>
#include <string>

#include "attention.cuh"

namespace streamline {
namespace cuda {

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Scalar kernel.
constexpr int kSQ = 32;   // queries per block
constexpr int kSK = 16;   // keys per shared tile
constexpr int kSWarps = 8;
constexpr int kMaxDhLane = 8;  // Dh <= 256

template <typename T>
__global__ void attn_scalar_kernel(T* out, size_t out_stride, float* lse, const T* q, size_t q_stride, const T* k,
                                   const T* v, size_t kv_stride, const uint8_t* mask, int T_, int H, int Hk, int Dh,
                                   float scale, int W) {
  extern __shared__ float sm[];
  float* Ks = sm;                 // [kSK][Dh]
  float* Vs = sm + kSK * Dh;      // [kSK][Dh]
  __shared__ int valid[kSK];
  const int b = blockIdx.z, h = blockIdx.y, kvh = h / (H / Hk);
  const int q0 = blockIdx.x * kSQ;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int kQPerWarp = kSQ / kSWarps;

  float qr[kQPerWarp][kMaxDhLane], acc[kQPerWarp][kMaxDhLane], mrow[kQPerWarp], lrow[kQPerWarp];
#pragma unroll
  for (int r = 0; r < kQPerWarp; r++) {
    const int i = q0 + warp * kQPerWarp + r;
    mrow[r] = -INFINITY;
    lrow[r] = 0.f;
#pragma unroll
    for (int u = 0; u < kMaxDhLane; u++) {
      const int d = lane + 32 * u;
      qr[r][u] = (i < T_ && d < Dh) ? to_f32(q[(size_t(b) * T_ + i) * q_stride + size_t(h) * Dh + d]) : 0.f;
      acc[r][u] = 0.f;
    }
  }
  const int last_q = min(q0 + kSQ, T_) - 1;
  for (int k0 = window_first(q0, W) / kSK * kSK; k0 <= last_q; k0 += kSK) {
    __syncthreads();
    for (int e = threadIdx.x; e < kSK * Dh; e += blockDim.x) {
      const int j = k0 + e / Dh, d = e % Dh;
      float kv = 0.f, vv = 0.f;
      if (j < T_) {
        const size_t row = (size_t(b) * T_ + j) * kv_stride + size_t(kvh) * Dh + d;
        kv = to_f32(k[row]);
        vv = to_f32(v[row]);
      }
      Ks[e] = kv;
      Vs[e] = vv;
    }
    if (threadIdx.x < kSK) {
      const int j = k0 + threadIdx.x;
      valid[threadIdx.x] = j < T_ && (!mask || mask[size_t(b) * T_ + j]);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kQPerWarp; r++) {
      const int i = q0 + warp * kQPerWarp + r;
      if (i >= T_) continue;
      const int lo = window_first(i, W);
      for (int jj = 0; jj < kSK; jj++) {
        const int j = k0 + jj;
        if (j > i || j < lo || !valid[jj]) continue;
        float dot = 0.f;
#pragma unroll
        for (int u = 0; u < kMaxDhLane; u++) {
          const int d = lane + 32 * u;
          if (d < Dh) dot += qr[r][u] * Ks[jj * Dh + d];
        }
        dot = warp_sum(dot);  // the same value in every lane (xor butterfly): the branch below is warp-uniform
        const float s = dot * scale;
        // A -inf score leaves its key out, value row included (as the reference does; only non-finite inputs get
        // here): 0 * NaN must not reach the row, and a first key at -inf must not make exp(-inf - -inf) = NaN.
        if (s == -INFINITY) continue;
        const float mn = nan_max(mrow[r], s);
        const float corr = mrow[r] == -INFINITY ? 0.f : expf(mrow[r] - mn);
        const float p = expf(s - mn);
        lrow[r] = lrow[r] * corr + p;
#pragma unroll
        for (int u = 0; u < kMaxDhLane; u++) {
          const int d = lane + 32 * u;
          if (d < Dh) acc[r][u] = acc[r][u] * corr + p * Vs[jj * Dh + d];
        }
        mrow[r] = mn;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kQPerWarp; r++) {
    const int i = q0 + warp * kQPerWarp + r;
    if (i >= T_) continue;
    const float inv = lrow[r] > 0.f ? 1.f / lrow[r] : 0.f;
    const bool nan_row = lrow[r] != lrow[r];
#pragma unroll
    for (int u = 0; u < kMaxDhLane; u++) {
      const int d = lane + 32 * u;
      if (d < Dh)
        out[(size_t(b) * T_ + i) * out_stride + size_t(h) * Dh + d] =
            from_f32<T>(nan_row ? lrow[r] : acc[r][u] * inv);
    }
    if (lse && lane == 0)
      lse[(size_t(b) * H + h) * T_ + i] = lrow[r] > 0.f || nan_row ? mrow[r] + logf(lrow[r]) : -INFINITY;
  }
}

template <typename T>
void launch_scalar(T* out, size_t out_stride, float* lse, const T* q, size_t q_stride, const T* k, const T* v,
                   size_t kv_stride, const uint8_t* mask, size_t B, size_t T_, size_t H, size_t Hk, size_t Dh,
                   float scale, size_t window, cudaStream_t s) {
  if (Dh > 32 * kMaxDhLane) throw CudaError("attention: head_dim " + std::to_string(Dh) + " exceeds 256");
  if (Hk == 0 || H % Hk != 0) throw CudaError("attention: heads must be a multiple of kv_heads");
  dim3 grid(unsigned((T_ + kSQ - 1) / kSQ), unsigned(H), unsigned(B));
  size_t smem = 2 * kSK * Dh * sizeof(float);
  attn_scalar_kernel<T><<<grid, kSWarps * 32, smem, s>>>(out, out_stride, lse, q, q_stride, k, v, kv_stride, mask,
                                                         int(T_), int(H), int(Hk), int(Dh), scale,
                                                         window_arg(window, T_));
  SL_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor-core kernel (bf16 wmma 16x16x16, f32 accumulate).
namespace wmma = nvcuda::wmma;
constexpr int kBr = 64, kBc = 64, kWWarps = 4;

// Shared memory: K and V tiles (bf16), the f32 score tile (each warp's 16 rows; the warp's bf16 probabilities are
// written over its own consumed score rows), the f32 output accumulator and the row statistics. Q lives in registers
// as tensor-core fragments. D = 128: 85 KB, so two blocks share a multiprocessor. Any D that is a multiple of 16 keeps
// every fragment pointer 32-byte aligned (row pitches 2(D+8) and 4(D+4) bytes, times 16 rows).
template <int D, bool RegO>
struct WmmaSmem {
  static constexpr int ldq = D + 8;    // bf16 K/V rows (pad: 16 bytes)
  static constexpr int lds = kBc + 4;  // f32 scores
  static constexpr int ldp = kBc + 8;  // bf16 probabilities (inside the warp's score rows)
  static constexpr int ldo = D + 4;    // f32 output accumulator
  static constexpr size_t k_off = 0;
  static constexpr size_t v_off = k_off + size_t(kBc) * ldq * 2;
  static constexpr size_t s_off = v_off + size_t(kBc) * ldq * 2;
  static constexpr size_t o_off = s_off + size_t(kBr) * lds * 4;
  static constexpr size_t st_off = o_off + (RegO ? 0 : size_t(kBr) * ldo * 4);  // m[kBr], l[kBr], alpha[kBr]
  static constexpr size_t valid_off = st_off + 3 * kBr * 4;        // int valid[kBc]
  static constexpr size_t bytes = valid_off + kBc * 4;
  // Row rr of a warp's probabilities ends before score row rr + 1 starts, so writing it never clobbers unread scores.
  static_assert(15 * ldp * 2 + kBc * 2 <= 16 * lds * 4, "P rows must fit in the warp's score rows");
  static_assert(kBr == kBc, "the Q tile is staged in the K buffer");
};

// Row rr's share of P·V over the 16-key chunk at kk (first key j0) for output column d, over the keys row i sees
// (its window, not its future; padding keys are zero rows): the exact form of the chunk's product where a window
// edge crosses it.
__device__ __forceinline__ float chunk_pv(const bf16* Ps, int ldp, const bf16* Vs, int ldq, int kk, int j0, int rr, int d,
                                          int i, int W) {
  const int lo = window_first(i, W);
  const int c0 = lo > j0 ? lo - j0 : 0, c1 = i - j0 < 15 ? i - j0 : 15;
  float sum = 0.f;
  for (int c = c0; c <= c1; c++)
    sum += __bfloat162float(Ps[rr * ldp + kk + c]) * __bfloat162float(Vs[(kk + c) * ldq + d]);
  return sum;
}

// RegO = false (version 1): the f32 output tile lives in shared memory, reloaded into fragments for every P V.
// RegO = true (version 2): the output stays in accumulator fragments across tiles; the rows they hold are found
// once by loading a matrix whose entries are their own row numbers (the fragment layout is opaque but fixed), so
// rows can be rescaled in registers. No O tile in shared memory: 52 KB at D = 128, four blocks per multiprocessor.
template <int D, bool RegO>
__global__ void __launch_bounds__(kWWarps * 32)
attn_wmma_kernel(bf16* out, size_t out_stride, float* lse, const bf16* q, size_t q_stride, const bf16* k,
                 const bf16* v, size_t kv_stride, const uint8_t* mask, int T_, int H, int Hk, float scale, int W) {
  using L = WmmaSmem<D, RegO>;
  using AccFrag = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem + L::k_off);
  bf16* Vs = reinterpret_cast<bf16*>(smem + L::v_off);
  float* Ss = reinterpret_cast<float*>(smem + L::s_off);
  float* Os = reinterpret_cast<float*>(smem + L::o_off);
  float* mst = reinterpret_cast<float*>(smem + L::st_off);
  float* lst = mst + kBr;
  float* ast = lst + kBr;
  int* valid = reinterpret_cast<int*>(smem + L::valid_off);

  const int nq = (T_ + kBr - 1) / kBr;
  const int qt = nq - 1 - int(blockIdx.x);  // longest (latest) query tiles first
  const int b = blockIdx.z, h = blockIdx.y, kvh = h / (H / Hk);
  const int q0 = qt * kBr;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r0 = warp * 16;
  constexpr int kVec = 8;  // bf16 per 16-byte vector
  constexpr int kRowVecs = D / kVec;
  bf16* Ps = reinterpret_cast<bf16*>(Ss + r0 * L::lds);  // this warp's probabilities, row stride ldp

  // Q tile staged through the K buffer (rows past T are zero), then kept as fragments; O = 0; stats.
  for (int e = tid; e < kBr * kRowVecs; e += blockDim.x) {
    const int r = e / kRowVecs, c = (e % kRowVecs) * kVec, i = q0 + r;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (i < T_) val = *reinterpret_cast<const uint4*>(q + (size_t(b) * T_ + i) * q_stride + size_t(h) * D + c);
    *reinterpret_cast<uint4*>(Ks + r * L::ldq + c) = val;
  }
  if (!RegO)
    for (int e = tid; e < kBr * D; e += blockDim.x) Os[(e / D) * L::ldo + e % D] = 0.f;
  for (int r = tid; r < kBr; r += blockDim.x) { mst[r] = -INFINITY; lst[r] = 0.f; }
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qf[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) wmma::load_matrix_sync(qf[kk], Ks + r0 * L::ldq + kk * 16, L::ldq);
  AccFrag of[RegO ? D / 16 : 1];
  float rowmap[AccFrag::num_elements];
  if (RegO) {
#pragma unroll
    for (int dt = 0; dt < (RegO ? D / 16 : 1); dt++) wmma::fill_fragment(of[dt], 0.f);
    // 16 * row + column of each accumulator element: load a 16 x 16 matrix whose entries are those numbers.
    for (int e = lane; e < 256; e += 32) Ss[(r0 + e / 16) * L::lds + e % 16] = float(e);
    __syncwarp();
    AccFrag rf;
    wmma::load_matrix_sync(rf, Ss + r0 * L::lds, L::lds, wmma::mem_row_major);
#pragma unroll
    for (int i = 0; i < AccFrag::num_elements; i++) rowmap[i] = rf.x[i];
    __syncwarp();
  }

  const int last_q = min(q0 + kBr, T_) - 1;
  const int tile_first = window_first(q0, W);  // keys before it are outside every row's window: never loaded
  for (int k0 = tile_first / kBc * kBc; k0 <= last_q; k0 += kBc) {
    __syncthreads();  // previous tile fully consumed (and Q/O/stat init visible on the first pass)
    if (tid < kBc) {
      const int j = k0 + tid;
      valid[tid] = j < T_ && j >= tile_first && (!mask || mask[size_t(b) * T_ + j]);
    }
    __syncthreads();
    for (int e = tid; e < kBc * kRowVecs; e += blockDim.x) {
      const int r = e / kRowVecs, c = (e % kRowVecs) * kVec, j = k0 + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (valid[r]) {
        const size_t row = (size_t(b) * T_ + j) * kv_stride + size_t(kvh) * D + c;
        kv = *reinterpret_cast<const uint4*>(k + row);
        vv = *reinterpret_cast<const uint4*>(v + row);
      }
      *reinterpret_cast<uint4*>(Ks + r * L::ldq + c) = kv;
      *reinterpret_cast<uint4*>(Vs + r * L::ldq + c) = vv;
    }
    __syncthreads();

    // S[16 rows of this warp][64] = Q K^T.
#pragma unroll
    for (int ct = 0; ct < kBc / 16; ct++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
      wmma::fill_fragment(sf, 0.f);
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> bfr;
        wmma::load_matrix_sync(bfr, Ks + (ct * 16) * L::ldq + kk * 16, L::ldq);
        wmma::mma_sync(sf, qf[kk], bfr, sf);
      }
      wmma::store_matrix_sync(Ss + r0 * L::lds + ct * 16, sf, L::lds, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over this warp's 16 rows; each lane handles columns lane and lane + 32.
    for (int rr = 0; rr < 16; rr++) {
      const int r = r0 + rr, i = q0 + r, lo = window_first(i, W);
      float s[2];
      float mx = -INFINITY;
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const int c = lane + 32 * u, j = k0 + c;
        const bool ok = i < T_ && j <= i && j >= lo && valid[c];
        s[u] = ok ? Ss[r * L::lds + c] * scale : -INFINITY;
        mx = nan_max(mx, s[u]);
      }
      mx = warp_max(mx);
      __syncwarp();  // every lane has read score row rr before probability row rr (same bytes) is written
      const float m_old = mst[r];
      const float m_new = nan_max(m_old, mx);
      float psum = 0.f;
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const float p = s[u] == -INFINITY ? 0.f : expf(s[u] - m_new);
        psum += p;
        Ps[rr * L::ldp + lane + 32 * u] = __float2bfloat16_rn(p);
      }
      psum = warp_sum(psum);
      __syncwarp();  // all lanes have read mst[r] before lane 0 updates it
      if (lane == 0) {
        const float alpha = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
        ast[r] = alpha;
        lst[r] = lst[r] * alpha + psum;
        mst[r] = m_new;
      }
    }
    __syncwarp();
    // Window edges in this warp's rows (W > 0 only): chunks wholly before lo_first add nothing and are skipped;
    // chunks starting before lo_last hold keys outside some row's window and take chunk_pv. Warp-uniform.
    const int lo_first = window_first(q0 + r0, W), lo_last = window_first(q0 + r0 + 15, W);
    if (RegO) {
      // Rescale the accumulator rows in registers, then O += P V.
      float alpha[AccFrag::num_elements];
#pragma unroll
      for (int i = 0; i < AccFrag::num_elements; i++) alpha[i] = ast[r0 + (int(rowmap[i]) >> 4)];
#pragma unroll
      for (int dt = 0; dt < (RegO ? D / 16 : 1); dt++) {
#pragma unroll
        for (int i = 0; i < AccFrag::num_elements; i++) of[dt].x[i] *= alpha[i];
#pragma unroll
        for (int kk = 0; kk < kBc; kk += 16) {
          if (W && k0 + kk + 15 < lo_first) continue;
          if (W && k0 + kk < lo_last) {
            for (int i = 0; i < AccFrag::num_elements; i++) {
              const int rc = int(rowmap[i]), rr = rc >> 4;
              of[dt].x[i] += chunk_pv(Ps, L::ldp, Vs, L::ldq, kk, k0 + kk, rr, dt * 16 + (rc & 15), q0 + r0 + rr, W);
            }
            continue;
          }
          wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pf;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vf;
          wmma::load_matrix_sync(pf, Ps + kk, L::ldp);
          wmma::load_matrix_sync(vf, Vs + kk * L::ldq + dt * 16, L::ldq);
          wmma::mma_sync(of[dt], pf, vf, of[dt]);
        }
      }
    } else {
    // Rescale this warp's O rows, then O += P V.
    for (int e = lane; e < 16 * D; e += 32) {
      const int r = r0 + e / D, c = e % D;
      Os[r * L::ldo + c] *= ast[r];
    }
    __syncwarp();
#pragma unroll
    for (int dt = 0; dt < D / 16; dt++) {
      AccFrag acc;
      wmma::load_matrix_sync(acc, Os + r0 * L::ldo + dt * 16, L::ldo, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kBc; kk += 16) {
        if (W && k0 + kk < lo_last) continue;  // skipped, or below by chunk_pv
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, Ps + kk, L::ldp);
        wmma::load_matrix_sync(vf, Vs + kk * L::ldq + dt * 16, L::ldq);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(Os + r0 * L::ldo + dt * 16, acc, L::ldo, wmma::mem_row_major);
    }
    if (W) {
      __syncwarp();  // the fragments' stores are visible to every lane
      for (int kk = 0; kk < kBc; kk += 16) {
        if (k0 + kk + 15 < lo_first || k0 + kk >= lo_last) continue;
        for (int e = lane; e < 16 * D; e += 32) {
          const int rr = e / D, c = e % D;
          Os[(r0 + rr) * L::ldo + c] += chunk_pv(Ps, L::ldp, Vs, L::ldq, kk, k0 + kk, rr, c, q0 + r0 + rr, W);
        }
      }
    }
    }
  }
  __syncthreads();
  if (RegO) {
    // Each warp writes its rows: fragment -> its own score rows (free now) -> normalised bf16 in global memory.
#pragma unroll
    for (int dt = 0; dt < (RegO ? D / 16 : 1); dt++) {
      wmma::store_matrix_sync(Ss + r0 * L::lds, of[dt], L::lds, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int rr = e / 16, c = e % 16, r = r0 + rr, i = q0 + r;
        if (i >= T_) continue;
        const float l = lst[r];
        const float o = l != l ? l : (l > 0.f ? Ss[r * L::lds + c] / l : 0.f);
        out[(size_t(b) * T_ + i) * out_stride + size_t(h) * D + dt * 16 + c] = __float2bfloat16_rn(o);
      }
      __syncwarp();
    }
  }
  // Normalise and write bf16 output; lse.
  for (int e = tid; e < (RegO ? 0 : kBr * D); e += blockDim.x) {
    const int r = e / D, c = e % D, i = q0 + r;
    if (i >= T_) continue;
    const float l = lst[r];
    const float o = l != l ? l : (l > 0.f ? Os[r * L::ldo + c] / l : 0.f);
    out[(size_t(b) * T_ + i) * out_stride + size_t(h) * D + c] = __float2bfloat16_rn(o);
  }
  if (lse)
    for (int r = tid; r < kBr; r += blockDim.x) {
      const int i = q0 + r;
      if (i >= T_) continue;
      const float l = lst[r];
      lse[(size_t(b) * H + h) * T_ + i] = (l > 0.f || l != l) ? mst[r] + logf(l) : -INFINITY;
    }
}

template <int D, bool RegO>
void launch_wmma_variant(bf16* out, size_t out_stride, float* lse, const bf16* q, size_t q_stride, const bf16* k,
                         const bf16* v, size_t kv_stride, const uint8_t* mask, size_t B, size_t T_, size_t H, size_t Hk,
                         float scale, size_t window, cudaStream_t s) {
  const size_t smem = WmmaSmem<D, RegO>::bytes;
  static bool raised = false;
  if (!raised) {
    SL_CUDA_CHECK(cudaFuncSetAttribute(attn_wmma_kernel<D, RegO>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    raised = true;
  }
  dim3 grid(unsigned((T_ + kBr - 1) / kBr), unsigned(H), unsigned(B));
  attn_wmma_kernel<D, RegO><<<grid, kWWarps * 32, smem, s>>>(out, out_stride, lse, q, q_stride, k, v, kv_stride, mask,
                                                             int(T_), int(H), int(Hk), scale,
                                                             window_arg(window, T_));
  SL_LAUNCH_CHECK();
}

// 0 = unset (read STREAMLINE_ATTN once: "smem" selects version 1), 1 = registers, 2 = shared memory.
int g_variant = 0;
bool use_reg_o() {
  if (g_variant == 0) {
    const char* e = std::getenv("STREAMLINE_ATTN");
    g_variant = e && std::string(e) == "smem" ? 2 : 1;
  }
  return g_variant == 1;
}

template <int D>
void launch_wmma(bf16* out, size_t out_stride, float* lse, const bf16* q, size_t q_stride, const bf16* k, const bf16* v,
                 size_t kv_stride, const uint8_t* mask, size_t B, size_t T_, size_t H, size_t Hk, float scale,
                 size_t window, cudaStream_t s) {
  // D = 256 keeps its output in shared memory: 16 accumulator fragments per warp would spill registers.
  if (D <= 128 && use_reg_o()) launch_wmma_variant<D, (D <= 128)>(out, out_stride, lse, q, q_stride, k, v, kv_stride, mask, B, T_, H, Hk, scale, window, s);
  else launch_wmma_variant<D, false>(out, out_stride, lse, q, q_stride, k, v, kv_stride, mask, B, T_, H, Hk, scale, window, s);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void set_attention_variant(bool registers) { g_variant = registers ? 1 : 2; }

const char* attention_bf16_path(size_t Dh, size_t q_stride, size_t kv_stride, size_t out_stride, const void* q,
                                const void* k, const void* v, const void* out) {
  const bool shape = Dh == 32 || Dh == 64 || Dh == 80 || Dh == 96 || Dh == 128 || Dh == 256;
  const bool align = q_stride % 8 == 0 && kv_stride % 8 == 0 && out_stride % 8 == 0 && aligned16(q) &&
                     aligned16(k) && aligned16(v) && aligned16(out);
  return shape && align ? (Dh <= 128 && use_reg_o() ? "wmma-reg" : "wmma-smem") : "scalar";
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window, cudaStream_t s) {
  if (B * T * H == 0) return;
  launch_scalar<float>(out, H * Dh, lse, q, H * Dh, k, v, Hk * Dh, key_mask, B, T, H, Hk, Dh, scale, window, s);
}

void attention_forward_bf16(bf16* out, size_t out_stride, float* lse, const bf16* q, size_t q_stride, const bf16* k,
                            const bf16* v, size_t kv_stride, const uint8_t* key_mask, size_t B, size_t T, size_t H,
                            size_t Hk, size_t Dh, float scale, size_t window, cudaStream_t s) {
  if (B * T * H == 0) return;
  if (Hk == 0 || H % Hk != 0) throw CudaError("attention: heads must be a multiple of kv_heads");
  const char* path = attention_bf16_path(Dh, q_stride, kv_stride, out_stride, q, k, v, out);
  if (path[0] == 'w') {
#define SL_WMMA_CASE(d) \
  case d: launch_wmma<d>(out, out_stride, lse, q, q_stride, k, v, kv_stride, key_mask, B, T, H, Hk, scale, window, s); \
    return;
    switch (Dh) {
      SL_WMMA_CASE(32)
      SL_WMMA_CASE(64)
      SL_WMMA_CASE(80)
      SL_WMMA_CASE(96)
      SL_WMMA_CASE(128)
      SL_WMMA_CASE(256)
      default: break;
    }
#undef SL_WMMA_CASE
  }
  launch_scalar<bf16>(out, out_stride, lse, q, q_stride, k, v, kv_stride, key_mask, B, T, H, Hk, Dh, scale, window, s);
}

}  // namespace cuda
}  // namespace streamline
