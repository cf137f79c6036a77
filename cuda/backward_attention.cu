// Causal GQA attention backward on the GPU, FlashAttention-2 style, f32 (contract in backward.cuh). Not a fast
// kernel: the correct, deterministic baseline that a tensor-core version will be checked against.
//
// With P_ij = exp(scale·q_i·k_j − lse_i) on the visible keys and D_i = dO_i·O_i:
//   dP_ij = dO_i·v_j,  dS_ij = P_ij·(dP_ij − D_i),  dq_i = scale·Σ_j dS_ij k_j,
//   dk_j = scale·Σ_{h in group} Σ_i dS_ij q_i,       dv_j = Σ_{h in group} Σ_i P_ij dO_i.
// Launches:
//   1. prep: D_i per (b, h, i) (f64 dot product, like the CPU), and the first real key of every batch row;
//   2. dK/dV: one block per (key tile, KV head, batch); it loops over the group's query heads in head order and
//      over the query tiles at or after its keys, recomputing S and dP per 32 x 32 tile in shared memory, and owns
//      its dk/dv rows outright: no atomics, the sum over the group is in a fixed order;
//   3. dQ: one block per (query tile, query head, batch), looping over the key tiles up to the diagonal, again
//      recomputing S and dP. Recomputing costs 7 tile products where FA2 with float atomics on dq costs 5; that
//      is the price of determinism.
// Nothing T x T reaches global memory; scratch is D [B,H,T] and first_real [B] (stream-ordered allocations).
//
// Which pairs contribute is the reference's (ref::attention_backward): a query with no visible key (every key up
// to it is padding) contributes nothing at all; a visible query i takes every key j <= i, and a padding key among
// them has P = dS = 0 exactly, which still multiplies its k/v row and the query's q/dO rows (0·NaN = NaN, as in
// the reference). Pairs with j > i are skipped, never multiplied. So NaN lands exactly where the reference puts it.
//
// Sliding window (W > 0): query i takes the keys j in [i + 1 - W, i] (window_first). A query is visible when a real
// key lies in that range (last_real, a [B, T] scratch, says where the latest real key at or before i is; only with
// a window and a mask); pairs before the window are skipped like future pairs. The dK/dV pass stops at the last
// query tile that sees the key tile (i < j0 + kTile - 1 + W), the dQ pass starts at the key tile holding the tile's
// first query's first key: the same (query tile, key tile) pairs in both passes.
#include "backward.cuh"

namespace streamline {
namespace cuda {

namespace {

constexpr int kTile = 32;  // queries and keys per tile (both; the causal bounds rely on it)
constexpr int kThreads = 256;
constexpr int kLanesPerRow = kThreads / kTile;  // 8 threads share one tile row
constexpr int kPLd = kTile + 1;                  // padded row of the P/dS tiles (no bank conflicts)

// Shared memory of both kernels: four [kTile][DH + 4] f32 tiles, P and dS tiles, per-row lse, D and visibility,
// per-key realness. Tile rows are read as float4 (a quarter of the load instructions: the kernels are bound by
// shared-memory loads); the +4 shifts consecutive rows by four banks, so the eight rows a warp reads at once
// cover the 32 banks exactly.
template <int DH> struct Smem {
  static constexpr int kLd = DH + 4;
  static constexpr size_t kFloats = size_t(4) * kTile * kLd + 2 * kTile * kPLd + 2 * kTile;
  static constexpr size_t kBytes = kFloats * sizeof(float) + 2 * kTile * sizeof(int);
};

__global__ void attn_bwd_rowdot(float* Dv, const float* dout, const float* out, size_t B, size_t T, size_t H,
                                unsigned Dh) {
  const size_t warps = size_t(gridDim.x) * (blockDim.x / 32);
  const size_t n = B * T * H;
  for (size_t row = blockIdx.x * size_t(blockDim.x / 32) + threadIdx.x / 32; row < n; row += warps) {
    // row enumerates (b, t, h) in memory order; Dv is [B, H, T].
    const size_t h = row % H, bt = row / H, b = bt / T, t = bt % T;
    const float* o = out + row * Dh;
    const float* g = dout + row * Dh;
    double s = 0;
    for (unsigned d = threadIdx.x & 31; d < Dh; d += 32) s += double(g[d]) * double(o[d]);
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) Dv[(b * H + h) * T + t] = float(s);
  }
}

// last_real[b*T + t] = the latest real key at or before t (-1 when none): one block per batch row, a chunk of rows
// per thread, the chunks' results combined in order by thread 0 (T steps per block at most once, cheap next to
// the attention passes).
__global__ void attn_bwd_last_real(int* last_real, const uint8_t* mask, int T) {
  __shared__ int chunk_last[kThreads];
  const uint8_t* m = mask + size_t(blockIdx.x) * T;
  int* out = last_real + size_t(blockIdx.x) * T;
  const int per = (T + kThreads - 1) / kThreads, t0 = threadIdx.x * per, t1 = min(T, t0 + per);
  int last = -1;
  for (int t = t0; t < t1; t++)
    if (m[t]) last = t;
  chunk_last[threadIdx.x] = last;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int c = 1; c < kThreads; c++) chunk_last[c] = max(chunk_last[c], chunk_last[c - 1]);
  __syncthreads();
  last = threadIdx.x ? chunk_last[threadIdx.x - 1] : -1;
  for (int t = t0; t < t1; t++) {
    if (m[t]) last = t;
    out[t] = last;
  }
}

// first_real[b] = index of the first real key of batch row b (T when there is none, 0 without a mask).
__global__ void attn_bwd_first_real(int* first_real, const uint8_t* mask, size_t T) {
  __shared__ int best;
  if (threadIdx.x == 0) best = int(T);
  __syncthreads();
  if (mask) {
    const uint8_t* m = mask + blockIdx.x * T;
    int local = int(T);
    for (size_t t = threadIdx.x; t < T; t += blockDim.x)
      if (m[t] && int(t) < local) local = int(t);
    atomicMin(&best, local);  // integer min: order-independent
  } else if (threadIdx.x == 0) {
    best = 0;
  }
  __syncthreads();
  if (threadIdx.x == 0) first_real[blockIdx.x] = best;
}

// rows [kTile][kLd] <- src rows (row r at src + r * stride, Dh values), zero past Dh and past nrows.
template <int DH>
__device__ __forceinline__ void load_tile(float* dst, const float* src, size_t stride, int nrows, unsigned Dh) {
  constexpr int kLd = Smem<DH>::kLd;
  for (int idx = threadIdx.x; idx < kTile * DH; idx += kThreads) {
    const int r = idx / DH, d = idx % DH;
    dst[r * kLd + d] = (r < nrows && unsigned(d) < Dh) ? src[size_t(r) * stride + d] : 0.f;
  }
}

// P and dS of one (query tile, key tile) pair into sP/sdS. Thread: tile row rr = tid / 8, columns tid % 8 + 8k.
// Entries of pairs that do not contribute are written as 0 and never read.
template <int DH>
__device__ __forceinline__ void tile_p_ds(float* sP, float* sdS, const float* sQ, const float* sdO, const float* sK,
                                          const float* sV, const float* sL, const float* sD, const int* sQvis,
                                          const int* sKreal, size_t i0, size_t j0, unsigned Dh, float scale, int W) {
  constexpr int kLd = Smem<DH>::kLd, kC = kTile / kLanesPerRow;
  const int rr = threadIdx.x / kLanesPerRow, c0 = threadIdx.x % kLanesPerRow;
  float s[kC], dp[kC];
#pragma unroll
  for (int k = 0; k < kC; k++) s[k] = 0.f, dp[k] = 0.f;
  const float4* q = reinterpret_cast<const float4*>(sQ + rr * kLd);
  const float4* g = reinterpret_cast<const float4*>(sdO + rr * kLd);
  const unsigned n4 = (Dh + 3) / 4;  // the tiles are zero past Dh
  for (unsigned d4 = 0; d4 < n4; d4++) {
    const float4 qv = q[d4], gv = g[d4];
#pragma unroll
    for (int k = 0; k < kC; k++) {
      const int c = c0 + kLanesPerRow * k;
      const float4 kv = reinterpret_cast<const float4*>(sK + c * kLd)[d4];
      const float4 vv = reinterpret_cast<const float4*>(sV + c * kLd)[d4];
      s[k] += qv.x * kv.x, s[k] += qv.y * kv.y, s[k] += qv.z * kv.z, s[k] += qv.w * kv.w;
      dp[k] += gv.x * vv.x, dp[k] += gv.y * vv.y, dp[k] += gv.z * vv.z, dp[k] += gv.w * vv.w;
    }
  }
  const size_t i = i0 + rr;
  const float lse = sL[rr], Di = sD[rr];
  const bool qvis = sQvis[rr] != 0;
  const size_t lo = size_t(window_first(int(i), W));
#pragma unroll
  for (int k = 0; k < kC; k++) {
    const int c = c0 + kLanesPerRow * k;
    float p = 0.f, ds = 0.f;
    if (qvis && sKreal[c] && j0 + c <= i && j0 + c >= lo) {
      p = expf(scale * s[k] - lse);
      ds = p * (dp[k] - Di);
    }
    sP[rr * kPLd + c] = p;
    sdS[rr * kPLd + c] = ds;
  }
}

struct Args {
  const float *dout, *q, *k, *v, *lse, *Dv;
  const uint8_t* mask;
  const int* first_real;
  const int* last_real;  // [B, T] with a window and a mask, else nullptr
  size_t T, H, Hk;
  unsigned Dh;
  float scale;
  int W;  // window_arg: 0 = none
};

// Carves the dynamic shared memory of Smem<DH>.
template <int DH> struct Tiles {
  float *Q, *dO, *K, *V, *P, *dS, *L, *D;
  int *qvis, *kreal;
  __device__ explicit Tiles(float* base) {
    constexpr int kLd = Smem<DH>::kLd;
    Q = base, dO = Q + kTile * kLd, K = dO + kTile * kLd, V = K + kTile * kLd, P = V + kTile * kLd;
    dS = P + kTile * kPLd, L = dS + kTile * kPLd, D = L + kTile;
    qvis = reinterpret_cast<int*>(D + kTile), kreal = qvis + kTile;
  }
};

// Query tile of head h: Q, dO, lse, D and visibility (i < T, at or after the first real key, and a real key in its
// window).
template <int DH>
__device__ __forceinline__ void load_query_tile(const Tiles<DH>& t, const Args& a, size_t b, size_t h, size_t i0,
                                                int first) {
  const int nrows = int(a.T - i0 < size_t(kTile) ? a.T - i0 : size_t(kTile));
  const size_t qs = a.H * a.Dh, off = (b * a.T + i0) * qs + h * a.Dh;
  load_tile<DH>(t.Q, a.q + off, qs, nrows, a.Dh);
  load_tile<DH>(t.dO, a.dout + off, qs, nrows, a.Dh);
  if (threadIdx.x < kTile) {
    const int r = threadIdx.x;
    const size_t i = i0 + r;
    const bool vis = r < nrows && i >= size_t(first) &&
                     (!a.last_real || a.last_real[b * a.T + i] >= window_first(int(i), a.W));
    t.qvis[r] = vis ? 1 : 0;
    // lse is -inf (or anything) on invisible rows; those rows are never used, keep the tile finite.
    t.L[r] = vis ? a.lse[(b * a.H + h) * a.T + i] : 0.f;
    t.D[r] = vis ? a.Dv[(b * a.H + h) * a.T + i] : 0.f;
  }
}

template <int DH>
__device__ __forceinline__ void load_key_tile(const Tiles<DH>& t, const Args& a, size_t b, size_t g, size_t j0) {
  const int nrows = int(a.T - j0 < size_t(kTile) ? a.T - j0 : size_t(kTile));
  const size_t ks = a.Hk * a.Dh, off = (b * a.T + j0) * ks + g * a.Dh;
  load_tile<DH>(t.K, a.k + off, ks, nrows, a.Dh);
  load_tile<DH>(t.V, a.v + off, ks, nrows, a.Dh);
  if (threadIdx.x < kTile) {
    const int c = threadIdx.x;
    t.kreal[c] = (c < nrows && (!a.mask || a.mask[b * a.T + j0 + c])) ? 1 : 0;
  }
}

// dK/dV of kTile keys of KV head g: grid (key tiles, Hk, B). Thread: key c = tid / 8, dims 4·(tid % 8) + 32u + e
// (float4 u of the row, element e).
template <int DH>
__global__ void __launch_bounds__(kThreads) attn_bwd_dkdv(float* dk, float* dv, Args a) {
  extern __shared__ float smem[];
  const Tiles<DH> t(smem);
  constexpr int kLd = Smem<DH>::kLd, kU = DH / kLanesPerRow, kU4 = kU / 4;
  const size_t b = blockIdx.z, g = blockIdx.y, j0 = size_t(blockIdx.x) * kTile;
  const size_t nrep = a.H / a.Hk;
  const int first = a.first_real[b];
  const int c = threadIdx.x / kLanesPerRow, lane8 = threadIdx.x % kLanesPerRow;
  const size_t j = j0 + c;
  float accK[kU], accV[kU];
#pragma unroll
  for (int u = 0; u < kU; u++) accK[u] = 0.f, accV[u] = 0.f;
  load_key_tile<DH>(t, a, b, g, j0);
  for (size_t r = 0; r < nrep; r++) {
    const size_t h = g * nrep + r;
    // Queries before j0 cannot see these keys, nor those from j0 + kTile - 1 + W on (window); tiles entirely
    // before the first real key see nothing.
    const size_t iend = a.W && j0 + kTile - 1 + size_t(a.W) < a.T ? j0 + kTile - 1 + size_t(a.W) : a.T;
    for (size_t i0 = j0; i0 < iend; i0 += kTile) {
      if (i0 + kTile <= size_t(first)) continue;
      __syncthreads();  // the previous tile's Q/dO/P/dS are no longer read
      load_query_tile<DH>(t, a, b, h, i0, first);
      __syncthreads();
      tile_p_ds<DH>(t.P, t.dS, t.Q, t.dO, t.K, t.V, t.L, t.D, t.qvis, t.kreal, i0, j0, a.Dh, a.scale, a.W);
      __syncthreads();
      if (j < a.T) {
        for (int rr = 0; rr < kTile; rr++) {
          if (!t.qvis[rr] || j > i0 + rr || int(j) < window_first(int(i0 + rr), a.W)) continue;
          const float p = t.P[rr * kPLd + c], ds = t.dS[rr * kPLd + c];
          const float4* qrow = reinterpret_cast<const float4*>(t.Q + rr * kLd);
          const float4* grow = reinterpret_cast<const float4*>(t.dO + rr * kLd);
#pragma unroll
          for (int u = 0; u < kU4; u++) {
            const float4 gv = grow[lane8 + kLanesPerRow * u], qv = qrow[lane8 + kLanesPerRow * u];
            accV[4 * u] += p * gv.x, accV[4 * u + 1] += p * gv.y, accV[4 * u + 2] += p * gv.z, accV[4 * u + 3] += p * gv.w;
            accK[4 * u] += ds * qv.x, accK[4 * u + 1] += ds * qv.y, accK[4 * u + 2] += ds * qv.z, accK[4 * u + 3] += ds * qv.w;
          }
        }
      }
    }
  }
  if (j < a.T) {
    const size_t off = (b * a.T + j) * a.Hk * a.Dh + g * a.Dh;
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const unsigned d = unsigned(4 * (lane8 + kLanesPerRow * (u / 4)) + u % 4);
      if (d < a.Dh) {
        dk[off + d] = a.scale * accK[u];
        dv[off + d] = accV[u];
      }
    }
  }
}

// dQ of kTile queries of head h: grid (query tiles, H, B). Thread: query row rr = tid / 8, dims as in dkdv.
template <int DH>
__global__ void __launch_bounds__(kThreads) attn_bwd_dq(float* dq, Args a) {
  extern __shared__ float smem[];
  const Tiles<DH> t(smem);
  constexpr int kLd = Smem<DH>::kLd, kU = DH / kLanesPerRow, kU4 = kU / 4;
  const size_t b = blockIdx.z, h = blockIdx.y, i0 = size_t(blockIdx.x) * kTile;
  const size_t g = h / (a.H / a.Hk);
  const int first = a.first_real[b];
  const int rr = threadIdx.x / kLanesPerRow, lane8 = threadIdx.x % kLanesPerRow;
  const size_t i = i0 + rr;
  float acc[kU];
#pragma unroll
  for (int u = 0; u < kU; u++) acc[u] = 0.f;
  load_query_tile<DH>(t, a, b, h, i0, first);
  if (i0 + kTile > size_t(first)) {
    const size_t jend = i0 + kTile < a.T ? i0 + kTile : a.T;  // keys j <= i < i0 + kTile
    // key tiles from the one holding the first query's first key (window) up to the diagonal
    for (size_t j0 = size_t(window_first(int(i0), a.W)) / kTile * kTile; j0 < jend; j0 += kTile) {
      __syncthreads();  // the previous key tile and P/dS are no longer read (first pass: the query tile is loaded)
      load_key_tile<DH>(t, a, b, g, j0);
      __syncthreads();
      tile_p_ds<DH>(t.P, t.dS, t.Q, t.dO, t.K, t.V, t.L, t.D, t.qvis, t.kreal, i0, j0, a.Dh, a.scale, a.W);
      __syncthreads();
      if (t.qvis[rr]) {
        const size_t cend = i + 1 - j0 < size_t(kTile) ? i + 1 - j0 : size_t(kTile);  // j <= i (and j < T: i < T)
        const size_t lo = size_t(window_first(int(i), a.W)), cbeg = lo > j0 ? lo - j0 : 0;  // j in i's window
        for (size_t c = cbeg; c < cend; c++) {
          const float ds = t.dS[rr * kPLd + c];
          const float4* krow = reinterpret_cast<const float4*>(t.K + c * kLd);
#pragma unroll
          for (int u = 0; u < kU4; u++) {
            const float4 kv = krow[lane8 + kLanesPerRow * u];
            acc[4 * u] += ds * kv.x, acc[4 * u + 1] += ds * kv.y, acc[4 * u + 2] += ds * kv.z, acc[4 * u + 3] += ds * kv.w;
          }
        }
      }
    }
  }
  if (i < a.T) {
    const size_t off = (b * a.T + i) * a.H * a.Dh + h * a.Dh;
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const unsigned d = unsigned(4 * (lane8 + kLanesPerRow * (u / 4)) + u % 4);
      if (d < a.Dh) dq[off + d] = a.scale * acc[u];
    }
  }
}

template <int DH>
void launch(float* dq, float* dk, float* dv, const Args& a, size_t B, cudaStream_t s) {
  const size_t bytes = Smem<DH>::kBytes;
  static bool raised = false;  // per instantiation; the attribute is per kernel
  if (!raised && bytes > 48 * 1024) {
    SL_CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkdv<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    SL_CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dq<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }
  raised = true;
  const unsigned tiles = unsigned((a.T + kTile - 1) / kTile);
  attn_bwd_dkdv<DH><<<dim3(tiles, unsigned(a.Hk), unsigned(B)), kThreads, bytes, s>>>(dk, dv, a);
  SL_LAUNCH_CHECK();
  attn_bwd_dq<DH><<<dim3(tiles, unsigned(a.H), unsigned(B)), kThreads, bytes, s>>>(dq, a);
  SL_LAUNCH_CHECK();
}

}  // namespace

void attention_first_real_keys(int* first_real, const uint8_t* key_mask, size_t B, size_t T, cudaStream_t s) {
  attn_bwd_first_real<<<unsigned(B), kThreads, 0, s>>>(first_real, key_mask, T);
}

int* attention_window_scratch(int W, const uint8_t* key_mask, size_t B, size_t T, cudaStream_t s) {
  if (!W || !key_mask) return nullptr;
  int* last_real = nullptr;
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&last_real), sizeof(int) * B * T, s));
  attention_last_real_keys(last_real, key_mask, B, T, s);
  SL_LAUNCH_CHECK();
  return last_real;
}

void attention_last_real_keys(int* last_real, const uint8_t* key_mask, size_t B, size_t T, cudaStream_t s) {
  attn_bwd_last_real<<<unsigned(B), kThreads, 0, s>>>(last_real, key_mask, int(T));
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const uint8_t* key_mask, size_t B,
                        size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window, cudaStream_t s) {
  if (B == 0 || T == 0 || H == 0 || Dh == 0) return;
  if (Hk == 0 || H % Hk != 0) throw CudaError("attention_backward: H must be a multiple of Hk");
  if (Dh > 256) throw CudaError("attention_backward: head size over 256");
  if (B > 65535 || H > 65535 || T > size_t(0x7fffffff)) throw CudaError("attention_backward: shape too large");
  float* Dv = nullptr;
  int* first_real = nullptr;
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&Dv), sizeof(float) * B * H * T, s));
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&first_real), sizeof(int) * B, s));
  attn_bwd_rowdot<<<grid_for(B * T * H * 32, kThreads), kThreads, 0, s>>>(Dv, dout, out, B, T, H, unsigned(Dh));
  SL_LAUNCH_CHECK();
  attention_first_real_keys(first_real, key_mask, B, T, s);
  SL_LAUNCH_CHECK();
  const int W = window_arg(window, T);
  int* last_real = attention_window_scratch(W, key_mask, B, T, s);
  const Args a{dout, q, k, v, lse, Dv, key_mask, first_real, last_real, T, H, Hk, unsigned(Dh), scale, W};
  if (Dh <= 32) launch<32>(dq, dk, dv, a, B, s);
  else if (Dh <= 64) launch<64>(dq, dk, dv, a, B, s);
  else if (Dh <= 128) launch<128>(dq, dk, dv, a, B, s);
  else launch<256>(dq, dk, dv, a, B, s);
  if (last_real) SL_CUDA_CHECK(cudaFreeAsync(last_real, s));
  SL_CUDA_CHECK(cudaFreeAsync(first_real, s));
  SL_CUDA_CHECK(cudaFreeAsync(Dv, s));
}

}  // namespace cuda
}  // namespace streamline
