// The `lm` objective on the GPU (TrainStep::set_lm_tail / step_lm / eval_lm, see replacement.cuh): the CPU's
// lm_loss_step / lm_loss_eval (native/src/train/lm_loss.cpp) with the training step's kernels. Frozen layers run
// through the same forward() and backward() as a `layer` replacement, on their own bf16/f32 weights, with no gradient
// buffers and dL/dx requested. Memory: the tail's weights (bf16), one [B*T, D] f32 hidden state per frozen layer, the
// head's chunk buffers; activations are the step's own buffers, reused layer after layer (recomputed, not stored).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "replacement.cuh"

namespace streamline {
namespace cuda {

namespace {
void check(bool ok, const std::string& msg) {
  if (!ok) throw CudaError("train lm: " + msg);
}
// The decoder layer's role (decoder_layer.cuh, with gate.bias) of a replacement role (no gate.bias).
int layer_role_of(int train_role) { return train_role <= kRoleGateW ? train_role : train_role + 1; }
}  // namespace

static_assert(int(streamline::kRoleGateW) == int(kGateW) && int(streamline::kRoleUpW) == int(kUpW) - 1 &&
                  int(streamline::kCudaTrainRoles) == int(kRoleCount) - 1,
              "the two role tables differ only by gate.bias after gate.weight");

TrainStep::Tail::~Tail() {
  head.reset();
  for (auto& a : allocs) device_free(a.first, a.second);
  for (auto& a : rope_allocs) device_free(a.first, a.second);
}

void TrainStep::set_lm_tail(const std::vector<const HostTensor*>& layers, const HostTensor& norm_w,
                            const HostTensor& norm_b, const HostTensor& lm_head, size_t vocab) {
  const ReplacementSpec& s = s_;
  const size_t L = layers.size(), M = s.B * s.T, D = s.D, F = s.F;
  check(vocab > 0, "vocab must be positive");
  if (L > 0) {
    check(s.H > 0 && s.Hk > 0 && s.Dh > 0 && s.H % s.Hk == 0,
          "frozen layers need heads, kv_heads and head_dim in the spec (heads a multiple of kv_heads)");
    check(!s.use_rope || (s.Dh % 2 == 0 && inv_freq_host_.size() == rot() / 2),
          "frozen layers with RoPE need the trainer's inv_freq (create it with host_inv_freq)");
  }
  for (size_t k = 0; k < L; k++) {
    const HostTensor* r = layers[k];
    check(r != nullptr, "frozen layer " + std::to_string(k) + " has no roles");
    check(r[kGateB].data == nullptr, "frozen layer " + std::to_string(k) +
                                         ": gate.bias (Llama mlp_bias) is not supported by the lm loss (E_UNSUPPORTED)");
    for (int role : {kQW, kKW, kVW, kOW, kUpW, kDownW})
      check(r[role].data != nullptr, "frozen layer " + std::to_string(k) + ": " + role_name(role) + " is missing");
    check(s.gated == (r[kGateW].data != nullptr), "frozen layer " + std::to_string(k) + ": gate.weight " +
                                                      (s.gated ? "is missing (gated MLP)" : "given for a non-gated MLP"));
    check(s.layer_norm || (r[kAttnNormB].data == nullptr && r[kMlpNormB].data == nullptr),
          "frozen layer " + std::to_string(k) + ": a norm bias needs LayerNorm");
  }
  // What the tail will hold, checked against free memory first: a clear message rather than an allocation failure
  // half-way through.
  const size_t per_layer = (Nqkv_ * D + D * Q_ + (s.gated ? 2 : 1) * F * D + D * F) * 2 +
                           (4 * D + Nqkv_ + D + F + D) * 4 + M * D * 4;
  const size_t chunk = std::max<size_t>(1, std::min(M, (size_t(64) << 20) / vocab));
  const size_t head_bytes = vocab * D * 2 + chunk * (D * 6 + vocab * 6) + 2 * D * 4 + (size_t(32) << 20);
  const size_t need = L * per_layer + head_bytes + M * 8 + s.B * 8;
  size_t free_b = 0, total_b = 0;
  SL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (need > free_b)
    throw CudaError("train lm: the frozen rest of the model (" + std::to_string(L) + " layers and the head) needs " +
                    std::to_string(need >> 20) + " MiB of GPU memory, " + std::to_string(free_b >> 20) +
                    " MiB are free; train --loss lm on the CPU, or move the window later");

  auto t = std::make_unique<Tail>();
  auto talloc = [&](size_t bytes) {
    void* p = device_alloc(bytes);
    t->allocs.emplace_back(p, bytes);
    t->bytes += bytes;
    return p;
  };
  // Conversion scratch, freed once the uploads are done. A failure half-way leaves uploads and conversions queued on
  // the stream: they must finish before the partial tail's memory is freed (t's destructor).
  const size_t raw_bytes = size_t(32) << 20;
  void* raw = device_alloc(raw_bytes);
  try {
    auto up = [&](DType dt, const HostTensor& src, size_t numel, size_t k, int role) -> void* {
      if (!src.data) return nullptr;
      void* d = talloc(numel * dtype_size(dt));
      const std::string what = "frozen layer " + std::to_string(k) + " " + role_name(role);
      upload_converted(d, dt, src, numel, what.c_str(), raw, raw_bytes, stream_);
      return d;
    };
    {
      // alloc_layer_buffers() grows allocs_/bytes_, which the staging side reads under mu_.
      std::lock_guard<std::mutex> lk(mu_);
      if (L > 0) alloc_layer_buffers();
    }
    for (size_t k = 0; k < L; k++) {
      const HostTensor* r = layers[k];
      LayerDev w;
      const size_t KV = KV_;
      bf16* qkv = static_cast<bf16*>(talloc(Nqkv_ * D * 2));
      upload_converted(qkv, DType::BF16, r[kQW], Q_ * D, ("frozen layer " + std::to_string(k) + " q.weight").c_str(),
                       raw, raw_bytes, stream_);
      upload_converted(qkv + Q_ * D, DType::BF16, r[kKW], KV * D,
                       ("frozen layer " + std::to_string(k) + " k.weight").c_str(), raw, raw_bytes, stream_);
      upload_converted(qkv + (Q_ + KV) * D, DType::BF16, r[kVW], KV * D,
                       ("frozen layer " + std::to_string(k) + " v.weight").c_str(), raw, raw_bytes, stream_);
      w.wqkv = qkv;
      w.wo = static_cast<const bf16*>(up(DType::BF16, r[kOW], D * Q_, k, kOW));
      w.wgate = static_cast<const bf16*>(up(DType::BF16, r[kGateW], F * D, k, kGateW));
      w.wup = static_cast<const bf16*>(up(DType::BF16, r[kUpW], F * D, k, kUpW));
      w.wdown = static_cast<const bf16*>(up(DType::BF16, r[kDownW], D * F, k, kDownW));
      for (int tr : {int(streamline::kRoleAttnNormW), int(streamline::kRoleAttnNormB), int(streamline::kRoleQB),
                     int(streamline::kRoleKB), int(streamline::kRoleVB), int(streamline::kRoleOB),
                     int(streamline::kRoleMlpNormW), int(streamline::kRoleMlpNormB), int(streamline::kRoleUpB),
                     int(streamline::kRoleDownB)}) {
        size_t rows = 0, cols = 0;
        train_role_shape(s, tr, &rows, &cols);
        const int lr = layer_role_of(tr);
        w.vec[tr] = static_cast<const float*>(up(DType::F32, r[lr], rows * cols, k, lr));
      }
      t->layers.push_back(w);
      t->h.push_back(static_cast<float*>(talloc(M * D * 4)));
    }
    t->head = std::make_unique<LmHead>(gemm_, stream_, D, vocab, s.layer_norm ? NormKind::Layer : NormKind::RMS,
                                       s.norm_eps, norm_w, norm_b, lm_head, M);
    t->nll = static_cast<double*>(talloc(M * 8));
    t->seq = static_cast<double*>(talloc(s.B * 8));
    SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  } catch (...) {
    cudaStreamSynchronize(stream_);
    device_free(raw, raw_bytes);
    throw;
  }
  device_free(raw, raw_bytes);
  const size_t added = t->bytes + t->head->bytes();
  size_t removed = 0;
  if (tail_) removed = tail_->bytes + tail_->head->bytes();
  tail_ = std::move(t);  // the old tail (if any) is freed here, after the new one is complete
  std::lock_guard<std::mutex> lk(mu_);
  bytes_ = bytes_ + added - removed;
}

// Uploads each frozen tail layer's pair of norm vectors ([width] each, f32 on the device; a layer with none keeps
// none) and points the layer's two roles at them, only once every upload has succeeded (a failure frees them all).
void TrainStep::upload_tail_norm_pairs(const std::vector<std::pair<HostTensor, HostTensor>>& norms, size_t width,
                                       const char* name_a, const char* name_b, int role_a, int role_b) {
  const size_t L = tail_->layers.size();
  const size_t raw_bytes = size_t(1) << 20;
  void* raw = device_alloc(raw_bytes);
  std::vector<std::pair<void*, size_t>> mine;  // freed on failure; otherwise the tail's
  try {
    std::vector<std::pair<const float*, const float*>> dev(L, {nullptr, nullptr});
    for (size_t k = 0; k < L; k++) {
      if (!norms[k].first.data) continue;
      float* d = static_cast<float*>(device_alloc(2 * width * 4));
      mine.emplace_back(d, 2 * width * 4);
      const std::string what = "frozen layer " + std::to_string(k) + " ";
      upload_converted(d, DType::F32, norms[k].first, width, (what + name_a).c_str(), raw, raw_bytes, stream_);
      upload_converted(d + width, DType::F32, norms[k].second, width, (what + name_b).c_str(), raw, raw_bytes, stream_);
      dev[k] = {d, d + width};
    }
    SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (size_t k = 0; k < L; k++) {
      tail_->layers[k].vec[role_a] = dev[k].first;
      tail_->layers[k].vec[role_b] = dev[k].second;
    }
  } catch (...) {
    cudaStreamSynchronize(stream_);
    device_free(raw, raw_bytes);
    for (auto& a : mine) device_free(a.first, a.second);
    throw;
  }
  device_free(raw, raw_bytes);
  size_t added = 0;
  for (auto& a : mine) {
    tail_->allocs.push_back(a);
    tail_->bytes += a.second;
    added += a.second;
  }
  std::lock_guard<std::mutex> lk(mu_);
  bytes_ += added;
}

void TrainStep::set_lm_tail_qk_norm(const std::vector<std::pair<HostTensor, HostTensor>>& norms) {
  check(tail_ != nullptr, "set_lm_tail_qk_norm: set_lm_tail first");
  const size_t L = tail_->layers.size(), Dh = s_.Dh;
  check(norms.size() == L, "set_lm_tail_qk_norm: " + std::to_string(norms.size()) + " layers' norms given, the lm tail has " +
                               std::to_string(L));
  bool any = false;
  for (size_t k = 0; k < L; k++) {
    const bool q = norms[k].first.data != nullptr, kn = norms[k].second.data != nullptr;
    check(q == kn, "frozen layer " + std::to_string(k) + ": q_norm.weight and k_norm.weight: give both or neither");
    check(!q || !s_.layer_norm, "frozen layer " + std::to_string(k) + ": q/k norms are RMSNorms, the layers' norm is a LayerNorm");
    any = any || q;
  }
  if (!any) return;
  {
    std::lock_guard<std::mutex> lk(mu_);  // grows allocs_/bytes_, which the staging side reads under mu_
    alloc_qk_buffers();
  }
  upload_tail_norm_pairs(norms, Dh, "q_norm.weight", "k_norm.weight", kRoleQNormW, kRoleKNormW);
}

void TrainStep::set_lm_tail_rope(size_t n_layers, const float* inv_freqs, const float* attention_scalings) {
  check(tail_ != nullptr, "set_lm_tail_rope: set_lm_tail first");
  check(s_.use_rope, "set_lm_tail_rope: the trainer was created without RoPE (use_rope)");
  const size_t L = tail_->layers.size(), half = rot() / 2, M = s_.B * s_.T;
  check(n_layers == L, "set_lm_tail_rope: " + std::to_string(n_layers) + " layers' RoPE given, the lm tail has " +
                           std::to_string(L));
  check(L == 0 || (inv_freqs && attention_scalings), "set_lm_tail_rope: inv_freqs and attention_scalings are required");
  check(inv_freq_host_.size() == half, "set_lm_tail_rope: the trainer's inv_freq does not match its rotary width");
  for (size_t k = 0; k < L; k++) {
    bool finite = std::isfinite(attention_scalings[k]);
    for (size_t j = 0; j < half; j++) finite = finite && std::isfinite(inv_freqs[k * half + j]);
    check(finite, "set_lm_tail_rope: frozen layer " + std::to_string(k) + ": inverse frequencies and attention scaling "
                                                                          "must be finite");
  }
  // Bitwise comparison: a layer given the trainer's values shares its table (one rope, one table), so a tail that
  // rotates like R runs exactly as without this call.
  auto same = [&](const float* a, float sa, const float* b, float sb) {
    return std::memcmp(&sa, &sb, sizeof sa) == 0 && std::memcmp(a, b, half * sizeof(float)) == 0;
  };
  std::vector<int> which(L, -1);
  std::vector<size_t> first;  // the first layer of each distinct rope
  for (size_t k = 0; k < L; k++) {
    const float* row = inv_freqs + k * half;
    if (same(row, attention_scalings[k], inv_freq_host_.data(), s_.rope_attention_scaling)) continue;
    for (size_t j = 0; j < first.size() && which[k] < 0; j++)
      if (same(row, attention_scalings[k], inv_freqs + first[j] * half, attention_scalings[first[j]])) which[k] = int(j);
    if (which[k] < 0) {
      which[k] = int(first.size());
      first.push_back(k);
    }
  }
  std::vector<RopeDev> ropes;
  std::vector<std::pair<void*, size_t>> mine;  // freed on failure; otherwise the tail's
  auto take = [&](size_t bytes) {
    void* p = device_alloc(bytes);
    mine.emplace_back(p, bytes);
    return static_cast<float*>(p);
  };
  try {
    for (size_t j = 0; j < first.size(); j++) {
      RopeDev r;
      float* inv = take(half * 4);
      // through the consuming stream and a sync: from pageable memory a plain cudaMemcpy may return before the DMA
      // lands, and orders only the legacy stream
      SL_CUDA_CHECK(cudaMemcpyAsync(inv, inv_freqs + first[j] * half, half * 4, cudaMemcpyHostToDevice, stream_));
      r.inv_freq = inv;
      r.scaling = attention_scalings[first[j]];
      r.cos = take(M * half * 4);
      r.sin = take(M * half * 4);
      ropes.push_back(r);
    }
    SL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // also: no step in flight reads the tables replaced below
  } catch (...) {
    cudaStreamSynchronize(stream_);
    for (auto& a : mine) device_free(a.first, a.second);
    throw;
  }
  size_t added = 0, removed = 0;
  for (auto& a : mine) added += a.second;
  for (auto& a : tail_->rope_allocs) {
    removed += a.second;
    device_free(a.first, a.second);
  }
  tail_->rope_allocs = std::move(mine);
  tail_->ropes = std::move(ropes);
  for (size_t k = 0; k < L; k++) tail_->layers[k].rope = which[k];
  tail_->rope_set = true;
  tail_->bytes = tail_->bytes + added - removed;
  std::lock_guard<std::mutex> lk(mu_);
  bytes_ = bytes_ + added - removed;
}

void TrainStep::set_lm_chunk_rows(size_t rows) {
  check(tail_ != nullptr, "set_lm_chunk_rows: no lm tail");
  tail_->head->set_chunk_rows(rows);
}

void TrainStep::set_windows(size_t window, const std::vector<size_t>& tail_windows) {
  check(kind_ == ReplacementKind::Layer || window == 0, "an mlp replacement has no attention window (must be 0)");
  const size_t L = tail_ ? tail_->layers.size() : 0;
  check(tail_windows.size() == L,
        tail_ ? "tail windows: " + std::to_string(tail_windows.size()) + " given, the lm tail has " + std::to_string(L) +
                    " frozen layers"
              : std::string("tail windows given without an lm tail (call train_set_lm_tail first)"));
  window_ = window;
  for (size_t k = 0; k < L; k++) tail_->layers[k].window = tail_windows[k];
}

size_t TrainStep::lm_check(bool has_x, const int32_t* targets, const int32_t* positions, size_t batch) const {
  check(tail_ != nullptr, "no lm tail (call train_set_lm_tail first)");
  check(has_x && targets, "x and targets are required");
  check(batch > 0 && batch <= s_.B, "batch must be in [1, spec.B]");
  check(!s_.use_rope || (!rope_ && tail_->layers.empty()) || positions, "positions are required with RoPE");
  const size_t M = batch * s_.T;
  size_t count = 0;
  for (size_t m = 0; m < M; m++) {
    if (targets[m] < 0) continue;
    if (size_t(targets[m]) >= tail_->head->vocab())
      throw CudaError("train lm: target " + std::to_string(targets[m]) + " at row " + std::to_string(m) +
                      " is outside the vocabulary [0, " + std::to_string(tail_->head->vocab()) + ") (E_TOKEN_RANGE)");
    count++;
  }
  return count;
}

void TrainStep::lm_upload(InputSlot& sl, const float* x, const int32_t* targets, const int32_t* positions,
                          const uint8_t* key_mask, size_t batch) {
  const size_t M = batch * s_.T;
  cudaStream_t st = stream_;
  if (key_mask) SL_CUDA_CHECK(cudaMemcpyAsync(sl.mask, key_mask, M, cudaMemcpyHostToDevice, st));
  SL_CUDA_CHECK(cudaMemcpyAsync(sl.x, x, M * s_.D * 4, cudaMemcpyHostToDevice, st));
  if (positions) SL_CUDA_CHECK(cudaMemcpyAsync(sl.pos, positions, M * 4, cudaMemcpyHostToDevice, st));
  SL_CUDA_CHECK(cudaMemcpyAsync(sl.tg, targets, M * 4, cudaMemcpyHostToDevice, st));
}

void TrainStep::lm_forward(const InputSlot& sl, const int32_t* pos, const uint8_t* mask, size_t batch) {
  forward(own_weights(), kind_, sl.x, pos, mask, batch, y_);
  const float* in = y_;
  for (size_t k = 0; k < tail_->layers.size(); k++) {
    forward(tail_->layers[k], ReplacementKind::Layer, in, pos, mask, batch, tail_->h[k]);
    in = tail_->h[k];
  }
}

void TrainStep::enqueue_step_lm(const InputSlot& sl, const int32_t* pos, const uint8_t* mask, size_t batch,
                                size_t count, float grad_scale) {
  const size_t L = tail_->layers.size(), M = batch * s_.T;
  lm_forward(sl, pos, mask, batch);
  // The CPU's scale: d(mean NLL)/dlogits times the micro-batch's share.
  const float scale = float(double(grad_scale) / double(count));
  tail_->head->run(tail_->nll, dy_, L ? tail_->h[L - 1] : y_, sl.tg, M, scale);
  for (size_t k = L; k-- > 0;) {
    const float* in = k ? tail_->h[k - 1] : y_;
    // The last frozen layer's activations are still in the buffers from the forward; the others are recomputed.
    if (k + 1 != L) forward(tail_->layers[k], ReplacementKind::Layer, in, pos, mask, batch, tail_->h[k]);
    backward(tail_->layers[k], ReplacementKind::Layer, false, in, mask, batch);
    std::swap(dy_, dh_);  // dL/d(layer k's input) is the next upstream gradient
  }
  if (L > 0) forward(own_weights(), kind_, sl.x, pos, mask, batch, y_);  // R's activations were overwritten
  backward(own_weights(), kind_, true, sl.x, mask, batch);
  segment_sums(tail_->seq, tail_->nll, 1, M, stream_);
}

namespace {
// Returns a slot to the free pool when the call that took it ends, however it ends.
struct SlotGuard {
  std::function<void()> f;
  ~SlotGuard() { f(); }
};
}  // namespace

double TrainStep::step_lm(const float* x, const int32_t* targets, const int32_t* positions, const uint8_t* key_mask,
                          size_t batch, float grad_scale) {
  const size_t count = lm_check(x != nullptr, targets, positions, batch);
  InputSlot* sl = &take_direct_slot(batch, positions);
  SlotGuard done{[&] { free_slot(*sl); }};
  if (count == 0) return 0.0;  // the CPU step: nothing to learn, no gradient
  lm_upload(*sl, x, targets, positions, key_mask, batch);
  enqueue_step_lm(*sl, positions ? sl->pos : nullptr, key_mask ? sl->mask : nullptr, batch, count, grad_scale);
  double sum = 0;
  SL_CUDA_CHECK(cudaMemcpyAsync(&sum, tail_->seq, sizeof sum, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return sum / double(count);
}

void TrainStep::stage_lm(const float* x, const int32_t* targets, const int32_t* positions, const uint8_t* key_mask,
                         size_t batch) {
  const size_t count = lm_check(x != nullptr, targets, positions, batch);
  stage_any({x, nullptr}, {}, targets, positions, key_mask, batch, true, count);
}

void TrainStep::stage_lm_bf16(const uint16_t* const* x_rows, const int32_t* targets, const int32_t* positions,
                              const uint8_t* key_mask, size_t batch) {
  check(batch > 0 && batch <= s_.B, "stage_lm_bf16: batch must be in [1, spec.B]");
  bool rows = x_rows != nullptr;
  for (size_t b = 0; rows && b < batch; b++) rows = x_rows[b] != nullptr;
  const size_t count = lm_check(rows, targets, positions, batch);
  stage_any({nullptr, x_rows}, {}, targets, positions, key_mask, batch, true, count);
}

void TrainStep::stage_lm_kept(const int64_t* blocks, const int32_t* targets, const int32_t* positions,
                              const uint8_t* key_mask, size_t batch) {
  check_kept(blocks, batch, "stage_lm_kept");
  const size_t count = lm_check(true, targets, positions, batch);
  HostStates x;
  x.kept = blocks;
  x.kept_base = kept_x_;
  stage_any(x, {}, targets, positions, key_mask, batch, true, count);
}

double TrainStep::step_lm_staged(float grad_scale) {
  check(tail_ != nullptr, "no lm tail (call train_set_lm_tail first)");
  InputSlot* sl = &take_staged(true);
  SlotGuard done{[&] { free_slot(*sl); }};
  if (sl->empty) return 0.0;
  SL_CUDA_CHECK(cudaStreamWaitEvent(stream_, sl->copied, 0));
  enqueue_step_lm(*sl, sl->has_pos ? sl->pos : nullptr, sl->has_mask ? sl->mask : nullptr, sl->batch, sl->count,
                  grad_scale);
  SL_CUDA_CHECK(cudaEventRecord(sl->consumed, stream_));
  double sum = 0;
  SL_CUDA_CHECK(cudaMemcpyAsync(&sum, tail_->seq, sizeof sum, cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return sum / double(sl->count);
}

void TrainStep::eval_lm(const float* x, const int32_t* targets, const int32_t* positions, const uint8_t* key_mask,
                        size_t batch, double* losses) {
  check(losses != nullptr, "eval_lm: losses is required");
  const size_t count = lm_check(x != nullptr, targets, positions, batch);
  const size_t T = s_.T;
  for (size_t b = 0; b < batch; b++) losses[b] = 0.0;
  if (count == 0) return;
  InputSlot* sl = &take_direct_slot(batch, positions);
  SlotGuard done{[&] { free_slot(*sl); }};
  lm_upload(*sl, x, targets, positions, key_mask, batch);
  const int32_t* pos = positions ? sl->pos : nullptr;
  const uint8_t* mask = key_mask ? sl->mask : nullptr;
  lm_forward(*sl, pos, mask, batch);
  const size_t L = tail_->layers.size(), M = batch * T;
  tail_->head->run(tail_->nll, nullptr, L ? tail_->h[L - 1] : y_, sl->tg, M, 1.f);
  segment_sums(tail_->seq, tail_->nll, batch, T, stream_);
  std::vector<double> sums(batch);
  SL_CUDA_CHECK(cudaMemcpyAsync(sums.data(), tail_->seq, batch * sizeof(double), cudaMemcpyDeviceToHost, stream_));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (size_t b = 0; b < batch; b++) {
    size_t n = 0;
    for (size_t t = 0; t < T; t++) n += targets[b * T + t] >= 0 ? 1 : 0;
    losses[b] = n ? sums[b] / double(n) : 0.0;
  }
}

}  // namespace cuda
}  // namespace streamline
