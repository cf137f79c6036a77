// Argument readers of the lm objective's head, shared by the CPU lm binding (binding_lmloss.cpp) and the CUDA
// trainer's setLmTail (binding_cuda_train.cpp): the same refusals and the same HeadSpec on both devices.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "layer_args.h"
#include "streamline/model.h"
#include "streamline/replacement.h"

namespace streamline::binding {

// headWeights for --loss lm: an lm_head of shape [vocab, hidden] is required; OPT project_out is refused.
inline HeadWeights lm_head_weights(Napi::Env env, const Napi::Value& v, std::vector<Napi::Value>* keep,
                                   const std::string& what) {
  HeadWeights w = head_weights(env, v, keep, what);
  if (w.project_out)
    throw_error(env, "E_UNSUPPORTED", what + ": OPT project_out (word_embed_proj_dim != hidden) is not supported by --loss lm");
  if (!w.lm_head || w.lm_head.shape.size() != 2)
    throw_error(env, "E_SHAPE", what + "['lm_head.weight']: required, [vocab, hidden]");
  return w;
}

// The head of a replacement's model: its hidden size, norm kind and eps; a final norm when final_norm.weight is given.
inline HeadSpec lm_head_spec(const ReplacementSpec& s, const HeadWeights& w) {
  HeadSpec h;
  h.hidden = s.D;
  h.vocab = size_t(w.lm_head.shape[0]);
  h.norm = s.layer_norm ? NormKind::Layer : NormKind::Rms;
  h.norm_eps = s.norm_eps;
  h.final_norm = bool(w.norm_w);
  return h;
}

}  // namespace streamline::binding
