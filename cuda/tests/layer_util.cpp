// Helpers shared by the layer, model and train checks (declared in layer_util.h): plain host code, no kernels, so the
// CPU emulation of the training step (cuda/dev/emu/train.sh) links them without the decoder layer.
#include "layer_util.h"

#include <cmath>

namespace harness {

namespace sc = streamline::cuda;

sc::LayerSpec gpu_spec(const ref::LayerSpecRef& s) {
  sc::LayerSpec g;
  g.batch = s.B; g.seq_len = s.T; g.hidden = s.D; g.heads = s.H; g.kv_heads = s.Hk; g.head_dim = s.Dh;
  g.intermediate = s.F; g.norm = s.rms ? sc::NormKind::RMS : sc::NormKind::Layer; g.norm_eps = s.eps; g.act = s.act;
  g.gated = s.gated; g.pre_norm = s.pre_norm; g.use_rope = s.use_rope; g.rot_dim = s.rot; g.attn_scale = s.scale;
  g.mlp_only = s.mlp_only;
  return g;
}

Inputs make_inputs(const ref::LayerSpecRef& s, double theta) {
  Inputs in;
  const size_t M = s.B * s.T, half = s.rot / 2;
  in.pos.resize(M);
  in.mask.assign(M, 1);
  for (size_t b = 0; b < s.B; b++) {
    const size_t len = b == 0 ? s.T : (s.T * 2) / 3 + 1;  // second row right-padded
    for (size_t t = 0; t < s.T; t++) {
      in.pos[b * s.T + t] = int32_t(t);
      in.mask[b * s.T + t] = t < len;
    }
  }
  in.inv.resize(half);
  for (size_t i = 0; i < half; i++) in.inv[i] = float(1.0 / std::pow(theta, 2.0 * double(i) / double(s.rot)));
  in.cos.resize(M * half);
  in.sin.resize(M * half);
  ref::rope_tables(in.cos.data(), in.sin.data(), in.pos.data(), in.inv.data(), M, half, 1.f);
  return in;
}

// Compares only real tokens (padding rows are not part of the contract beyond being finite).
Compare compare_real(const std::vector<float>& out, const std::vector<float>& ref, const std::vector<uint8_t>& mask, size_t D) {
  std::vector<float> a, b;
  for (size_t m = 0; m < mask.size(); m++)
    if (mask[m]) {
      a.insert(a.end(), out.begin() + m * D, out.begin() + (m + 1) * D);
      b.insert(b.end(), ref.begin() + m * D, ref.begin() + (m + 1) * D);
    }
  return compare(a.data(), b.data(), a.size());
}

}  // namespace harness
