// The replacement training step on the GPU (see replacement.cuh): forward with saved activations, masked MSE,
// backward through the kernels of backward.cuh, and the optimiser update on f32 master weights.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "activation.cuh"
#include "attention.cuh"
#include "backward.cuh"
#include "convert.cuh"
#include "norm.cuh"
#include "replacement.cuh"
#include "rope.cuh"

namespace streamline {
namespace cuda {

namespace {

void check(bool ok, const std::string& msg) {
  if (!ok) throw CudaError("train step: " + msg);
}

__global__ void bf16_to_f32_kernel(float* y, const bf16* x, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}
__global__ void scale_kernel(float* x, float s, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) x[i] *= s;
}
// x[m, c] += bias[c]
__global__ void add_bias_kernel(float* x, const float* bias, size_t M, unsigned N) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x)
    for (unsigned c = threadIdx.x; c < N; c += blockDim.x) x[m * N + c] += bias[c];
}
// y[m, c] = a[m, c] + (b[m, c] + bias[c]): the CPU adds the bias to the product before the residual.
__global__ void residual_kernel(float* y, const float* a, const float* b, const float* bias, size_t M, unsigned N) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x)
    for (unsigned c = threadIdx.x; c < N; c += blockDim.x) {
      float t = b[m * N + c];
      if (bias) t += bias[c];
      y[m * N + c] = a[m * N + c] + t;
    }
}

// STREAMLINE_ATTN_BWD=f32 selects the f32 attention backward (comparisons); read once.
bool use_tc_attention_backward() {
  static const bool tc = [] {
    const char* e = std::getenv("STREAMLINE_ATTN_BWD");
    return !(e && std::string(e) == "f32");
  }();
  return tc;
}

// The packed q | k | v columns of one GEMM output row, for both prepare kernels: column c's bias, and the store of a
// value rounded once to bf16 into the packed row and, when q is set, its f32 copy into q, k or v (contiguous).
struct QkvPack {
  bf16* out;
  float *q, *k, *v;
  const float *qb, *kb, *vb;
  unsigned Q, KV, N;
  __device__ float bias(unsigned c) const {
    if (c < Q) return qb ? qb[c] : 0.f;
    if (c < Q + KV) return kb ? kb[c - Q] : 0.f;
    return vb ? vb[c - Q - KV] : 0.f;
  }
  __device__ void store(size_t m, unsigned c, float val) const {
    const bf16 r = __float2bfloat16_rn(val);
    out[m * N + c] = r;
    if (!q) return;
    const float rf = __bfloat162float(r);
    if (c < Q) q[m * Q + c] = rf;
    else if (c < Q + KV) k[m * KV + (c - Q)] = rf;
    else v[m * KV + (c - Q - KV)] = rf;
  }
};

// qkv_prepare_kernel with Qwen3's per-head q/k RMSNorm between the bias and RoPE (the CPU's order): one warp per head
// sums the squares of (x + bias) in f32 into rinv[H + Hk] (shared), saving those pre-norm values in pre ([M, Q] then
// [M, KV], for the norm backward); then every q/k element is w[j] * (x * rinv) (norm_rows' order), rotated, and stored
// like qkv_prepare_kernel. H + Hk floats of dynamic shared memory.
__global__ void qkv_prepare_norm_kernel(bf16* out, float* q, float* k, float* v, float* pre, const float* f,
                                        const float* qb, const float* kb, const float* vb, const float* qn,
                                        const float* kn, float eps, const float* cs, const float* sn, size_t M,
                                        unsigned H, unsigned Hk, unsigned Dh, unsigned rot) {
  extern __shared__ float rinv[];
  const unsigned Q = H * Dh, KV = Hk * Dh, N = Q + 2 * KV, half = rot / 2, nh = H + Hk;
  const QkvPack p{out, q, k, v, qb, kb, vb, Q, KV, N};
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const float* row = f + m * N;
    head_rms_inverse(rinv, nh, Dh, eps, [&](unsigned c) {
      const float x = row[c] + p.bias(c);
      if (c < Q) pre[m * Q + c] = x;  // the pre-norm values, for the norm backward
      else pre[M * Q + m * KV + (c - Q)] = x;
      return x;
    });
    __syncthreads();
    auto normed = [&](unsigned c) {
      const unsigned h = c / Dh, j = c - h * Dh;
      return (h < H ? qn[j] : kn[j]) * ((row[c] + p.bias(c)) * rinv[h]);
    };
    if (cs) {
      for (unsigned i = threadIdx.x; i < nh * half; i += blockDim.x) {
        const unsigned h = i / half, j = i - h * half, c = h * Dh + j;
        const float x1 = normed(c), x2 = normed(c + half);
        const float cc = cs[m * half + j], ss = sn[m * half + j];
        p.store(m, c, x1 * cc - x2 * ss);
        p.store(m, c + half, x2 * cc + x1 * ss);
      }
      // partial RoPE (Phi-4-mini): the dims past rot in each head are normed but not rotated
      const unsigned pass = Dh - rot;
      for (unsigned i = threadIdx.x; i < nh * pass; i += blockDim.x) {
        const unsigned h = i / pass, c = h * Dh + rot + (i - h * pass);
        p.store(m, c, normed(c));
      }
      for (unsigned c = Q + KV + threadIdx.x; c < N; c += blockDim.x) p.store(m, c, row[c] + p.bias(c));
    } else {
      for (unsigned c = threadIdx.x; c < N; c += blockDim.x) p.store(m, c, c < Q + KV ? normed(c) : row[c] + p.bias(c));
    }
    __syncthreads();  // rinv[] is reused by the next row
  }
}

// One packed GEMM output row qkv_f[M, Q + 2KV] (f32) -> bias, rotate-half RoPE on q and k heads in f32, one rounding to
// bf16: the packed bf16 row for the attention kernels and, when q is not null, f32 copies of the same rounded values
// (q, k, v contiguous) for the f32 attention_backward.
__global__ void qkv_prepare_kernel(bf16* out, float* q, float* k, float* v, const float* f, const float* qb,
                                   const float* kb, const float* vb, const float* cs, const float* sn, size_t M,
                                   unsigned H, unsigned Hk, unsigned Dh, unsigned rot) {
  const unsigned Q = H * Dh, KV = Hk * Dh, N = Q + 2 * KV, half = rot / 2;
  const QkvPack p{out, q, k, v, qb, kb, vb, Q, KV, N};
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const float* row = f + m * N;
    if (cs) {
      for (unsigned i = threadIdx.x; i < (H + Hk) * half; i += blockDim.x) {
        const unsigned h = i / half, j = i - h * half, c = h * Dh + j;
        const float x1 = row[c] + p.bias(c), x2 = row[c + half] + p.bias(c + half);
        const float cc = cs[m * half + j], ss = sn[m * half + j];
        p.store(m, c, x1 * cc - x2 * ss);
        p.store(m, c + half, x2 * cc + x1 * ss);
      }
      // partial RoPE: q/k dims past rot keep their biased values; v is never rotated
      const unsigned pass = Dh - rot;
      for (unsigned i = threadIdx.x; i < (H + Hk) * pass; i += blockDim.x) {
        const unsigned h = i / pass, c = h * Dh + rot + (i - h * pass);
        p.store(m, c, row[c] + p.bias(c));
      }
      for (unsigned c = Q + KV + threadIdx.x; c < N; c += blockDim.x) p.store(m, c, row[c] + p.bias(c));
    } else {
      for (unsigned c = threadIdx.x; c < N; c += blockDim.x) p.store(m, c, row[c] + p.bias(c));
    }
  }
}

// dst[m, :] = bf16([a[m, 0:wa], b[m, 0:wb], c[m, 0:wc]]) (b, c may be absent with width 0).
__global__ void pack_bf16_kernel(bf16* dst, const float* a, unsigned wa, const float* b, unsigned wb, const float* c,
                                 unsigned wc, size_t M) {
  const unsigned W = wa + wb + wc;
  for (size_t m = blockIdx.x; m < M; m += gridDim.x)
    for (unsigned i = threadIdx.x; i < W; i += blockDim.x) {
      float val = i < wa ? a[m * wa + i] : i < wa + wb ? b[m * wb + (i - wa)] : c[m * wc + (i - wa - wb)];
      dst[m * W + i] = __float2bfloat16_rn(val);
    }
}

// db[n] += sum_m x[m, n]: 32 columns per block (coalesced rows), 8 row groups summed in f64, partials added in a fixed
// order, so the result does not depend on timing.
constexpr int kColThreads = 256, kCols = 32, kRowGroups = kColThreads / kCols;
__global__ void colsum_add_kernel(float* db, const float* x, size_t M, size_t N) {
  __shared__ double part[kRowGroups][kCols];
  const unsigned cx = threadIdx.x % kCols, ry = threadIdx.x / kCols;
  const size_t n = size_t(blockIdx.x) * kCols + cx;
  double acc = 0;
  if (n < N)
    for (size_t m = ry; m < M; m += kRowGroups) acc += double(x[m * N + n]);
  part[ry][cx] = acc;
  __syncthreads();
  if (ry == 0 && n < N) {
    double s = 0;
    for (int r = 0; r < kRowGroups; r++) s += part[r][cx];
    db[n] += float(s);
  }
}

int rows_grid(size_t M) { return int(M < 65535 ? M : 65535); }

void colsum_add(float* db, const float* x, size_t M, size_t N, cudaStream_t s) {
  if (!db || !M || !N) return;
  colsum_add_kernel<<<unsigned((N + kCols - 1) / kCols), kColThreads, 0, s>>>(db, x, M, N);
  SL_LAUNCH_CHECK();
}

constexpr size_t kAlign = 64;  // f32 elements: 256 bytes, the alignment cuBLASLt's heuristics assume by default
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
// Tokens with key_mask = 1 among M (all M without a mask): a batch with none has nothing to learn.
size_t real_tokens(const uint8_t* key_mask, size_t M) {
  if (!key_mask) return M;
  size_t real = 0;
  for (size_t m = 0; m < M; m++) real += key_mask[m] ? 1 : 0;
  return real;
}

}  // namespace

const char* train_role_name(int role) {
  static const char* const names[kAllTrainRoles] = {
      "attn_norm.weight", "attn_norm.bias", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
      "o.weight", "o.bias", "mlp_norm.weight", "mlp_norm.bias", "gate.weight", "up.weight", "up.bias",
      "down.weight", "down.bias", "q_norm.weight", "k_norm.weight", "post_attn_norm.weight", "post_mlp_norm.weight"};
  return role >= 0 && role < kAllTrainRoles ? names[role] : "?";
}

void train_role_shape(const ReplacementSpec& s, int role, size_t* rows, size_t* cols) {
  const size_t Q = s.H * s.Dh, KV = s.Hk * s.Dh;
  size_t r = s.D, c = 1;
  switch (role) {
    case kRoleQW: r = Q, c = s.D; break;
    case kRoleQB: r = Q; break;
    case kRoleKW: case kRoleVW: r = KV, c = s.D; break;
    case kRoleKB: case kRoleVB: r = KV; break;
    case kRoleOW: r = s.D, c = Q; break;
    case kRoleGateW: case kRoleUpW: r = s.F, c = s.D; break;
    case kRoleUpB: r = s.F; break;
    case kRoleDownW: r = s.D, c = s.F; break;
    case kRoleQNormW: case kRoleKNormW: r = s.Dh; break;
    default: break;  // norms, o.bias, down.bias: [D]
  }
  *rows = r;
  *cols = c;
}

void* TrainStep::alloc(size_t bytes) {
  void* p = device_alloc(bytes);
  allocs_.emplace_back(p, bytes);
  bytes_ += bytes;
  return p;
}

void TrainStep::release() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (copy_) cudaStreamSynchronize(copy_);
  tail_.reset();
  for (auto& a : allocs_) device_free(a.first, a.second);
  allocs_.clear();
  for (int i = 0; i < 2; i++) {
    if (pinned_[i]) cudaFreeHost(pinned_[i]);
    pinned_[i] = nullptr;
    if (staging_free_[i]) cudaEventDestroy(staging_free_[i]);
    staging_free_[i] = nullptr;
    if (in_[i].copied) cudaEventDestroy(in_[i].copied);
    if (in_[i].consumed) cudaEventDestroy(in_[i].consumed);
    in_[i].copied = in_[i].consumed = nullptr;
  }
  if (copy_) cudaStreamDestroy(copy_);
  copy_ = nullptr;
  if (stream_) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

TrainStep::~TrainStep() { release(); }

TrainStep::TrainStep(ReplacementKind kind, const ReplacementSpec& spec,
                     const std::array<const float*, kTrainRoles>& params, const float* inv_freq, bool use_cublaslt)
    : kind_(kind), s_(spec), gemm_(use_cublaslt) {
  const ReplacementSpec& s = s_;
  const bool layer = kind == ReplacementKind::Layer;
  check(kind == ReplacementKind::MLP || layer, "kind must be mlp (0) or layer (1)");
  check(s.B > 0 && s.T > 0 && s.D > 0 && s.F > 0, "empty dimension in the spec");
  if (layer) {
    check(s.H > 0 && s.Hk > 0 && s.Dh > 0 && s.H % s.Hk == 0, "heads must be a positive multiple of kv_heads");
    check(!s.use_rope || (s.Dh % 2 == 0 && inv_freq), "RoPE needs an even head_dim and inv_freq");
  }
  check(s.rotary % 2 == 0 && s.rotary <= s.Dh, "rotary dims must be even and <= head_dim");
  rope_ = layer && s.use_rope;
  // the CPU step's spec field, so a caller of both passes the window once (set_windows may change it later)
  check(layer || s.window == 0, "an mlp replacement has no attention window (spec.window must be 0)");
  window_ = s.window;
  if (s.use_rope && inv_freq && s.Dh % 2 == 0) inv_freq_host_.assign(inv_freq, inv_freq + rot() / 2);
  Q_ = s.H * s.Dh;
  KV_ = s.Hk * s.Dh;
  Nqkv_ = Q_ + 2 * KV_;
  const size_t M = s.B * s.T, D = s.D, F = s.F;

  // The MLP kind reads only the MLP's roles (attention entries are ignored, as on the CPU); gate.weight only when gated.
  auto used = [&](int r) {
    if (r == kRoleGateW) return s.gated;
    if (r == kRoleMlpNormW || r == kRoleMlpNormB || r == kRoleUpW || r == kRoleUpB || r == kRoleDownW || r == kRoleDownB)
      return true;
    return layer;
  };
  for (int r : {kRoleUpW, kRoleDownW}) check(params[r] != nullptr, std::string(train_role_name(r)) + " is required");
  if (s.gated) check(params[kRoleGateW] != nullptr, "gate.weight is required for a gated MLP");
  else check(params[kRoleGateW] == nullptr, "gate.weight is given but the MLP is not gated");
  if (layer)
    for (int r : {kRoleQW, kRoleKW, kRoleVW, kRoleOW}) check(params[r] != nullptr, std::string(train_role_name(r)) + " is required");
  check(s.layer_norm || (params[kRoleMlpNormB] == nullptr && (!layer || params[kRoleAttnNormB] == nullptr)),
        "a norm bias needs LayerNorm");

  // Layout: groups in this order, each starting 256-byte aligned; q/k/v weights (and biases) contiguous.
  const std::vector<std::vector<int>> groups = {
      {kRoleQW, kRoleKW, kRoleVW}, {kRoleQB, kRoleKB, kRoleVB}, {kRoleOW}, {kRoleOB}, {kRoleAttnNormW},
      {kRoleAttnNormB}, {kRoleGateW}, {kRoleUpW}, {kRoleUpB}, {kRoleDownW}, {kRoleDownB}, {kRoleMlpNormW},
      {kRoleMlpNormB}, {kRoleQNormW, kRoleKNormW}, {kRolePostAttnNormW, kRolePostMlpNormW}};
  size_t off = 0;
  for (const auto& grp : groups) {
    off = align_up(off);
    for (int r : grp) {
      size_t rows = 0, cols = 0;
      train_role_shape(s, r, &rows, &cols);
      off_[r] = off;
      // q/k and post norms: room kept for set_qk_norm / set_post_norm (zeros, inert in AdamW and clipping until then)
      if (r >= kTrainRoles) {
        numel_[r] = 0;
        off += layer || r == kRolePostMlpNormW ? rows * cols : 0;
        continue;
      }
      numel_[r] = used(r) && params[r] ? rows * cols : 0;
      off += numel_[r];
    }
  }
  total_ = align_up(off);
  // A partial set of q/k/v biases keeps the packed offsets: absent ones are simply not read.

  try {
    SL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    params_ = static_cast<float*>(alloc(total_ * 4));
    grads_ = static_cast<float*>(alloc(total_ * 4));
    m_ = static_cast<float*>(alloc(total_ * 4));
    v_ = static_cast<float*>(alloc(total_ * 4));
    for (float* b : {params_, grads_, m_, v_}) SL_CUDA_CHECK(cudaMemsetAsync(b, 0, total_ * 4, stream_));
    for (int r = 0; r < kTrainRoles; r++)
      if (numel_[r])
        SL_CUDA_CHECK(cudaMemcpyAsync(params_ + off_[r], params[r], numel_[r] * 4, cudaMemcpyHostToDevice, stream_));
    if (layer) {
      wqkv_ = static_cast<bf16*>(alloc(Nqkv_ * D * 2));
      wo_ = static_cast<bf16*>(alloc(D * Q_ * 2));
    }
    if (s.gated) wgate_ = static_cast<bf16*>(alloc(F * D * 2));
    wup_ = static_cast<bf16*>(alloc(F * D * 2));
    wdown_ = static_cast<bf16*>(alloc(D * F * 2));

    x_ = static_cast<float*>(alloc(M * D * 4));
    target_ = static_cast<float*>(alloc(M * D * 4));
    mask_ = static_cast<uint8_t*>(alloc(M));
    pos_ = static_cast<int32_t*>(alloc(M * 4));
    in_[0].x = x_, in_[0].target = target_, in_[0].pos = pos_, in_[0].mask = mask_;
    in_[0].tg = static_cast<int32_t*>(alloc(M * 4));
    for (InputSlot& sl : in_) {
      SL_CUDA_CHECK(cudaEventCreateWithFlags(&sl.copied, cudaEventDisableTiming));
      SL_CUDA_CHECK(cudaEventCreateWithFlags(&sl.consumed, cudaEventDisableTiming));
    }
    n2_bf_ = static_cast<bf16*>(alloc(M * D * 2));
    mid_bf_ = static_cast<bf16*>(alloc(M * F * 2));
    if (s.gated) gate_ = static_cast<float*>(alloc(M * F * 4));
    up_ = static_cast<float*>(alloc(M * F * 4));
    t_ = static_cast<float*>(alloc(M * D * 4));
    y_ = static_cast<float*>(alloc(M * D * 4));
    dy_ = static_cast<float*>(alloc(M * D * 4));
    dy_bf_ = static_cast<bf16*>(alloc(M * D * 2));
    dmid_ = static_cast<float*>(alloc(M * F * 4));
    if (s.gated) dgate_bf_ = static_cast<bf16*>(alloc(M * F * 2));
    // The MLP backward writes d(up) in f32 only for the up bias's gradient (a frozen layer's bias has none).
    if (numel_[kRoleUpB]) dup_ = static_cast<float*>(alloc(M * F * 4));
    dup_bf_ = static_cast<bf16*>(alloc(M * F * 2));
    dn_ = static_cast<float*>(alloc(M * D * 4));
    loss_ = static_cast<double*>(alloc(sizeof(double)));
    sumsq_ = static_cast<double*>(alloc(sizeof(double)));
    eval_loss_ = static_cast<double*>(alloc(s.B * sizeof(double)));
    if (layer) alloc_layer_buffers();
    refresh_bf16();
    SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  } catch (...) {
    release();
    throw;
  }
}

void TrainStep::alloc_layer_buffers() {
  if (layer_buffers_) return;
  const ReplacementSpec& s = s_;
  const size_t M = s.B * s.T, D = s.D;
  a_bf_ = static_cast<bf16*>(alloc(M * D * 2));
  qkv_f_ = static_cast<float*>(alloc(M * Nqkv_ * 4));  // also dq | dk | dv in the backward
  qkv_bf_ = static_cast<bf16*>(alloc(M * Nqkv_ * 2));
  // The tensor-core attention backward reads the bf16 rows the forward read; only the f32 kernel needs f32 copies
  // of q/k/v and O (0.67 GB at the 8B shape).
  attn_tc_ = use_tc_attention_backward() && s.Dh % 16 == 0 && s.Dh <= 128;
  if (!attn_tc_) {
    q_ = static_cast<float*>(alloc(M * Q_ * 4));
    k_ = static_cast<float*>(alloc(M * KV_ * 4));
    v_act_ = static_cast<float*>(alloc(M * KV_ * 4));
    attn_ = static_cast<float*>(alloc(M * Q_ * 4));
  }
  attn_bf_ = static_cast<bf16*>(alloc(M * Q_ * 2));
  lse_ = static_cast<float*>(alloc(s.B * s.H * s.T * 4));
  h1_ = static_cast<float*>(alloc(M * D * 4));
  dh_ = static_cast<float*>(alloc(M * D * 4));
  dattn_ = static_cast<float*>(alloc(M * Q_ * 4));
  dqkv_bf_ = static_cast<bf16*>(alloc(M * Nqkv_ * 2));
  if (s.use_rope) {
    // sized for whole heads, so set_rotary_dim can narrow the rotation later without reallocating
    const size_t half = s.Dh / 2;
    inv_freq_ = static_cast<float*>(alloc(half * 4));
    cos_ = static_cast<float*>(alloc(M * half * 4));
    sin_ = static_cast<float*>(alloc(M * half * 4));
    SL_CUDA_CHECK(cudaMemcpyAsync(inv_freq_, inv_freq_host_.data(), inv_freq_host_.size() * 4, cudaMemcpyHostToDevice,
                                  stream_));
  }
  layer_buffers_ = true;
}

void TrainStep::refresh_bf16() {
  const size_t D = s_.D, F = s_.F;
  if (wqkv_) cast_bf16(wqkv_, params_ + off_[kRoleQW], Nqkv_ * D, stream_);
  if (wo_) cast_bf16(wo_, params_ + off_[kRoleOW], D * Q_, stream_);
  if (wgate_) cast_bf16(wgate_, params_ + off_[kRoleGateW], F * D, stream_);
  cast_bf16(wup_, params_ + off_[kRoleUpW], F * D, stream_);
  cast_bf16(wdown_, params_ + off_[kRoleDownW], D * F, stream_);
}

TrainStep::LayerDev TrainStep::own_weights() const {
  LayerDev w;
  for (int r = 0; r < kAllTrainRoles; r++) w.vec[r] = p(r);
  w.wqkv = wqkv_, w.wo = wo_, w.wgate = wgate_, w.wup = wup_, w.wdown = wdown_;
  w.window = window_;
  return w;
}

TrainStep::RopeDev TrainStep::rope_of(const LayerDev& w) const {
  if (w.rope < 0) return RopeDev{inv_freq_, s_.rope_attention_scaling, cos_, sin_};
  check(tail_ != nullptr && size_t(w.rope) < tail_->ropes.size(), "a frozen layer's RoPE table is missing");
  return tail_->ropes[size_t(w.rope)];
}

void TrainStep::forward(const LayerDev& w, ReplacementKind kind, const float* x, const int32_t* positions,
                        const uint8_t* mask, size_t B, float* out) {
  const ReplacementSpec& s = s_;
  cudaStream_t st = stream_;
  const size_t M = B * s.T, D = s.D, F = s.F;
  const NormKind nk = s.layer_norm ? NormKind::Layer : NormKind::RMS;
  const float* mlp_in = x;
  if (kind == ReplacementKind::Layer) {
    norm_rows(nk, nullptr, a_bf_, nullptr, x, nullptr, nullptr, w.vec[kRoleAttnNormW], w.vec[kRoleAttnNormB],
              DType::F32, M, D, s.norm_eps, st);
    gemm_.run(qkv_f_, DType::F32, a_bf_, w.wqkv, M, Nqkv_, D, 0.f, st);
    const RopeDev rp = s.use_rope ? rope_of(w) : RopeDev{};
    if (s.use_rope) rope_tables(rp.cos, rp.sin, positions, rp.inv_freq, M, rot() / 2, rp.scaling, st);
    if (w.vec[kRoleQNormW]) {
      check(qk_pre_ != nullptr, "q/k norm buffers missing");
      qkv_prepare_norm_kernel<<<rows_grid(M), 256, (s.H + s.Hk) * sizeof(float), st>>>(
          qkv_bf_, q_, k_, v_act_, qk_pre_, qkv_f_, w.vec[kRoleQB], w.vec[kRoleKB], w.vec[kRoleVB], w.vec[kRoleQNormW],
          w.vec[kRoleKNormW], s.norm_eps, rp.cos, rp.sin, M, unsigned(s.H),
          unsigned(s.Hk), unsigned(s.Dh), unsigned(rot()));
    } else {
      qkv_prepare_kernel<<<rows_grid(M), 256, 0, st>>>(qkv_bf_, q_, k_, v_act_, qkv_f_, w.vec[kRoleQB], w.vec[kRoleKB],
                                                       w.vec[kRoleVB], rp.cos, rp.sin, M, unsigned(s.H), unsigned(s.Hk),
                                                       unsigned(s.Dh), unsigned(rot()));
    }
    SL_LAUNCH_CHECK();
    attention_forward_bf16(attn_bf_, Q_, lse_, qkv_bf_, Nqkv_, qkv_bf_ + Q_, qkv_bf_ + Q_ + KV_, Nqkv_, mask, B, s.T,
                           s.H, s.Hk, s.Dh, s.attn_scale, w.window, st);
    if (attn_) {
      bf16_to_f32_kernel<<<grid_for(M * Q_, 256), 256, 0, st>>>(attn_, attn_bf_, M * Q_);
      SL_LAUNCH_CHECK();
    }
    gemm_.run(t_, DType::F32, attn_bf_, w.wo, M, D, Q_, 0.f, st);
    if (w.vec[kRolePostAttnNormW]) {
      // h1 = x + pn1(o + o.bias), o + o.bias kept for the backward; n2 = norm(h1)
      check(opre_ != nullptr, "post norm buffers missing");
      post_norm_rows(nk, n2_bf_, h1_, x, t_, w.vec[kRoleOB], opre_, w.vec[kRolePostAttnNormW], w.vec[kRoleMlpNormW],
                     w.vec[kRoleMlpNormB], M, D, s.norm_eps, st);
    } else {
      // h1 = x + (o + o.bias); n2 = norm(h1) as the MLP's bf16 GEMM input
      norm_rows(nk, nullptr, n2_bf_, h1_, x, t_, w.vec[kRoleOB], w.vec[kRoleMlpNormW], w.vec[kRoleMlpNormB],
                DType::F32, M, D, s.norm_eps, st);
    }
    mlp_in = h1_;
  } else {
    norm_rows(nk, nullptr, n2_bf_, nullptr, x, nullptr, nullptr, w.vec[kRoleMlpNormW], w.vec[kRoleMlpNormB],
              DType::F32, M, D, s.norm_eps, st);
  }
  // MLP: up (+ bias) and gate in f32 (saved for the backward), the hidden activation in f32 with the contract
  // kernels' formulas (the CPU's), rounded once to bf16 for the down GEMM in the same pass.
  gemm_.run(up_, DType::F32, n2_bf_, w.wup, M, F, D, 0.f, st);
  if (w.vec[kRoleUpB]) {
    add_bias_kernel<<<rows_grid(M), 256, 0, st>>>(up_, w.vec[kRoleUpB], M, unsigned(F));
    SL_LAUNCH_CHECK();
  }
  if (s.gated) gemm_.run(gate_, DType::F32, n2_bf_, w.wgate, M, F, D, 0.f, st);
  mlp_hidden_bf16(mid_bf_, s.gated ? gate_ : nullptr, up_, M * F, s.act, st);
  gemm_.run(t_, DType::F32, mid_bf_, w.wdown, M, D, F, 0.f, st);
  if (w.vec[kRolePostMlpNormW]) {
    check(mpre_ != nullptr, "post norm buffers missing");
    post_norm_rows(nk, nullptr, out, mlp_in, t_, w.vec[kRoleDownB], mpre_, w.vec[kRolePostMlpNormW], nullptr, nullptr,
                   M, D, s.norm_eps, st);
    return;
  }
  residual_kernel<<<rows_grid(M), 256, 0, st>>>(out, mlp_in, t_, w.vec[kRoleDownB], M, unsigned(D));
  SL_LAUNCH_CHECK();
}

namespace {
// dL/d(pre) of r = x + pn(pre) (weight w only; the residual path is the caller's): into dpre (zeroed here, the
// kernels add), dw += the weight's gradient when given.
void post_norm_backward(float* dpre, float* dw, const float* dy, const float* pre, const float* w, bool layer_norm,
                        size_t M, size_t D, float eps, cudaStream_t st) {
  SL_CUDA_CHECK(cudaMemsetAsync(dpre, 0, M * D * 4, st));
  if (layer_norm) layernorm_backward(dpre, dw, nullptr, dy, pre, w, M, D, eps, st);
  else rmsnorm_backward(dpre, dw, dy, pre, w, M, D, eps, st);
}
}  // namespace

// The MLP block's backward for upstream dy: parameter gradients when trainable; dx_accum (optional) += the gradient
// reaching x_in through the norm (the layer's residual path).
void TrainStep::mlp_backward(const LayerDev& w, bool trainable, const float* dy, const float* x_in, float* dx_accum,
                             size_t M) {
  const ReplacementSpec& s = s_;
  cudaStream_t st = stream_;
  const size_t D = s.D, F = s.F;
  auto gr = [&](int r) { return trainable ? g(r) : nullptr; };
  if (w.vec[kRolePostMlpNormW]) {  // dy reaches the MLP through its post norm
    post_norm_backward(dpre_, gr(kRolePostMlpNormW), dy, mpre_, w.vec[kRolePostMlpNormW], s.layer_norm, M, D,
                       s.norm_eps, st);
    dy = dpre_;
  }
  cast_bf16(dy_bf_, dy, M * D, st);
  colsum_add(gr(kRoleDownB), dy, M, D, st);
  if (trainable) gemm_.run_dw(g(kRoleDownW), dy_bf_, mid_bf_, M, D, F, st);
  gemm_.run_dx(dmid_, dy_bf_, w.wdown, M, D, F, 0.f, st);
  // d(up) in f32 only for the up bias's column sums (there is no gate bias among the trainable roles).
  float* dup_f32 = gr(kRoleUpB) ? dup_ : nullptr;
  mlp_activation_backward_bf16(dgate_bf_, dup_bf_, nullptr, dup_f32, dmid_, s.gated ? gate_ : nullptr, up_, M * F,
                               s.act, st);
  colsum_add(gr(kRoleUpB), dup_f32, M, F, st);
  if (trainable) gemm_.run_dw(g(kRoleUpW), dup_bf_, n2_bf_, M, F, D, st);
  gemm_.run_dx(dn_, dup_bf_, w.wup, M, F, D, 0.f, st);
  if (s.gated) {
    if (trainable) gemm_.run_dw(g(kRoleGateW), dgate_bf_, n2_bf_, M, F, D, st);
    gemm_.run_dx(dn_, dgate_bf_, w.wgate, M, F, D, 1.f, st);
  }
  if (s.layer_norm)
    layernorm_backward(dx_accum, gr(kRoleMlpNormW), gr(kRoleMlpNormB), dn_, x_in, w.vec[kRoleMlpNormW], M, D,
                       s.norm_eps, st);
  else
    rmsnorm_backward(dx_accum, gr(kRoleMlpNormW), dn_, x_in, w.vec[kRoleMlpNormW], M, D, s.norm_eps, st);
}

void TrainStep::backward(const LayerDev& w, ReplacementKind kind, bool trainable, const float* x, const uint8_t* mask,
                         size_t B) {
  const ReplacementSpec& s = s_;
  cudaStream_t st = stream_;
  const size_t M = B * s.T, D = s.D;
  auto gr = [&](int r) { return trainable ? g(r) : nullptr; };
  if (kind == ReplacementKind::MLP) {
    mlp_backward(w, trainable, dy_, x, nullptr, M);
    return;
  }
  // dL/dh1 = dy (residual) + the MLP path through its norm
  SL_CUDA_CHECK(cudaMemcpyAsync(dh_, dy_, M * D * 4, cudaMemcpyDeviceToDevice, st));
  mlp_backward(w, trainable, dy_, h1_, dh_, M);

  // The o projection's upstream gradient: dL/dh1, through the post norm when there is one (dpre_ is free again: the
  // MLP backward has consumed it); dh_ keeps the residual path to x.
  const float* dout = dh_;
  if (w.vec[kRolePostAttnNormW]) {
    post_norm_backward(dpre_, gr(kRolePostAttnNormW), dh_, opre_, w.vec[kRolePostAttnNormW], s.layer_norm, M, D,
                       s.norm_eps, st);
    dout = dpre_;
  }
  cast_bf16(dy_bf_, dout, M * D, st);  // dy_bf_ is free again: the o-projection's upstream gradient
  colsum_add(gr(kRoleOB), dout, M, D, st);
  if (trainable) gemm_.run_dw(g(kRoleOW), dy_bf_, attn_bf_, M, D, Q_, st);
  gemm_.run_dx(dattn_, dy_bf_, w.wo, M, D, Q_, 0.f, st);
  float* dq = qkv_f_;  // the forward's f32 GEMM output is dead by now
  float* dk = dq + M * Q_;
  float* dv = dk + M * KV_;
  // bf16 tensor cores on the rows the forward read (P and dS rounded to bf16 as in FA2; the packed rows are aligned
  // for it whenever Dh is a multiple of 16); the f32 kernel on f32 copies of the same rounded values for head sizes
  // it does not take, or with STREAMLINE_ATTN_BWD=f32.
  const bf16 *qb = qkv_bf_, *kb = qkv_bf_ + Q_, *vb = qkv_bf_ + Q_ + KV_;
  if (attn_tc_)
    attention_backward_tc(dq, dk, dv, dattn_, qb, Nqkv_, kb, vb, Nqkv_, attn_bf_, Q_, lse_, mask, B, s.T, s.H, s.Hk,
                          s.Dh, s.attn_scale, w.window, st);
  else
    attention_backward(dq, dk, dv, dattn_, q_, k_, v_act_, attn_, lse_, mask, B, s.T, s.H, s.Hk, s.Dh, s.attn_scale,
                       w.window, st);
  if (s.use_rope) {
    // the tables this layer's forward (or its recomputation) built: its own rope's
    const RopeDev rp = rope_of(w);
    rope_backward(dq, rp.cos, rp.sin, M, s.H, s.Dh, st, rot());
    rope_backward(dk, rp.cos, rp.sin, M, s.Hk, s.Dh, st, rot());
  }
  if (w.vec[kRoleQNormW]) {
    // Through the per-head norms: rows of Dh, the weights' gradients summed over every head row (the CPU's
    // rmsnorm_backward on [M·H, Dh] and [M·Hk, Dh]); dx lands in its own zeroed buffer (the kernel adds).
    float* dpq = dqk_pre_;
    float* dpk = dqk_pre_ + M * Q_;
    SL_CUDA_CHECK(cudaMemsetAsync(dqk_pre_, 0, M * (Q_ + KV_) * 4, st));
    rmsnorm_backward(dpq, gr(kRoleQNormW), dq, qk_pre_, w.vec[kRoleQNormW], M * s.H, s.Dh, s.norm_eps, st);
    rmsnorm_backward(dpk, gr(kRoleKNormW), dk, qk_pre_ + M * Q_, w.vec[kRoleKNormW], M * s.Hk, s.Dh, s.norm_eps, st);
    dq = dpq;
    dk = dpk;
  }
  colsum_add(gr(kRoleQB), dq, M, Q_, st);
  colsum_add(gr(kRoleKB), dk, M, KV_, st);
  colsum_add(gr(kRoleVB), dv, M, KV_, st);
  pack_bf16_kernel<<<rows_grid(M), 256, 0, st>>>(dqkv_bf_, dq, unsigned(Q_), dk, unsigned(KV_), dv, unsigned(KV_), M);
  SL_LAUNCH_CHECK();
  // q/k/v weight gradients are contiguous in grads_: one dW GEMM.
  if (trainable) gemm_.run_dw(grads_ + off_[kRoleQW], dqkv_bf_, a_bf_, M, Nqkv_, D, st);
  // A frozen layer passes dL/dx on (dh_ += the attention path through its norm); a trained one needs the norm's
  // backward only for its own parameters.
  float* dx = trainable ? nullptr : dh_;
  if (dx || gr(kRoleAttnNormW) || gr(kRoleAttnNormB)) {
    gemm_.run_dx(dn_, dqkv_bf_, w.wqkv, M, Nqkv_, D, 0.f, st);
    if (s.layer_norm)
      layernorm_backward(dx, gr(kRoleAttnNormW), gr(kRoleAttnNormB), dn_, x, w.vec[kRoleAttnNormW], M, D, s.norm_eps,
                         st);
    else
      rmsnorm_backward(dx, gr(kRoleAttnNormW), dn_, x, w.vec[kRoleAttnNormW], M, D, s.norm_eps, st);
  }
}

void TrainStep::enqueue_step(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask,
                             size_t batch, float grad_scale) {
  check(batch > 0 && batch <= s_.B, "batch must be in [1, spec.B]");
  check(!rope_ || positions, "positions are required for a layer with RoPE");
  const size_t M = batch * s_.T;
  forward(own_weights(), kind_, x, positions, key_mask, batch, y_);
  mse_forward_backward(dy_, loss_, y_, target, M, s_.D, key_mask, stream_);
  if (grad_scale != 1.f) {
    scale_kernel<<<grid_for(M * s_.D, 256), 256, 0, stream_>>>(dy_, grad_scale, M * s_.D);
    SL_LAUNCH_CHECK();
  }
  backward(own_weights(), kind_, true, x, key_mask, batch);
}

bool TrainStep::upload_batch(InputSlot& sl, const float* x, const float* target, const int32_t* positions,
                             const uint8_t* key_mask, size_t batch) {
  const size_t M = batch * s_.T, D = s_.D;
  if (key_mask) {
    if (real_tokens(key_mask, M) == 0) return false;
    SL_CUDA_CHECK(cudaMemcpyAsync(sl.mask, key_mask, M, cudaMemcpyHostToDevice, stream_));
  }
  SL_CUDA_CHECK(cudaMemcpyAsync(sl.x, x, M * D * 4, cudaMemcpyHostToDevice, stream_));
  SL_CUDA_CHECK(cudaMemcpyAsync(sl.target, target, M * D * 4, cudaMemcpyHostToDevice, stream_));
  if (positions) SL_CUDA_CHECK(cudaMemcpyAsync(sl.pos, positions, M * 4, cudaMemcpyHostToDevice, stream_));
  return true;
}

namespace {
// Returns a slot taken by take_slot() to the free pool when the call that took it ends, however it ends.
template <typename F> struct OnExit {
  F f;
  ~OnExit() { f(); }
};
template <typename F> OnExit<F> on_exit(F f) { return OnExit<F>{f}; }
}  // namespace

TrainStep::InputSlot& TrainStep::take_slot(InputSlot::State want) {
  InputSlot* sl = nullptr;
  for (InputSlot& c : in_)
    if (c.state == InputSlot::kFree) {
      sl = &c;
      break;
    }
  check(sl != nullptr, want == InputSlot::kStaging
                           ? "stage: both input slots hold batches no step_staged has finished with (step first)"
                           : "both input slots hold staged batches: run step_staged before step or eval");
  const size_t M = s_.B * s_.T, D = s_.D;
  if (!sl->x) {  // the second slot, on first need: a trainer that never prefetches does not pay for it
    sl->x = static_cast<float*>(alloc(M * D * 4));
    sl->target = static_cast<float*>(alloc(M * D * 4));
    sl->pos = static_cast<int32_t*>(alloc(M * 4));
    sl->mask = static_cast<uint8_t*>(alloc(M));
    sl->tg = static_cast<int32_t*>(alloc(M * 4));
  }
  if (want == InputSlot::kStaging && !copy_) {
    SL_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    for (int i = 0; i < 2; i++) {
      SL_CUDA_CHECK(cudaMallocHost(&pinned_[i], stage_chunk_));
      SL_CUDA_CHECK(cudaEventCreateWithFlags(&staging_free_[i], cudaEventDisableTiming));
    }
  }
  sl->state = want;
  return *sl;
}

void TrainStep::free_slot(InputSlot& sl) {
  std::lock_guard<std::mutex> lk(mu_);
  sl.state = InputSlot::kFree;
}

size_t TrainStep::pinned_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return (pinned_[0] ? stage_chunk_ : 0) + (pinned_[1] ? stage_chunk_ : 0);
}

void TrainStep::set_stage_chunk(size_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  check(!copy_, "set_stage_chunk: the staging buffers exist already (call it before the first stage)");
  check(bytes > 0, "set_stage_chunk: bytes must be positive");
  stage_chunk_ = bytes;
}

void TrainStep::stage_copy(void* dst, const void* src, size_t bytes) {
  const char* h = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  for (size_t off = 0; off < bytes; off += stage_chunk_) {
    const size_t n = bytes - off < stage_chunk_ ? bytes - off : stage_chunk_;
    const int i = next_half_;
    next_half_ ^= 1;
    SL_CUDA_CHECK(cudaEventSynchronize(staging_free_[i]));  // the DMA that last read this half has finished
    std::memcpy(pinned_[i], h + off, n);
    SL_CUDA_CHECK(cudaMemcpyAsync(d + off, pinned_[i], n, cudaMemcpyHostToDevice, copy_));
    SL_CUDA_CHECK(cudaEventRecord(staging_free_[i], copy_));
  }
}

void TrainStep::stage(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask,
                      size_t batch) {
  check(batch > 0 && batch <= s_.B, "stage: batch must be in [1, spec.B]");
  check(!rope_ || positions, "stage: positions are required for a layer with RoPE");
  stage_any({x, nullptr}, {target, nullptr}, nullptr, positions, key_mask, batch, false,
            real_tokens(key_mask, batch * s_.T));
}

void TrainStep::stage_bf16(const uint16_t* const* x_rows, const uint16_t* const* target_rows, const int32_t* positions,
                           const uint8_t* key_mask, size_t batch) {
  check(batch > 0 && batch <= s_.B, "stage_bf16: batch must be in [1, spec.B]");
  check(x_rows && target_rows, "stage_bf16: x and target rows are required");
  for (size_t b = 0; b < batch; b++)
    check(x_rows[b] && target_rows[b], "stage_bf16: sequence " + std::to_string(b) + " has no x or target rows");
  check(!rope_ || positions, "stage_bf16: positions are required for a layer with RoPE");
  stage_any({nullptr, x_rows}, {nullptr, target_rows}, nullptr, positions, key_mask, batch, false,
            real_tokens(key_mask, batch * s_.T));
}

bool TrainStep::keep_pairs(size_t blocks, bool targets, double max_fraction) {
  check(kept_n_ == 0, "keep_pairs: pairs are kept already");
  check(blocks > 0, "keep_pairs: blocks must be positive");
  check(max_fraction > 0 && max_fraction <= 1, "keep_pairs: max_fraction must be in (0, 1]");
  const size_t TD = s_.T * s_.D, M = s_.B * s_.T;
  if (blocks > (SIZE_MAX / 4) / TD) return false;  // more bytes than any device has (and than size_t counts)
  const size_t need = blocks * TD * 2 * (targets ? 2 : 1);
  std::lock_guard<std::mutex> lk(mu_);
  // The second input slot is allocated at the first stage: what it will take is not free for the pairs.
  const size_t later = in_[1].x ? 0 : M * s_.D * 8 + M * 9;
  size_t free_b = 0, total_b = 0;
  SL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (double(need + later) > max_fraction * double(free_b)) return false;
  kept_x_ = static_cast<bf16*>(alloc(blocks * TD * 2));
  if (targets) kept_target_ = static_cast<bf16*>(alloc(blocks * TD * 2));
  kept_n_ = blocks;
  kept_put_.assign(blocks, false);
  return true;
}

void TrainStep::put_pair(size_t block, const uint16_t* x, const uint16_t* target) {
  check(block < kept_n_, "put_pair: block " + std::to_string(block) + " is not among the " + std::to_string(kept_n_) +
                             " kept (keep_pairs first)");
  check(x != nullptr && (target != nullptr) == (kept_target_ != nullptr),
        kept_target_ ? "put_pair: x and target are required" : "put_pair: x only (pairs kept without targets)");
  const size_t TD = s_.T * s_.D;
  // Not cudaMemcpy: from pageable memory it may return before the DMA lands, ordered only on the legacy stream, which
  // the non-blocking streams that stage kept pairs do not wait for. Synchronised, so any stream may read them after.
  SL_CUDA_CHECK(cudaMemcpyAsync(kept_x_ + block * TD, x, TD * 2, cudaMemcpyHostToDevice, stream_));
  if (target) SL_CUDA_CHECK(cudaMemcpyAsync(kept_target_ + block * TD, target, TD * 2, cudaMemcpyHostToDevice, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  kept_put_[block] = true;
}

void TrainStep::check_kept(const int64_t* blocks, size_t batch, const char* fn) const {
  check(batch > 0 && batch <= s_.B, std::string(fn) + ": batch must be in [1, spec.B]");
  check(blocks != nullptr, std::string(fn) + ": blocks are required");
  for (size_t b = 0; b < batch; b++)
    check(blocks[b] >= 0 && size_t(blocks[b]) < kept_n_ && kept_put_[size_t(blocks[b])],
          std::string(fn) + ": block " + std::to_string(blocks[b]) + " (sequence " + std::to_string(b) +
              ") was not put (put_pair fills blocks [0, " + std::to_string(kept_n_) + "))");
}

void TrainStep::stage_kept(const int64_t* blocks, const int32_t* positions, const uint8_t* key_mask, size_t batch) {
  check_kept(blocks, batch, "stage_kept");
  check(kept_target_ != nullptr, "stage_kept: the pairs were kept without targets (stage_lm_kept takes them)");
  check(!rope_ || positions, "stage_kept: positions are required for a layer with RoPE");
  HostStates x, y;
  x.kept = y.kept = blocks;
  x.kept_base = kept_x_;
  y.kept_base = kept_target_;
  stage_any(x, y, nullptr, positions, key_mask, batch, false, real_tokens(key_mask, batch * s_.T));
}

void TrainStep::stage_states(float* dst, bf16* landing, const HostStates& h, size_t batch) {
  const size_t TD = s_.T * s_.D;
  if (h.f32) {
    stage_copy(dst, h.f32, batch * TD * 4);
    return;
  }
  if (h.kept) {  // device to device: only the widening, on the copy stream
    for (size_t b = 0; b < batch; b++)
      convert_device(dst + b * TD, DType::F32, h.kept_base + size_t(h.kept[b]) * TD, DType::BF16, TD, copy_);
    return;
  }
  for (size_t b = 0; b < batch; b++) stage_copy(landing + b * TD, h.bf16_rows[b], TD * 2);
  convert_device(dst, DType::F32, landing, DType::BF16, batch * TD, copy_);
}

void TrainStep::stage_any(HostStates x, HostStates target, const int32_t* tg, const int32_t* positions,
                          const uint8_t* key_mask, size_t batch, bool lm, size_t count) {
  const size_t M = batch * s_.T, D = s_.D, Mmax = s_.B * s_.T;
  InputSlot* sl;
  {
    std::lock_guard<std::mutex> lk(mu_);
    sl = &take_slot(InputSlot::kStaging);
    // The bf16 landing zones on a slot's first bf16 stage (under mu_, like every lazy allocation). If this throws the
    // slot goes back: its state is still kStaging, which only this call can change.
    try {
      if (x.bf16_rows && !sl->x16) sl->x16 = static_cast<bf16*>(alloc(Mmax * D * 2));
      if (target.bf16_rows && !sl->target16) sl->target16 = static_cast<bf16*>(alloc(Mmax * D * 2));
    } catch (...) {
      sl->state = InputSlot::kFree;
      throw;
    }
  }
  bool ok = false;
  auto done = on_exit([&] {
    // A failed stage may have left DMA into the slot in flight: let it land before the slot is handed out again.
    if (!ok) cudaStreamSynchronize(copy_);
    std::lock_guard<std::mutex> lk(mu_);
    if (ok) sl->seq = next_seq_++;
    sl->state = ok ? InputSlot::kStaged : InputSlot::kFree;
  });
  sl->batch = batch;
  sl->has_pos = positions != nullptr;
  sl->has_mask = key_mask != nullptr;
  sl->lm = lm;
  sl->count = count;
  sl->empty = count == 0;  // step() returns 0 without touching the GPU; step_staged does the same
  if (!sl->empty) {
    // The step that last read this slot (on stream_) must be done before the copy engine overwrites it.
    SL_CUDA_CHECK(cudaStreamWaitEvent(copy_, sl->consumed, 0));
    if (key_mask) stage_copy(sl->mask, key_mask, M);
    stage_states(sl->x, sl->x16, x, batch);
    if (lm) stage_copy(sl->tg, tg, M * 4);
    else stage_states(sl->target, sl->target16, target, batch);
    if (positions) stage_copy(sl->pos, positions, M * 4);
    SL_CUDA_CHECK(cudaEventRecord(sl->copied, copy_));
  }
  ok = true;
}

TrainStep::InputSlot& TrainStep::take_staged(bool lm) {
  std::lock_guard<std::mutex> lk(mu_);
  InputSlot* sl = nullptr;
  for (InputSlot& c : in_)
    if (c.state == InputSlot::kStaged && (!sl || c.seq < sl->seq)) sl = &c;
  const char* who = lm ? "step_lm_staged" : "step_staged";
  check(sl != nullptr, std::string(who) + ": no staged batch (stage one first)");
  check(sl->lm == lm, std::string(who) + ": the oldest staged batch was staged for the " + (sl->lm ? "lm" : "mse") +
                          " loss (" + (sl->lm ? "step_lm_staged" : "step_staged") + " takes it)");
  sl->state = InputSlot::kInUse;
  return *sl;
}

double TrainStep::step_staged(float grad_scale) {
  InputSlot* sl = &take_staged(false);
  auto done = on_exit([&] { free_slot(*sl); });
  if (sl->empty) return 0.0;
  SL_CUDA_CHECK(cudaStreamWaitEvent(stream_, sl->copied, 0));
  enqueue_step(sl->x, sl->target, sl->has_pos ? sl->pos : nullptr, sl->has_mask ? sl->mask : nullptr, sl->batch,
               grad_scale);
  SL_CUDA_CHECK(cudaEventRecord(sl->consumed, stream_));
  double loss = 0;
  SL_CUDA_CHECK(cudaMemcpyAsync(&loss, loss_, sizeof loss, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return loss;
}

TrainStep::InputSlot& TrainStep::take_direct_slot(size_t batch, const int32_t* positions) {
  check(batch > 0 && batch <= s_.B, "batch must be in [1, spec.B]");
  check(!rope_ || positions, "positions are required for a layer with RoPE");
  std::lock_guard<std::mutex> lk(mu_);
  return take_slot(InputSlot::kInUse);
}

double TrainStep::step(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask,
                       size_t batch, float grad_scale) {
  InputSlot* sl = &take_direct_slot(batch, positions);
  auto done = on_exit([&] { free_slot(*sl); });
  // The CPU step: nothing to learn, no gradient.
  if (!upload_batch(*sl, x, target, positions, key_mask, batch)) return 0.0;
  enqueue_step(sl->x, sl->target, positions ? sl->pos : nullptr, key_mask ? sl->mask : nullptr, batch, grad_scale);
  double loss = 0;
  SL_CUDA_CHECK(cudaMemcpyAsync(&loss, loss_, sizeof loss, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return loss;
}

void TrainStep::eval(const float* x, const float* target, const int32_t* positions, const uint8_t* key_mask,
                     size_t batch, double* losses) {
  InputSlot* sl = &take_direct_slot(batch, positions);
  auto done = on_exit([&] { free_slot(*sl); });
  if (!upload_batch(*sl, x, target, positions, key_mask, batch)) {
    for (size_t b = 0; b < batch; b++) losses[b] = 0.0;
    return;
  }
  const size_t T = s_.T, D = s_.D;
  const uint8_t* mask = key_mask ? sl->mask : nullptr;
  forward(own_weights(), kind_, sl->x, positions ? sl->pos : nullptr, mask, batch, y_);
  // One reduction per sequence over its own rows: the value replacement_loss gives that sequence run alone (up to the
  // GPU's rounding), which is what the CPU validation averages. No dy: da = nullptr.
  for (size_t b = 0; b < batch; b++)
    mse_forward_backward(nullptr, eval_loss_ + b, y_ + b * T * D, sl->target + b * T * D, T, D,
                         mask ? mask + b * T : nullptr, stream_);
  SL_CUDA_CHECK(cudaMemcpyAsync(losses, eval_loss_, batch * sizeof(double), cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void TrainStep::enqueue_apply(const AdamWOptions& opt, double max_norm) {
  if (max_norm > 0) {
    SL_CUDA_CHECK(cudaMemsetAsync(sumsq_, 0, sizeof(double), stream_));
    grad_sumsq(sumsq_, grads_, total_, stream_);
    clip_by_global_norm(grads_, total_, sumsq_, max_norm, stream_);
  }
  adamw_update(params_, grads_, m_, v_, total_, opt, stream_);
  refresh_bf16();
  zero_grad();
}

double TrainStep::apply(const AdamWOptions& opt, double max_norm) {
  SL_CUDA_CHECK(cudaMemsetAsync(sumsq_, 0, sizeof(double), stream_));
  grad_sumsq(sumsq_, grads_, total_, stream_);
  double sumsq = 0;
  SL_CUDA_CHECK(cudaMemcpyAsync(&sumsq, sumsq_, sizeof sumsq, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const double norm = std::sqrt(sumsq);
  if (!std::isfinite(norm)) return norm;
  if (max_norm > 0) clip_by_global_norm(grads_, total_, sumsq_, max_norm, stream_);
  adamw_update(params_, grads_, m_, v_, total_, opt, stream_);
  refresh_bf16();
  zero_grad();
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return norm;
}

void TrainStep::alloc_qk_buffers() {
  if (qk_pre_) return;
  const size_t M = s_.B * s_.T;
  qk_pre_ = static_cast<float*>(alloc(M * (Q_ + KV_) * 4));
  dqk_pre_ = static_cast<float*>(alloc(M * (Q_ + KV_) * 4));
}

void TrainStep::alloc_post_buffers(bool attn) {
  const size_t M = s_.B * s_.T, D = s_.D;
  if (attn && !opre_) opre_ = static_cast<float*>(alloc(M * D * 4));
  if (dpre_) return;
  mpre_ = static_cast<float*>(alloc(M * D * 4));
  dpre_ = static_cast<float*>(alloc(M * D * 4));
}

void TrainStep::set_post_norm(const float* pa, const float* pm) {
  const bool layer = kind_ == ReplacementKind::Layer;
  check(pm != nullptr, "set_post_norm: post_mlp_norm is required");
  check(layer ? pa != nullptr : pa == nullptr, layer ? "set_post_norm: a layer replacement takes both post_attn_norm "
                                                       "and post_mlp_norm"
                                                     : "set_post_norm: an mlp replacement takes post_mlp_norm only "
                                                       "(post_attn_norm must be null: it has no attention)");
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  {
    std::lock_guard<std::mutex> lk(mu_);  // grows allocs_/bytes_, which the staging side reads under mu_
    alloc_post_buffers(layer);
  }
  for (int r : {kRolePostAttnNormW, kRolePostMlpNormW}) {
    const float* src = r == kRolePostAttnNormW ? pa : pm;
    if (!src) continue;
    const size_t o = off_[r], n = s_.D;
    SL_CUDA_CHECK(cudaMemcpyAsync(params_ + o, src, n * 4, cudaMemcpyHostToDevice, stream_));
    for (float* b : {grads_, m_, v_}) SL_CUDA_CHECK(cudaMemsetAsync(b + o, 0, n * 4, stream_));
  }
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host arrays may go as soon as this returns
  if (layer) numel_[kRolePostAttnNormW] = s_.D;
  numel_[kRolePostMlpNormW] = s_.D;
}

// Beside set_post_norm rather than in replacement_lm.cu: the frozen layers' norms are one more optional weight pair,
// uploaded like set_lm_tail_qk_norm's.
void TrainStep::set_lm_tail_post_norm(const std::vector<std::pair<HostTensor, HostTensor>>& norms) {
  check(tail_ != nullptr, "set_lm_tail_post_norm: set_lm_tail first");
  const size_t L = tail_->layers.size(), D = s_.D;
  check(norms.size() == L, "set_lm_tail_post_norm: " + std::to_string(norms.size()) +
                               " layers' norms given, the lm tail has " + std::to_string(L));
  bool any = false;
  for (size_t k = 0; k < L; k++) {
    const bool a = norms[k].first.data != nullptr, m = norms[k].second.data != nullptr;
    check(a == m, "frozen layer " + std::to_string(k) + ": post_attn_norm.weight and post_mlp_norm.weight: give both "
                  "or neither");
    any = any || a;
  }
  if (!any) return;
  {
    std::lock_guard<std::mutex> lk(mu_);  // grows allocs_/bytes_, which the staging side reads under mu_
    alloc_post_buffers(true);
  }
  upload_tail_norm_pairs(norms, D, "post_attn_norm.weight", "post_mlp_norm.weight", kRolePostAttnNormW, kRolePostMlpNormW);
}

void TrainStep::set_qk_norm(const float* qn, const float* kn) {
  check(kind_ == ReplacementKind::Layer, "set_qk_norm: q/k norms belong to a layer replacement");
  check(!s_.layer_norm, "set_qk_norm: q/k norms are RMSNorms, the layer's norm is a LayerNorm");
  check(qn && kn, "set_qk_norm: give both q_norm and k_norm");
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  alloc_qk_buffers();
  for (int r : {kRoleQNormW, kRoleKNormW}) {
    const size_t o = off_[r], n = s_.Dh;
    SL_CUDA_CHECK(cudaMemcpyAsync(params_ + o, r == kRoleQNormW ? qn : kn, n * 4, cudaMemcpyHostToDevice, stream_));
    for (float* b : {grads_, m_, v_}) SL_CUDA_CHECK(cudaMemsetAsync(b + o, 0, n * 4, stream_));
  }
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host arrays may go as soon as this returns
  numel_[kRoleQNormW] = numel_[kRoleKNormW] = s_.Dh;
}

void TrainStep::set_rotary_dim(size_t rot, const float* inv_freq) {
  check(s_.use_rope, "set_rotary_dim: the trainer was created without RoPE");
  check(s_.Dh > 0, "set_rotary_dim: the spec has no head_dim");
  check(rot > 0 && rot % 2 == 0 && rot <= s_.Dh, "set_rotary_dim: rot_dim must be even and in (0, head_dim]");
  check(inv_freq != nullptr, "set_rotary_dim: inv_freq[rot_dim / 2] is required");
  // The tail's own tables are rot/2 wide, and layers found equal to the trainer's rope follow it: both were decided
  // for the width and frequencies of that call.
  check(!tail_ || !tail_->rope_set, "set_rotary_dim: the lm tail's per-layer RoPE is set (train_set_lm_tail_rope); "
                                    "call set_rotary_dim before train_set_lm_tail");
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // a step in flight reads inv_freq_
  inv_freq_host_.assign(inv_freq, inv_freq + rot / 2);
  s_.rotary = rot;
  if (inv_freq_) {  // buffers allocated already (a layer replacement, or a tail): refresh the device copy
    SL_CUDA_CHECK(cudaMemcpyAsync(inv_freq_, inv_freq_host_.data(), rot / 2 * 4, cudaMemcpyHostToDevice, stream_));
    SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
}

void TrainStep::zero_grad() { SL_CUDA_CHECK(cudaMemsetAsync(grads_, 0, total_ * 4, stream_)); }

void TrainStep::get_param(int role, float* host) const {
  check(has(role), std::string("no parameter ") + train_role_name(role));
  SL_CUDA_CHECK(cudaMemcpyAsync(host, params_ + off_[role], numel_[role] * 4, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void TrainStep::get_grad(int role, float* host) const {
  check(has(role), std::string("no parameter ") + train_role_name(role));
  SL_CUDA_CHECK(cudaMemcpyAsync(host, grads_ + off_[role], numel_[role] * 4, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void TrainStep::get_state(int role, float* param, float* m, float* v) const {
  check(has(role), std::string("no parameter ") + train_role_name(role));
  const size_t bytes = numel_[role] * 4;
  if (param) SL_CUDA_CHECK(cudaMemcpyAsync(param, params_ + off_[role], bytes, cudaMemcpyDeviceToHost, stream_));
  if (m) SL_CUDA_CHECK(cudaMemcpyAsync(m, m_ + off_[role], bytes, cudaMemcpyDeviceToHost, stream_));
  if (v) SL_CUDA_CHECK(cudaMemcpyAsync(v, v_ + off_[role], bytes, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void TrainStep::set_state(int role, const float* param, const float* m, const float* v) {
  check(has(role), std::string("no parameter ") + train_role_name(role));
  check(param && m && v, "set_state needs the weights and both moments");
  const size_t bytes = numel_[role] * 4;
  SL_CUDA_CHECK(cudaMemcpyAsync(params_ + off_[role], param, bytes, cudaMemcpyHostToDevice, stream_));
  SL_CUDA_CHECK(cudaMemcpyAsync(m_ + off_[role], m, bytes, cudaMemcpyHostToDevice, stream_));
  SL_CUDA_CHECK(cudaMemcpyAsync(v_ + off_[role], v, bytes, cudaMemcpyHostToDevice, stream_));
  // Recasting every group rather than the role's slice keeps one code path for the packed q/k/v copy; a restore
  // happens once per run, so the extra casts do not matter.
  refresh_bf16();
  // The host buffers may be freed as soon as this returns (pageable copies are staged, but synchronising also
  // surfaces an asynchronous error here rather than in the next step).
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace cuda
}  // namespace streamline
