// Causal GQA attention backward on bf16 tensor cores (wmma 16x16x16, f32 accumulation), FlashAttention-2 style,
// for the training step (contract in backward.cuh). The f32 kernel of backward_attention.cu is its reference and the
// fallback for head sizes this one does not take (Dh not a multiple of 16, or over 128).
//
// Same maths and the same two-pass, no-atomics structure as the f32 kernel (see there), with 64 x 64 tiles:
//   1. prep: dO rounded to bf16 once into a scratch copy (the products read half the bytes, and no f32 -> bf16
//      conversion sits in the inner loops), D_i = dO_i·O_i from those rounded values and the bf16 O (so the D that
//      dS = P·(dP − D) subtracts is made of the same numbers as dP: FA2's choice), the first real key per batch row;
//   2. dK/dV: one block per (key tile, KV head, batch) looping over the group's heads and the query tiles at or
//      after its keys: S = Q K^T and dP = dO V^T on tensor cores, P and dS in registers (each accumulator element's
//      row and column found once by loading a matrix of their indices: the fragment layout is opaque but fixed),
//      rounded to bf16 into shared memory, then dV += P^T dO, dK += dS^T Q into register fragments;
//   3. dQ: one block per (query tile, head, batch), key tiles up to the diagonal: S, dP, dS as above, dQ += dS K.
// P and dS are rounded to bf16 for the products (as FA2 does); S, dP, exp, D and all sums are f32.
//
// NaN semantics: the reference's, with one difference in where an exact-zero product can meet a NaN. The reference
// multiplies query i with key j when j <= i (padding keys included, with P = dS = 0, so 0·NaN = NaN); the tile
// products here multiply every visible query with every key of the same or an earlier 64-tile (tile = index / 64),
// so j <= i becomes tile(j) <= tile(i) for those zero products:
//   a NaN element q[i][d] (visible i) also reaches dk[j][d] for the keys j > i of i's tile, dO[i][d] reaches
//   dv[j][d] for those keys, and k[j][d] reaches dq[i][d] for the visible queries i < j of j's tile.
// Everything else is the reference's exactly: invisible queries (every key up to them is padding) are zero rows in
// the tiles and get dq = 0; pairs that contribute carry NaN from S or dP to whole rows as in the reference.
//
// Sliding window (W > 0): the pairs that contribute are those of the reference, j in [i + 1 - W, i] (window_first);
// a query whose window holds no real key is invisible (zero row, dq = 0), found through last_real as in the f32
// kernel. Tile pairs no query sees are skipped: the dK/dV pass stops at query tiles i0 >= j0 + kTile - 1 + W, the
// dQ pass starts at the key tile holding the first query's first key (the same pairs). In the pairs that remain the
// zero products reach keys before a visible query's window as they reach its tile's future keys: the rule above
// holds with "j <= i" read as "the tile pair (tile(i), tile(j)) is visited".
#include <mma.h>

#include "backward.cuh"

namespace streamline {
namespace cuda {

namespace {

namespace wmma = nvcuda::wmma;
using AccFrag = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kTile = 64;  // queries and keys per tile (both; the causal bounds and NaN rule rely on it)
constexpr int kWarps = 8;  // a warp owns one 16-row strip and every other 16-column tile of its accumulator
constexpr int kThreads = kWarps * 32;

// Shared memory: Q, dO, K, V tiles (bf16, rows padded by 16 bytes so the 8 rows of a fragment load fall in
// different banks), P and dS tiles (bf16), per-row lse, D, visibility, per-key realness. Dh = 128: 87 KB, two blocks
// per multiprocessor. Every fragment pointer is 32-byte aligned (row pitches 2(DH + 8) and 144 bytes, times 16 rows).
template <int DH> struct TcSmem {
  static constexpr int ld = DH + 8;
  static constexpr int ldp = kTile + 8;
  static constexpr size_t tile = size_t(kTile) * ld * 2;
  static constexpr size_t q_off = 0, do_off = tile, k_off = 2 * tile, v_off = 3 * tile;
  static constexpr size_t p_off = 4 * tile, ds_off = p_off + size_t(kTile) * ldp * 2;
  static constexpr size_t row_off = ds_off + size_t(kTile) * ldp * 2;
  static constexpr size_t bytes = row_off + 4 * kTile * 4;
  static_assert(size_t(kTile) * ldp * 2 * 2 >= kWarps * 256 * 4, "the index matrices are staged in the P/dS tiles");
};

struct alignas(128) SmemBase {
  unsigned char b[128];
};

struct TcArgs {
  const bf16 *q, *k, *v, *dob;  // dob: dO rounded to bf16, dense [B*T, H*Dh]
  const float *lse, *Dv;
  const uint8_t* mask;
  const int* first_real;
  const int* last_real;  // [B, T] with a window and a mask, else nullptr
  size_t q_stride, kv_stride;
  int T, H, Hk;
  float scale;
  int W;  // window_arg: 0 = none
};

template <int DH> struct TcTiles {
  bf16 *Q, *dO, *K, *V, *P, *dS;
  float *L, *D;
  int *qvis, *kreal;
  __device__ explicit TcTiles(SmemBase* s) {
    using Lay = TcSmem<DH>;
    unsigned char* b = reinterpret_cast<unsigned char*>(s);
    Q = reinterpret_cast<bf16*>(b + Lay::q_off), dO = reinterpret_cast<bf16*>(b + Lay::do_off);
    K = reinterpret_cast<bf16*>(b + Lay::k_off), V = reinterpret_cast<bf16*>(b + Lay::v_off);
    P = reinterpret_cast<bf16*>(b + Lay::p_off), dS = reinterpret_cast<bf16*>(b + Lay::ds_off);
    L = reinterpret_cast<float*>(b + Lay::row_off), D = L + kTile;
    qvis = reinterpret_cast<int*>(D + kTile), kreal = qvis + kTile;
  }
};

// D_i = dO_i·O_i (f64 sum of the bf16-rounded values) into Dv [B, H, T]; dO rounded to bf16 into dob.
__global__ void tc_prep(bf16* dob, float* Dv, const float* dout, const bf16* out, size_t out_stride, size_t B,
                        size_t T, size_t H, unsigned Dh) {
  const size_t warps = size_t(gridDim.x) * (blockDim.x / 32);
  const size_t n = B * T * H;
  for (size_t row = blockIdx.x * size_t(blockDim.x / 32) + threadIdx.x / 32; row < n; row += warps) {
    const size_t h = row % H, bt = row / H, b = bt / T, t = bt % T;  // row enumerates (b, t, h) in memory order
    const bf16* o = out + bt * out_stride + h * Dh;
    const float* g = dout + row * Dh;
    bf16* gb = dob + row * Dh;
    double s = 0;
    for (unsigned d = threadIdx.x & 31; d < Dh; d += 32) {
      const bf16 r = __float2bfloat16_rn(g[d]);
      gb[d] = r;
      s += double(__bfloat162float(r)) * double(__bfloat162float(o[d]));
    }
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) Dv[(b * H + h) * T + t] = float(s);
  }
}

// dst [kTile][ld] <- rows [lo, hi) of src (row r at src + r * stride) that keep[r] allows (keep null: all), zero
// elsewhere; 16-byte vectors.
template <int DH>
__device__ __forceinline__ void load_rows(bf16* dst, const bf16* src, size_t stride, int lo, int hi,
                                          const int* keep = nullptr) {
  constexpr int ld = TcSmem<DH>::ld, kVecs = DH / 8;
  for (int e = threadIdx.x; e < kTile * kVecs; e += kThreads) {
    const int r = e / kVecs, c = (e % kVecs) * 8;
    uint4 val = {0u, 0u, 0u, 0u};
    if (r >= lo && r < hi && (!keep || keep[r])) val = *reinterpret_cast<const uint4*>(src + size_t(r) * stride + c);
    *reinterpret_cast<uint4*>(dst + r * ld + c) = val;
  }
}

// Query tile of head h: Q and dO with invisible rows (before the first real key, past T, or no real key in the
// window) zeroed, lse, D and visibility. Zero rows make an invisible query contribute nothing, as in the reference.
// Called by every thread of the block (a barrier inside when there is a window).
template <int DH>
__device__ __forceinline__ void load_query_tile(const TcTiles<DH>& t, const TcArgs& a, int b, int h, int i0, int first) {
  const int hi = a.T - i0 < kTile ? a.T - i0 : kTile, lo = first > i0 ? first - i0 : 0;
  const size_t row0 = size_t(b) * a.T + i0;
  if (threadIdx.x < kTile) {
    const int r = threadIdx.x, i = i0 + r;
    const bool vis = r >= lo && r < hi && (!a.last_real || a.last_real[row0 + r] >= window_first(i, a.W));
    t.qvis[r] = vis ? 1 : 0;
    t.L[r] = vis ? a.lse[(size_t(b) * a.H + h) * a.T + i] : 0.f;  // lse of an invisible row is -inf: never read
    t.D[r] = vis ? a.Dv[(size_t(b) * a.H + h) * a.T + i] : 0.f;
  }
  // Without last_real the visible rows are exactly [lo, hi): no need to wait for qvis (W = 0 as before).
  const int* keep = nullptr;
  if (a.last_real) {
    __syncthreads();
    keep = t.qvis;
  }
  load_rows<DH>(t.Q, a.q + row0 * a.q_stride + size_t(h) * DH, a.q_stride, lo, hi, keep);
  load_rows<DH>(t.dO, a.dob + row0 * size_t(a.H) * DH + size_t(h) * DH, size_t(a.H) * DH, lo, hi, keep);
}

// Key tile of KV head g: every key before T (padding keys too: the reference multiplies them by P = dS = 0).
template <int DH>
__device__ __forceinline__ void load_key_tile(const TcTiles<DH>& t, const TcArgs& a, int b, int g, int j0) {
  const int hi = a.T - j0 < kTile ? a.T - j0 : kTile;
  const size_t off = (size_t(b) * a.T + j0) * a.kv_stride + size_t(g) * DH;
  load_rows<DH>(t.K, a.k + off, a.kv_stride, 0, hi);
  load_rows<DH>(t.V, a.v + off, a.kv_stride, 0, hi);
  if (threadIdx.x < kTile) {
    const int c = threadIdx.x;
    t.kreal[c] = (c < hi && (!a.mask || a.mask[size_t(b) * a.T + j0 + c])) ? 1 : 0;
  }
}

// rc[e] = 16 * row + column of accumulator element e of this lane, from a 16 x 16 matrix of those values staged in
// buf (this warp's 256 floats).
__device__ __forceinline__ void element_coords(int* rc, float* buf) {
  const int lane = threadIdx.x & 31;
  for (int e = lane; e < 256; e += 32) buf[e] = float(e);
  __syncwarp();
  AccFrag f;
  wmma::load_matrix_sync(f, buf, 16, wmma::mem_row_major);
#pragma unroll
  for (int e = 0; e < AccFrag::num_elements; e++) rc[e] = int(f.x[e]);
  __syncwarp();
}

// S = Q K^T and dP = dO V^T for query strip qs and key strip ks; P and dS of the pairs that contribute (visible
// query, real key, j <= i, j in i's window; 0 for every other pair, whatever S holds), rounded to bf16 into the
// tiles (dS only when P is null).
template <int DH>
__device__ __forceinline__ void strip_p_ds(const TcTiles<DH>& t, const int* rc, int qs, int ks, int i0, int j0,
                                           float scale, int W, bool want_p) {
  constexpr int ld = TcSmem<DH>::ld, ldp = TcSmem<DH>::ldp;
  AccFrag sf, pf;
  wmma::fill_fragment(sf, 0.f);
  wmma::fill_fragment(pf, 0.f);
#pragma unroll 2
  for (int kk = 0; kk < DH / 16; kk++) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> af;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> bfr;
    wmma::load_matrix_sync(af, t.Q + qs * 16 * ld + kk * 16, ld);
    wmma::load_matrix_sync(bfr, t.K + ks * 16 * ld + kk * 16, ld);
    wmma::mma_sync(sf, af, bfr, sf);
    wmma::load_matrix_sync(af, t.dO + qs * 16 * ld + kk * 16, ld);
    wmma::load_matrix_sync(bfr, t.V + ks * 16 * ld + kk * 16, ld);
    wmma::mma_sync(pf, af, bfr, pf);
  }
#pragma unroll
  for (int e = 0; e < AccFrag::num_elements; e++) {
    const int r = qs * 16 + (rc[e] >> 4), c = ks * 16 + (rc[e] & 15);
    float p = 0.f, ds = 0.f;
    if (t.qvis[r] && t.kreal[c] && j0 + c <= i0 + r && j0 + c >= window_first(i0 + r, W)) {
      p = expf(scale * sf.x[e] - t.L[r]);
      ds = p * (pf.x[e] - t.D[r]);
    }
    if (want_p) t.P[r * ldp + c] = __float2bfloat16_rn(p);
    t.dS[r * ldp + c] = __float2bfloat16_rn(ds);
  }
}

// dK/dV of kTile keys of KV head g: grid (key tiles, Hk, B). Warp w: key strip w % 4, dims tiles ct = 2u + w / 4.
template <int DH>
__global__ void __launch_bounds__(kThreads, 2) tc_dkdv(float* dk, float* dv, TcArgs a) {
  extern __shared__ SmemBase tc_smem[];
  const TcTiles<DH> t(tc_smem);
  constexpr int ld = TcSmem<DH>::ld, ldp = TcSmem<DH>::ldp, kCt = DH / 16, kU = (kCt + 1) / 2;
  const int b = blockIdx.z, g = blockIdx.y, j0 = int(blockIdx.x) * kTile;
  const int warp = threadIdx.x / 32, kr = warp & 3, hh = warp >> 2;
  const int nrep = a.H / a.Hk, first = a.first_real[b];
  int rc[AccFrag::num_elements];
  element_coords(rc, reinterpret_cast<float*>(t.P) + warp * 256);  // P/dS are not in use yet
  AccFrag accK[kU], accV[kU];
#pragma unroll
  for (int u = 0; u < kU; u++) wmma::fill_fragment(accK[u], 0.f), wmma::fill_fragment(accV[u], 0.f);
  load_key_tile<DH>(t, a, b, g, j0);
  for (int r = 0; r < nrep; r++) {
    const int h = g * nrep + r;
    // Queries before j0 cannot see these keys, nor those from j0 + kTile - 1 + W on (window); tiles entirely
    // before the first real key see nothing.
    const int iend = a.W && j0 + kTile - 1 + a.W < a.T ? j0 + kTile - 1 + a.W : a.T;
    for (int i0 = j0; i0 < iend; i0 += kTile) {
      if (i0 + kTile <= first) continue;
      __syncthreads();  // the previous tile's Q/dO/P/dS are no longer read (first pass: index matrices read)
      load_query_tile<DH>(t, a, b, h, i0, first);
      __syncthreads();
      strip_p_ds<DH>(t, rc, 2 * hh, kr, i0, j0, a.scale, a.W, true);
      strip_p_ds<DH>(t, rc, 2 * hh + 1, kr, i0, j0, a.scale, a.W, true);
      __syncthreads();
#pragma unroll
      for (int u = 0; u < kU; u++) {
        const int ct = 2 * u + hh;
        if (ct >= kCt) break;
#pragma unroll
        for (int qs = 0; qs < 4; qs++) {
          // P^T and dS^T strips: the [query][key] tiles read column-major.
          wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> af;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> bfr;
          wmma::load_matrix_sync(af, t.P + qs * 16 * ldp + kr * 16, ldp);
          wmma::load_matrix_sync(bfr, t.dO + qs * 16 * ld + ct * 16, ld);
          wmma::mma_sync(accV[u], af, bfr, accV[u]);
          wmma::load_matrix_sync(af, t.dS + qs * 16 * ldp + kr * 16, ldp);
          wmma::load_matrix_sync(bfr, t.Q + qs * 16 * ld + ct * 16, ld);
          wmma::mma_sync(accK[u], af, bfr, accK[u]);
        }
      }
    }
  }
  const size_t kvd = size_t(a.Hk) * DH;
#pragma unroll
  for (int u = 0; u < kU; u++) {
    const int ct = 2 * u + hh;
    if (ct >= kCt) break;
#pragma unroll
    for (int e = 0; e < AccFrag::num_elements; e++) {
      const int j = j0 + kr * 16 + (rc[e] >> 4), d = ct * 16 + (rc[e] & 15);
      if (j >= a.T) continue;
      const size_t off = (size_t(b) * a.T + j) * kvd + size_t(g) * DH + d;
      dk[off] = a.scale * accK[u].x[e];
      dv[off] = accV[u].x[e];
    }
  }
}

// dQ of kTile queries of head h: grid (query tiles, H, B), latest (longest) tiles first. Warp w: query strip w % 4,
// dims tiles ct = 2u + w / 4.
template <int DH>
__global__ void __launch_bounds__(kThreads, 2) tc_dq(float* dq, TcArgs a) {
  extern __shared__ SmemBase tc_smem[];
  const TcTiles<DH> t(tc_smem);
  constexpr int ld = TcSmem<DH>::ld, ldp = TcSmem<DH>::ldp, kCt = DH / 16, kU = (kCt + 1) / 2;
  const int b = blockIdx.z, h = blockIdx.y, g = h / (a.H / a.Hk);
  const int i0 = (int(gridDim.x) - 1 - int(blockIdx.x)) * kTile;
  const int warp = threadIdx.x / 32, qs = warp & 3, hh = warp >> 2;
  const int first = a.first_real[b];
  int rc[AccFrag::num_elements];
  element_coords(rc, reinterpret_cast<float*>(t.P) + warp * 256);
  AccFrag acc[kU];
#pragma unroll
  for (int u = 0; u < kU; u++) wmma::fill_fragment(acc[u], 0.f);
  if (i0 + kTile > first) {
    load_query_tile<DH>(t, a, b, h, i0, first);
    // key tiles from the one holding the first query's first key (window) up to the diagonal one (j0 < T: i0 < T)
    for (int j0 = window_first(i0, a.W) / kTile * kTile; j0 <= i0; j0 += kTile) {
      __syncthreads();  // the previous key tile and dS are no longer read (first pass: the query tile is loaded)
      load_key_tile<DH>(t, a, b, g, j0);
      __syncthreads();
      strip_p_ds<DH>(t, rc, qs, 2 * hh, i0, j0, a.scale, a.W, false);
      strip_p_ds<DH>(t, rc, qs, 2 * hh + 1, i0, j0, a.scale, a.W, false);
      __syncthreads();
#pragma unroll
      for (int u = 0; u < kU; u++) {
        const int ct = 2 * u + hh;
        if (ct >= kCt) break;
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> af;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> bfr;
          wmma::load_matrix_sync(af, t.dS + qs * 16 * ldp + ks * 16, ldp);
          wmma::load_matrix_sync(bfr, t.K + ks * 16 * ld + ct * 16, ld);
          wmma::mma_sync(acc[u], af, bfr, acc[u]);
        }
      }
    }
  }
  const size_t hd = size_t(a.H) * DH;
#pragma unroll
  for (int u = 0; u < kU; u++) {
    const int ct = 2 * u + hh;
    if (ct >= kCt) break;
#pragma unroll
    for (int e = 0; e < AccFrag::num_elements; e++) {
      const int r = qs * 16 + (rc[e] >> 4), i = i0 + r, d = ct * 16 + (rc[e] & 15);
      if (i >= a.T) continue;
      // An invisible query gets exactly 0 (its dS row is 0, but 0·NaN from a key row must not reach it). qvis is
      // that query tile's (loaded when any row is at or after the first real key).
      const bool vis = i >= first && (!a.last_real || t.qvis[r]);
      dq[(size_t(b) * a.T + i) * hd + size_t(h) * DH + d] = vis ? a.scale * acc[u].x[e] : 0.f;
    }
  }
}

template <int DH>
void launch_tc(float* dq, float* dk, float* dv, const TcArgs& a, size_t B, cudaStream_t s) {
  const size_t bytes = TcSmem<DH>::bytes;
  static bool raised = false;  // per instantiation; the attribute is per kernel
  if (!raised) {
    SL_CUDA_CHECK(cudaFuncSetAttribute(tc_dkdv<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    SL_CUDA_CHECK(cudaFuncSetAttribute(tc_dq<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    raised = true;
  }
  const unsigned tiles = unsigned((size_t(a.T) + kTile - 1) / kTile);
  tc_dkdv<DH><<<dim3(tiles, unsigned(a.Hk), unsigned(B)), kThreads, bytes, s>>>(dk, dv, a);
  SL_LAUNCH_CHECK();
  tc_dq<DH><<<dim3(tiles, unsigned(a.H), unsigned(B)), kThreads, bytes, s>>>(dq, a);
  SL_LAUNCH_CHECK();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool attention_backward_tc_supported(size_t Dh, size_t q_stride, size_t kv_stride, size_t out_stride, const void* q,
                                     const void* k, const void* v, const void* out) {
  return Dh > 0 && Dh % 16 == 0 && Dh <= 128 && q_stride % 8 == 0 && kv_stride % 8 == 0 && out_stride % 8 == 0 &&
         aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out);
}

void attention_backward_tc(float* dq, float* dk, float* dv, const float* dout, const bf16* q, size_t q_stride,
                           const bf16* k, const bf16* v, size_t kv_stride, const bf16* out, size_t out_stride,
                           const float* lse, const uint8_t* key_mask, size_t B, size_t T, size_t H, size_t Hk,
                           size_t Dh, float scale, size_t window, cudaStream_t s) {
  if (B == 0 || T == 0 || H == 0 || Dh == 0) return;
  if (Hk == 0 || H % Hk != 0) throw CudaError("attention_backward_tc: H must be a multiple of Hk");
  if (!attention_backward_tc_supported(Dh, q_stride, kv_stride, out_stride, q, k, v, out))
    throw CudaError("attention_backward_tc: needs Dh a multiple of 16 up to 128, strides of 8 and 16-byte alignment");
  if (B > 65535 || H > 65535 || T > size_t(0x3fffffff)) throw CudaError("attention_backward_tc: shape too large");
  float* Dv = nullptr;
  int* first_real = nullptr;
  bf16* dob = nullptr;
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&Dv), sizeof(float) * B * H * T, s));
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&first_real), sizeof(int) * B, s));
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&dob), 2 * B * T * H * Dh, s));
  tc_prep<<<grid_for(B * T * H * 32, kThreads), kThreads, 0, s>>>(dob, Dv, dout, out, out_stride, B, T, H, unsigned(Dh));
  SL_LAUNCH_CHECK();
  attention_first_real_keys(first_real, key_mask, B, T, s);
  SL_LAUNCH_CHECK();
  const int W = window_arg(window, T);
  int* last_real = attention_window_scratch(W, key_mask, B, T, s);
  const TcArgs a{q,         k,         v,      dob,    lse,    Dv,     key_mask, first_real, last_real,
                 q_stride,  kv_stride, int(T), int(H), int(Hk), scale, W};
  switch (Dh) {
    case 16: launch_tc<16>(dq, dk, dv, a, B, s); break;
    case 32: launch_tc<32>(dq, dk, dv, a, B, s); break;
    case 48: launch_tc<48>(dq, dk, dv, a, B, s); break;
    case 64: launch_tc<64>(dq, dk, dv, a, B, s); break;
    case 80: launch_tc<80>(dq, dk, dv, a, B, s); break;
    case 96: launch_tc<96>(dq, dk, dv, a, B, s); break;
    case 112: launch_tc<112>(dq, dk, dv, a, B, s); break;
    default: launch_tc<128>(dq, dk, dv, a, B, s); break;
  }
  if (last_real) SL_CUDA_CHECK(cudaFreeAsync(last_real, s));
  SL_CUDA_CHECK(cudaFreeAsync(dob, s));
  SL_CUDA_CHECK(cudaFreeAsync(first_real, s));
  SL_CUDA_CHECK(cudaFreeAsync(Dv, s));
}

}  // namespace cuda
}  // namespace streamline
