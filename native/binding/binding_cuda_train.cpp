// Replacement training on the CUDA backend (issue 9): a thin wrapper over the training half of the C API of
// streamline_cuda.so (streamline_cuda_train_*, cuda/streamline_cuda.h), resolved at run time through cuda_symbol()
// like binding_cuda.cpp, but separately, so a backend without the training functions still scores and evaluates.
// One JS object (CudaTrainer) owns one streamline_cuda_train: f32 master weights, gradients and Adam moments on the
// GPU. Arguments are read with the CPU replacement bindings' readers (replacement_args.h), so both paths accept and
// refuse the same inputs; copies and compute run on a libuv thread. One call at a time (E_CUDA_BUSY otherwise), with
// one exception: stage and stepStaged may be in flight together, and so may stageLm and stepLmStaged (the stage fills
// the idle input slot on the copy stream while the step computes on the other; the backend's TrainStep documents
// which side owns what). A stage of one loss never overlaps a staged step of the other: the C API promises the
// overlap only within a loss.
//   cudaTrainer(kind, spec, params, ropeInvFreq) -> Promise<CudaTrainer>   (spec.batch: the largest micro-batch;
//     ropeInvFreq has rotaryDim/2 entries; spec.rotaryDim < headDim goes through the optional
//     streamline_cuda_train_set_rotary_dim, refused with E_UNSUPPORTED by a library without it: cudaInfo().trainRotaryDim;
//     spec.tailRopeInvFreq / tailRopeAttentionScaling, the lm tail's per-layer RoPE as lmLossStep takes them, go to
//     streamline_cuda_train_set_lm_tail_rope at each setLmTail, refused likewise without it: cudaInfo().lmTailRope)
//   trainer.step(x, target, positions, keyMask, batch, gradScale?) -> Promise<loss>
//   trainer.apply({lr, beta1, beta2, eps, weightDecay, maxNorm, step}) -> Promise<gradNorm>
//   trainer.getParams(role) / getGrads(role) -> Promise<Float32Array>; trainer.destroy()
//   trainer.hasState() -> boolean; trainer.getState(role) -> Promise<{param, m, v}>; trainer.setState(role, {param, m, v})
//     (checkpoint/resume; the state functions are resolved optionally: an older backend trains but cannot resume)
//   trainer.hasEval() -> boolean; trainer.eval(x, target, positions, keyMask, batch) -> Promise<Float64Array[batch]>
//     (validation loss per sequence on the GPU; optional too: without it the caller validates on the CPU)
//   trainer.hasStage() -> boolean; trainer.stage(x, target, positions, keyMask, batch) -> Promise<void> (the host
//     arrays may change once it settles); trainer.stepStaged(gradScale?) -> Promise<loss> (step on the oldest staged
//     batch). Optional: an older backend has only step.
//   trainer.hasLm() -> boolean; trainer.setLmTail(layers, headWeights) -> Promise<void>;
//     trainer.stepLm(x, targets, positions, keyMask, batch, gradScale?) -> Promise<loss>;
//     trainer.evalLm(x, targets, positions, keyMask, batch) -> Promise<Float64Array[batch]>
//     (the lm loss through the frozen rest of the model; the arguments of lmLossStep/lmLossEval, binding_lmloss.cpp;
//     optional: without them the caller trains --loss lm on the CPU)
//   trainer.hasStageLm() -> boolean; trainer.stageLm(x, targets, positions, keyMask, batch) -> Promise<void>;
//     trainer.stepLmStaged(gradScale?) -> Promise<loss> (prefetch for the lm loss: stage/stepStaged with stepLm's
//     inputs, in the same two input slots; a staged step refuses a batch staged for the other loss, which stays
//     staged. Optional: a backend without them steps lm micro-batches unpipelined)
//   trainer.hasStageBf16() -> boolean; trainer.stageBf16(xRows, targetRows, positions, keyMask, batch) and
//     trainer.stageLmBf16(xRows, targets, positions, keyMask, batch) -> Promise<void>: stage/stageLm with the states
//     as bf16 bits, one Uint16Array[T*D] per sequence (a bf16 pair cache's blocks), widened on the GPU (exact).
//     Optional: without them the caller widens on the host and stages f32
//   trainer.hasKeptPairs() -> boolean; keepPairs(blocks, targets, maxFraction) -> Promise<boolean> (false: does not
//     fit, nothing reserved); putPair(block, x Uint16Array, target | null) -> Promise<void>; stageKept(blocks
//     Int32Array, positions, keyMask, batch) and stageLmKept(blocks, targets, positions, keyMask, batch) ->
//     Promise<void>: training pairs kept on the GPU and staged by block index, device to device
//   trainer.hasWindows() -> boolean; setWindows(window, tailWindows) (synchronous): the layer replacement's sliding
//     window and the lm tail's, one per frozen layer (0 = full causal). Optional: without it the caller trains a
//     windowed model on the CPU
#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "arrays.h"
#include "async.h"
#include "cuda_weights.h"
#include "layer_args.h"
#include "lm_args.h"
#include "register.h"
#include "replacement_args.h"
#include "streamline/cuda_loader.h"
#include "streamline/error.h"
#include "streamline/lm_loss.h"
#include "streamline/replacement.h"
#include "streamline_cuda.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

struct TrainApi {
  const char* (*last_error)(void);
  int (*create)(int32_t, const streamline_cuda_train_spec*, const float* const*, const float*, streamline_cuda_train**);
  void (*destroy)(streamline_cuda_train*);
  int (*step)(streamline_cuda_train*, const float*, const float*, const int32_t*, const uint8_t*, int64_t, float, double*);
  int (*apply)(streamline_cuda_train*, const streamline_cuda_adamw*, double*);
  int (*get_params)(streamline_cuda_train*, int32_t, float*, int64_t);
  int (*get_grads)(streamline_cuda_train*, int32_t, float*, int64_t);
  // Optional (nullptr in a backend built before checkpoint/resume on the GPU).
  int (*get_state)(streamline_cuda_train*, int32_t, float*, float*, float*, int64_t);
  int (*set_state)(streamline_cuda_train*, int32_t, const float*, const float*, const float*, int64_t);
  // Optional (nullptr in a backend built before validation on the GPU).
  int (*eval)(streamline_cuda_train*, const float*, const float*, const int32_t*, const uint8_t*, int64_t, double*);
  // Optional (nullptr in a backend built before prefetching); both or neither.
  int (*stage)(streamline_cuda_train*, const float*, const float*, const int32_t*, const uint8_t*, int64_t);
  int (*step_staged)(streamline_cuda_train*, float, double*);
  // Optional (nullptr in a backend built before the lm loss on the GPU); all three or none.
  int (*set_lm_tail)(streamline_cuda_train*, int64_t, const streamline_cuda_weight*, const streamline_cuda_weight*,
                     const streamline_cuda_weight*, const streamline_cuda_weight*, int64_t);
  int (*step_lm)(streamline_cuda_train*, const float*, const int32_t*, const int32_t*, const uint8_t*, int64_t, float, double*);
  int (*eval_lm)(streamline_cuda_train*, const float*, const int32_t*, const int32_t*, const uint8_t*, int64_t, double*);
  // Optional (nullptr in a backend built before prefetch for the lm loss, or without the lm loss); both or neither.
  int (*stage_lm)(streamline_cuda_train*, const float*, const int32_t*, const int32_t*, const uint8_t*, int64_t);
  // Optional (bf16 pair caches): the stages above with x/target as one bf16 row pointer per sequence.
  int (*stage_bf16)(streamline_cuda_train*, const uint16_t* const*, const uint16_t* const*, const int32_t*,
                    const uint8_t*, int64_t);
  int (*stage_lm_bf16)(streamline_cuda_train*, const uint16_t* const*, const int32_t*, const int32_t*, const uint8_t*,
                       int64_t);
  // Optional (pairs kept on the GPU).
  int (*keep_pairs)(streamline_cuda_train*, int64_t, int, double, int*);
  int (*put_pair)(streamline_cuda_train*, int64_t, const uint16_t*, const uint16_t*);
  int (*stage_kept)(streamline_cuda_train*, const int64_t*, const int32_t*, const uint8_t*, int64_t);
  int (*stage_lm_kept)(streamline_cuda_train*, const int64_t*, const int32_t*, const int32_t*, const uint8_t*, int64_t);
  int (*step_lm_staged)(streamline_cuda_train*, float, double*);
  // Optional (nullptr in a backend built before sliding-window attention on the GPU).
  int (*set_windows)(streamline_cuda_train*, int64_t, int64_t, const int64_t*);
  // Optional (nullptr in a backend built before Qwen3's q/k norms were trained on the GPU).
  int (*set_qk_norm)(streamline_cuda_train*, const float*, const float*);
  int (*set_lm_tail_qk_norm)(streamline_cuda_train*, int64_t, const streamline_cuda_weight*);
  // Optional (nullptr in a backend built before Gemma's post-sublayer norms were trained on the GPU).
  int (*set_post_norm)(streamline_cuda_train*, const float*, const float*);
  int (*set_lm_tail_post_norm)(streamline_cuda_train*, int64_t, const streamline_cuda_weight*);
  // Optional (nullptr in a backend built before partial RoPE was trained on the GPU).
  int (*set_rotary_dim)(streamline_cuda_train*, int64_t, const float*);
  // Optional (nullptr in a backend built before the lm tail's per-layer RoPE on the GPU).
  int (*set_lm_tail_rope)(streamline_cuda_train*, int64_t, const float*, const float*);
};

template <typename F> void resolve(F*& f, const char* name, std::string* missing) {
  f = reinterpret_cast<F*>(cuda_symbol(name));
  if (!f) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

const TrainApi& train_api(Napi::Env env) {
  static TrainApi a;
  static std::string error;
  static bool done = false;
  if (!done) {
    CudaStatus st = cuda_status(addon_dir());
    if (!st.loaded) {
      error = st.reason;
    } else {
      std::string missing;
      resolve(a.last_error, "streamline_cuda_last_error", &missing);
      resolve(a.create, "streamline_cuda_train_create", &missing);
      resolve(a.destroy, "streamline_cuda_train_destroy", &missing);
      resolve(a.step, "streamline_cuda_train_step", &missing);
      resolve(a.apply, "streamline_cuda_train_apply", &missing);
      resolve(a.get_params, "streamline_cuda_train_get_params", &missing);
      resolve(a.get_grads, "streamline_cuda_train_get_grads", &missing);
      a.get_state = reinterpret_cast<decltype(a.get_state)>(cuda_symbol("streamline_cuda_train_get_state"));
      a.set_state = reinterpret_cast<decltype(a.set_state)>(cuda_symbol("streamline_cuda_train_set_state"));
      if (!a.get_state || !a.set_state) a.get_state = nullptr, a.set_state = nullptr;  // both or neither
      a.eval = reinterpret_cast<decltype(a.eval)>(cuda_symbol("streamline_cuda_train_eval"));
      a.stage = reinterpret_cast<decltype(a.stage)>(cuda_symbol("streamline_cuda_train_stage"));
      a.step_staged = reinterpret_cast<decltype(a.step_staged)>(cuda_symbol("streamline_cuda_train_step_staged"));
      if (!a.stage || !a.step_staged) a.stage = nullptr, a.step_staged = nullptr;
      a.set_lm_tail = reinterpret_cast<decltype(a.set_lm_tail)>(cuda_symbol("streamline_cuda_train_set_lm_tail"));
      a.step_lm = reinterpret_cast<decltype(a.step_lm)>(cuda_symbol("streamline_cuda_train_step_lm"));
      a.eval_lm = reinterpret_cast<decltype(a.eval_lm)>(cuda_symbol("streamline_cuda_train_eval_lm"));
      if (!a.set_lm_tail || !a.step_lm || !a.eval_lm) a.set_lm_tail = nullptr, a.step_lm = nullptr, a.eval_lm = nullptr;
      a.stage_lm = reinterpret_cast<decltype(a.stage_lm)>(cuda_symbol("streamline_cuda_train_stage_lm"));
      a.step_lm_staged = reinterpret_cast<decltype(a.step_lm_staged)>(cuda_symbol("streamline_cuda_train_step_lm_staged"));
      // Staged lm steps need the tail that only set_lm_tail uploads.
      if (!a.stage_lm || !a.step_lm_staged || !a.set_lm_tail) a.stage_lm = nullptr, a.step_lm_staged = nullptr;
      a.stage_bf16 = a.stage ? reinterpret_cast<decltype(a.stage_bf16)>(cuda_symbol("streamline_cuda_train_stage_bf16"))
                             : nullptr;
      a.stage_lm_bf16 = a.stage_lm ? reinterpret_cast<decltype(a.stage_lm_bf16)>(
                                         cuda_symbol("streamline_cuda_train_stage_lm_bf16"))
                                   : nullptr;
      a.keep_pairs = reinterpret_cast<decltype(a.keep_pairs)>(cuda_symbol("streamline_cuda_train_keep_pairs"));
      a.put_pair = reinterpret_cast<decltype(a.put_pair)>(cuda_symbol("streamline_cuda_train_put_pair"));
      a.stage_kept = reinterpret_cast<decltype(a.stage_kept)>(cuda_symbol("streamline_cuda_train_stage_kept"));
      // Kept pairs are only ever consumed by staged steps.
      if (!a.keep_pairs || !a.put_pair || !a.stage_kept || !a.stage)
        a.keep_pairs = nullptr, a.put_pair = nullptr, a.stage_kept = nullptr;
      a.stage_lm_kept = a.keep_pairs && a.stage_lm ? reinterpret_cast<decltype(a.stage_lm_kept)>(
                                                         cuda_symbol("streamline_cuda_train_stage_lm_kept"))
                                                   : nullptr;
      a.set_windows = reinterpret_cast<decltype(a.set_windows)>(cuda_symbol("streamline_cuda_train_set_windows"));
      a.set_qk_norm = reinterpret_cast<decltype(a.set_qk_norm)>(cuda_symbol("streamline_cuda_train_set_qk_norm"));
      a.set_lm_tail_qk_norm =
          reinterpret_cast<decltype(a.set_lm_tail_qk_norm)>(cuda_symbol("streamline_cuda_train_set_lm_tail_qk_norm"));
      a.set_post_norm = reinterpret_cast<decltype(a.set_post_norm)>(cuda_symbol("streamline_cuda_train_set_post_norm"));
      a.set_lm_tail_post_norm = reinterpret_cast<decltype(a.set_lm_tail_post_norm)>(
          cuda_symbol("streamline_cuda_train_set_lm_tail_post_norm"));
      a.set_rotary_dim =
          reinterpret_cast<decltype(a.set_rotary_dim)>(cuda_symbol("streamline_cuda_train_set_rotary_dim"));
      a.set_lm_tail_rope =
          reinterpret_cast<decltype(a.set_lm_tail_rope)>(cuda_symbol("streamline_cuda_train_set_lm_tail_rope"));
      if (!missing.empty()) error = "the CUDA backend library lacks " + missing + " (built before GPU training existed)";
      else if (st.device_count == 0 || !st.reason.empty()) error = st.reason.empty() ? "no CUDA device" : st.reason;
    }
    done = true;
  }
  if (!error.empty()) throw_error(env, "E_CUDA_UNAVAILABLE", error);
  return a;
}

void check_rc(const TrainApi& a, int rc, const char* what) {
  if (rc != 0) throw Error("E_CUDA", std::string(what) + ": " + a.last_error());
}

// The C API's role numbering is streamline::ReplacementRole's (one table, role_name()) up to kCudaTrainRoles; the
// q/k norms after it go through train_set_qk_norm (a trainer with them is refused by a library without it).
static_assert(int(STREAMLINE_CUDA_TRAIN_ROLES) == int(kCudaTrainRoles) && int(STREAMLINE_CUDA_TRAIN_GATE_W) == int(kRoleGateW) &&
                  int(STREAMLINE_CUDA_TRAIN_DOWN_B) == int(kRoleDownB) &&
                  STREAMLINE_CUDA_TRAIN_ROLE_Q_NORM == int(kRoleQNormW) && STREAMLINE_CUDA_TRAIN_ROLE_K_NORM == int(kRoleKNormW) &&
                  STREAMLINE_CUDA_TRAIN_ROLE_POST_ATTN_NORM == int(kRolePostAttnNormW) &&
                  STREAMLINE_CUDA_TRAIN_ROLE_POST_MLP_NORM == int(kRolePostMlpNormW),
              "role numbering of streamline_cuda_train_create");

class CudaTrainer : public Napi::ObjectWrap<CudaTrainer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaTrainer",
                       {InstanceMethod("step", &CudaTrainer::Step), InstanceMethod("apply", &CudaTrainer::Apply),
                        InstanceMethod("getParams", &CudaTrainer::GetParams),
                        InstanceMethod("getGrads", &CudaTrainer::GetGrads),
                        InstanceMethod("hasState", &CudaTrainer::HasState),
                        InstanceMethod("getState", &CudaTrainer::GetState),
                        InstanceMethod("setState", &CudaTrainer::SetState),
                        InstanceMethod("hasEval", &CudaTrainer::HasEval),
                        InstanceMethod("eval", &CudaTrainer::Eval),
                        InstanceMethod("hasStage", &CudaTrainer::HasStage),
                        InstanceMethod("stage", &CudaTrainer::Stage),
                        InstanceMethod("stepStaged", &CudaTrainer::StepStaged),
                        InstanceMethod("hasLm", &CudaTrainer::HasLm),
                        InstanceMethod("setLmTail", &CudaTrainer::SetLmTail),
                        InstanceMethod("stepLm", &CudaTrainer::StepLm),
                        InstanceMethod("evalLm", &CudaTrainer::EvalLm),
                        InstanceMethod("hasStageBf16", &CudaTrainer::HasStageBf16),
                        InstanceMethod("stageBf16", &CudaTrainer::StageBf16),
                        InstanceMethod("stageLmBf16", &CudaTrainer::StageLmBf16),
                        InstanceMethod("hasKeptPairs", &CudaTrainer::HasKeptPairs),
                        InstanceMethod("keepPairs", &CudaTrainer::KeepPairs),
                        InstanceMethod("putPair", &CudaTrainer::PutPair),
                        InstanceMethod("stageKept", &CudaTrainer::StageKept),
                        InstanceMethod("stageLmKept", &CudaTrainer::StageLmKept),
                        InstanceMethod("hasWindows", &CudaTrainer::HasWindows),
                        InstanceMethod("setWindows", &CudaTrainer::SetWindows),
                        InstanceMethod("hasStageLm", &CudaTrainer::HasStageLm),
                        InstanceMethod("stageLm", &CudaTrainer::StageLm),
                        InstanceMethod("stepLmStaged", &CudaTrainer::StepLmStaged),
                        InstanceMethod("destroy", &CudaTrainer::Destroy)});
  }

  // Constructed by OpenTrainer only (arguments checked there).
  explicit CudaTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaTrainer>(info) {}
  ~CudaTrainer() override {
    if (t_) api_->destroy(t_);  // the finalizer of a trainer JS never destroyed (never busy: calls keep `this` alive)
  }

 private:
  // What is in flight: busy_ (any call but a stage; step_staged_ when that call is a staged step, staged_lm_ when it
  // is stepLmStaged) and staging_ (a stage; stage_lm_ when it is stageLm). A call may start when nothing is in flight,
  // except that a stage and a staged step of the same loss may overlap each other. The flags are read and written on
  // the JS thread only.
  enum class Lane { Main, Staged, Stage };
  streamline_cuda_train* ready(Napi::Env env, Lane lane = Lane::Main, bool lm = false) {
    if (!t_) throw_error(env, "E_CUDA", "CUDA trainer is not open (or was destroyed)");
    const bool clash = lane == Lane::Main    ? busy_ || staging_
                       : lane == Lane::Stage ? staging_ || (busy_ && !(step_staged_ && staged_lm_ == lm))
                                             : busy_ || (staging_ && stage_lm_ != lm);
    if (clash)
      throw_error(env, "E_CUDA_BUSY", "CUDA trainer: another call is still in flight; await it first (only stage and "
                                      "stepStaged, or stageLm and stepLmStaged, may overlap)");
    return t_;
  }
  Napi::Promise async(const Napi::CallbackInfo& info, std::vector<Napi::Value> keep, std::function<void()> work,
                      std::function<Napi::Value(Napi::Env)> done = nullptr, Lane lane = Lane::Main, bool lm = false) {
    keep.push_back(info.This());
    if (lane == Lane::Stage) {
      staging_ = true;
      stage_lm_ = lm;
      return run_async(info.Env(), keep, std::move(work), std::move(done), [this] { staging_ = stage_lm_ = false; });
    }
    busy_ = true;
    step_staged_ = lane == Lane::Staged;
    staged_lm_ = step_staged_ && lm;
    return run_async(info.Env(), keep, std::move(work), std::move(done),
                     [this] { busy_ = step_staged_ = staged_lm_ = false; });
  }

  // The inputs of one micro-batch, as step() and eval() take them (info[0..4]).
  // bf16 rows (stageBf16/stageLmBf16): one pointer per sequence, read from an array of `batch` Uint16Array[T*D].
  using Rows = std::shared_ptr<std::vector<const uint16_t*>>;
  struct BatchArgs {
    int64_t batch;
    const float *x, *y;
    const int32_t* pos;
    const uint8_t* mask;
    Rows xr, yr;
  };
  Rows rows_arg(Napi::Env env, const Napi::Value& v, int64_t batch, const std::string& what) {
    if (!v.IsArray()) throw_error(env, "E_NATIVE_ARG", what + " must be an array of Uint16Array (one per sequence)");
    Napi::Array a = v.As<Napi::Array>();
    if (int64_t(a.Length()) != batch)
      throw_error(env, "E_SHAPE", what + ": " + std::to_string(a.Length()) + " sequences for batch " + std::to_string(batch));
    auto rows = std::make_shared<std::vector<const uint16_t*>>();
    for (uint32_t b = 0; b < a.Length(); b++)
      rows->push_back(typed<Napi::Uint16Array>(env, a.Get(b), napi_uint16_array, spec_.T * spec_.D,
                                               what + "[" + std::to_string(b) + "]", "Uint16Array")
                          .Data());
    return rows;
  }
  BatchArgs batch_args(const Napi::CallbackInfo& info, const char* fn, bool bf16_rows = false) {
    Napi::Env env = info.Env();
    const std::string f(fn);
    BatchArgs b{};
    b.batch = int_arg(env, info[4], "batch");
    if (b.batch < 1 || size_t(b.batch) > spec_.B)
      throw_error(env, "E_SHAPE", f + ": batch must be in [1, " + std::to_string(spec_.B) + "] (the spec's batch)");
    size_t M = size_t(b.batch) * spec_.T, n = M * spec_.D;
    if (bf16_rows) {
      b.xr = rows_arg(env, info[0], b.batch, f + ": xRows");
      b.yr = rows_arg(env, info[1], b.batch, f + ": targetRows");
    } else {
      b.x = typed<Napi::Float32Array>(env, info[0], napi_float32_array, n, f + ": x", "Float32Array").Data();
      b.y = typed<Napi::Float32Array>(env, info[1], napi_float32_array, n, f + ": target", "Float32Array").Data();
    }
    if (spec_.use_rope)
      b.pos = typed<Napi::Int32Array>(env, info[2], napi_int32_array, M, f + ": positions", "Int32Array").Data();
    b.mask = absent(info[3]) ? nullptr
                             : typed<Napi::Uint8Array>(env, info[3], napi_uint8_array, M, f + ": keyMask", "Uint8Array").Data();
    return b;
  }

  // step(x Float32Array[batch*T*D], target [batch*T*D], positions Int32Array[batch*T] | null, keyMask
  // Uint8Array[batch*T] | null, batch, gradScale?) -> Promise<loss>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    const BatchArgs b = batch_args(info, "step");
    float scale = 1.f;
    if (!absent(info[5])) {
      double gs = number_arg(env, info[5], "gradScale");
      if (!std::isfinite(gs)) throw_error(env, "E_NATIVE_ARG", "step: gradScale must be finite");
      scale = float(gs);
    }
    auto loss = std::make_shared<double>(0.0);
    const TrainApi* a = api_;
    return async(info, {info[0], info[1], info[2], info[3]},
                 [=] { check_rc(*a, a->step(t, b.x, b.y, b.pos, b.mask, b.batch, scale, loss.get()), "train_step"); },
                 [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
  }

  // hasStage() -> whether the backend exports train_stage/train_step_staged (else only step).
  Napi::Value HasStage(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), api_ && api_->stage); }
  void need_stage(Napi::Env env, const char* fn) {
    if (!api_->stage)
      throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": the CUDA backend library lacks streamline_cuda_train_stage/"
                                        "step_staged (built before prefetching existed)");
  }

  // stage(x, target, positions, keyMask, batch) -> Promise<void>: uploads the next micro-batch into the idle input
  // slot; may run while a stepStaged is in flight. The arrays are kept alive (and must stay unchanged) until it settles.
  Napi::Value Stage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Stage);
    need_stage(env, "stage");
    const BatchArgs b = batch_args(info, "stage");
    const TrainApi* a = api_;
    return async(info, {info[0], info[1], info[2], info[3]},
                 [=] { check_rc(*a, a->stage(t, b.x, b.y, b.pos, b.mask, b.batch), "train_stage"); }, nullptr, Lane::Stage);
  }

  // hasStageBf16() -> whether the backend exports train_stage_bf16 (and, for stageLmBf16, train_stage_lm_bf16).
  Napi::Value HasStageBf16(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), api_ && api_->stage_bf16);
  }

  // stageBf16(xRows Uint16Array[T*D][batch], targetRows [batch], positions, keyMask, batch) -> Promise<void>: stage()
  // with the states as bf16 bits, one array per sequence (a pair cache's blocks, no gathering copy); widened on the GPU,
  // so stepStaged gives stage()'s result on the widened values. The arrays are kept alive until it settles.
  Napi::Value StageBf16(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Stage);
    if (!api_->stage_bf16)
      throw_error(env, "E_UNSUPPORTED", "stageBf16: the CUDA backend library lacks streamline_cuda_train_stage_bf16");
    const BatchArgs b = batch_args(info, "stageBf16", true);
    const TrainApi* a = api_;
    return async(info, {info[0], info[1], info[2], info[3]},
                 [=] { check_rc(*a, a->stage_bf16(t, b.xr->data(), b.yr->data(), b.pos, b.mask, b.batch), "train_stage_bf16"); },
                 nullptr, Lane::Stage);
  }

  // hasWindows() -> whether the backend takes sliding windows (setWindows).
  Napi::Value HasWindows(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), api_ && api_->set_windows);
  }
  // setWindows(window, tailWindows): synchronous, the backend only records them for the next steps.
  Napi::Value SetWindows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* fn = "setWindows";
    streamline_cuda_train* t = ready(env);
    if (!api_->set_windows)
      throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": the CUDA backend library lacks streamline_cuda_train_set_windows");
    const int64_t window = int_arg(env, info[0], "window");
    if (window < 0) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": window must be >= 0");
    const std::vector<int64_t> tail = window_list(env, info[1], std::string(fn) + ": tailWindows");
    rethrow(env, [&] {
      check_rc(*api_, api_->set_windows(t, window, int64_t(tail.size()), tail.empty() ? nullptr : tail.data()),
               "train_set_windows");
    });
    return env.Undefined();
  }

  // hasKeptPairs() -> whether the backend can keep training pairs on the GPU (keepPairs, putPair, stageKept, and
  // stageLmKept where it has stageLm).
  Napi::Value HasKeptPairs(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), api_ && api_->keep_pairs);
  }
  void need_kept(Napi::Env env, const char* fn) {
    if (!api_->keep_pairs)
      throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": the CUDA backend library lacks streamline_cuda_train_keep_pairs");
  }
  // keepPairs(blocks, targets, maxFraction) -> Promise<boolean>: reserves GPU storage for `blocks` bf16 pairs when it
  // fits in maxFraction of the free device memory (with the trainer's own later allocations); false, nothing reserved,
  // otherwise.
  Napi::Value KeepPairs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    need_kept(env, "keepPairs");
    const int64_t blocks = int_arg(env, info[0], "blocks");
    if (blocks < 1) throw_error(env, "E_NATIVE_ARG", "keepPairs: blocks must be positive");
    if (!info[1].IsBoolean()) throw_error(env, "E_NATIVE_ARG", "keepPairs: targets must be a boolean");
    const bool targets = info[1].As<Napi::Boolean>().Value();
    const double frac = number_arg(env, info[2], "maxFraction");
    if (!(frac > 0 && frac <= 1)) throw_error(env, "E_NATIVE_ARG", "keepPairs: maxFraction must be in (0, 1]");
    auto kept = std::make_shared<int>(0);
    const TrainApi* a = api_;
    return async(info, {}, [=] { check_rc(*a, a->keep_pairs(t, blocks, targets ? 1 : 0, frac, kept.get()), "train_keep_pairs"); },
                 [kept](Napi::Env e) -> Napi::Value { return Napi::Boolean::New(e, *kept != 0); });
  }

  // putPair(block, x Uint16Array[T*D], target Uint16Array[T*D] | null) -> Promise<void>: one kept block's bf16 states.
  Napi::Value PutPair(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    need_kept(env, "putPair");
    const int64_t block = int_arg(env, info[0], "block");
    const size_t n = spec_.T * spec_.D;
    const uint16_t* x = typed<Napi::Uint16Array>(env, info[1], napi_uint16_array, n, "putPair: x", "Uint16Array").Data();
    const uint16_t* y = absent(info[2]) ? nullptr
                                        : typed<Napi::Uint16Array>(env, info[2], napi_uint16_array, n, "putPair: target",
                                                                   "Uint16Array").Data();
    const TrainApi* a = api_;
    return async(info, {info[1], info[2]}, [=] { check_rc(*a, a->put_pair(t, block, x, y), "train_put_pair"); }, nullptr);
  }

  // Block indices of a kept-pair stage: an Int32Array of `batch` entries.
  std::shared_ptr<std::vector<int64_t>> blocks_arg(Napi::Env env, const Napi::Value& v, int64_t batch, const std::string& f) {
    const int32_t* p = typed<Napi::Int32Array>(env, v, napi_int32_array, size_t(batch), f + ": blocks", "Int32Array").Data();
    return std::make_shared<std::vector<int64_t>>(p, p + batch);
  }

  // stageKept(blocks Int32Array[batch], positions, keyMask, batch) -> Promise<void>: stage() from kept pairs by block
  // index, device to device; stepStaged then gives stageBf16's result on those blocks.
  Napi::Value StageKept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Stage);
    need_kept(env, "stageKept");
    const int64_t batch = int_arg(env, info[3], "batch");
    if (batch < 1 || size_t(batch) > spec_.B)
      throw_error(env, "E_SHAPE", "stageKept: batch must be in [1, " + std::to_string(spec_.B) + "] (the spec's batch)");
    const size_t M = size_t(batch) * spec_.T;
    auto blocks = blocks_arg(env, info[0], batch, "stageKept");
    const int32_t* pos = spec_.use_rope
                             ? typed<Napi::Int32Array>(env, info[1], napi_int32_array, M, "stageKept: positions", "Int32Array").Data()
                             : nullptr;
    const uint8_t* mask = absent(info[2]) ? nullptr
                                          : typed<Napi::Uint8Array>(env, info[2], napi_uint8_array, M, "stageKept: keyMask",
                                                                    "Uint8Array").Data();
    const TrainApi* a = api_;
    return async(info, {info[1], info[2]},
                 [=] { check_rc(*a, a->stage_kept(t, blocks->data(), pos, mask, batch), "train_stage_kept"); }, nullptr,
                 Lane::Stage);
  }

  // stepStaged(gradScale?) -> Promise<loss>: step() on the oldest staged batch.
  Napi::Value StepStaged(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Staged);
    need_stage(env, "stepStaged");
    float scale = 1.f;
    if (!absent(info[0])) {
      double gs = number_arg(env, info[0], "gradScale");
      if (!std::isfinite(gs)) throw_error(env, "E_NATIVE_ARG", "stepStaged: gradScale must be finite");
      scale = float(gs);
    }
    auto loss = std::make_shared<double>(0.0);
    const TrainApi* a = api_;
    return async(info, {}, [=] { check_rc(*a, a->step_staged(t, scale, loss.get()), "train_step_staged"); },
                 [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); }, Lane::Staged);
  }

  // hasEval() -> whether the backend exports train_eval (else validation needs getParams and a CPU forward).
  Napi::Value HasEval(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), api_ && api_->eval); }

  // eval(x, target, positions, keyMask, batch) -> Promise<Float64Array[batch]>: each sequence's loss under the current
  // weights (forward only; gradients and optimiser state untouched).
  Napi::Value Eval(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    if (!api_->eval)
      throw_error(env, "E_UNSUPPORTED", "eval: the CUDA backend library lacks streamline_cuda_train_eval (built before "
                                        "validation on the GPU existed)");
    const BatchArgs b = batch_args(info, "eval");
    Napi::Float64Array out = Napi::Float64Array::New(env, size_t(b.batch));
    double* dst = out.Data();
    const TrainApi* a = api_;
    auto ref = std::make_shared<Napi::Reference<Napi::Float64Array>>(Napi::Persistent(out));
    return async(info, {info[0], info[1], info[2], info[3], out},
                 [=] { check_rc(*a, a->eval(t, b.x, b.y, b.pos, b.mask, b.batch, dst), "train_eval"); },
                 [ref](Napi::Env) -> Napi::Value { return ref->Value(); });
  }

  // hasLm() -> whether the backend exports train_set_lm_tail/step_lm/eval_lm (else --loss lm trains on the CPU).
  Napi::Value HasLm(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), api_ && api_->set_lm_tail); }
  void need_lm(Napi::Env env, const char* fn) {
    if (!api_->set_lm_tail)
      throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": the CUDA backend library lacks streamline_cuda_train_step_lm "
                                        "(built before the lm loss on the GPU existed)");
  }

  // setLmTail(layers NativeLayerWeights[], headWeights {'final_norm.weight'?, 'final_norm.bias'?, 'lm_head.weight'})
  // -> Promise<void>: the frozen layers after the window (in order, any float dtype, the trainer's spec as a full
  // decoder layer) and the head, read as lmLossStep reads them and refused where it refuses them (post-norm is refused
  // at cudaTrainer, gate.bias and OPT project_out here, E_UNSUPPORTED). Copied by the backend before the promise
  // settles; replaces an earlier tail.
  Napi::Value SetLmTail(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* fn = "setLmTail";
    streamline_cuda_train* t = ready(env);
    need_lm(env, fn);
    std::vector<Napi::Value> keep;
    if (!info[0].IsArray()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": layers must be an array of weight objects");
    Napi::Array layers = info[0].As<Napi::Array>();
    if (layers.Length() > 0 && !lm_layers_)
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec.heads, kvHeads and headDim are required with frozen layers "
                                       "(the trainer was opened without them)");
    auto roles = std::make_shared<std::vector<streamline_cuda_weight>>(size_t(layers.Length()) * STREAMLINE_CUDA_ROLES);
    auto norms = std::make_shared<std::vector<streamline_cuda_weight>>(size_t(layers.Length()) * 2);
    auto post = std::make_shared<std::vector<streamline_cuda_weight>>(size_t(layers.Length()) * 2);
    bool qk_norm = false, post_norm = false;
    for (uint32_t k = 0; k < layers.Length(); k++) {
      const std::string what = std::string(fn) + ": layers[" + std::to_string(k) + "]";
      LayerWeights w = layer_weights(env, layers.Get(k), &keep, what);
      rethrow(env, [&] {
        try {
          validate_layer(lm_layer_, w);
        } catch (const Error& e) {
          throw Error(e.code, what + ": " + e.what());
        }
      });
      if (w.gate_b) throw_error(env, "E_UNSUPPORTED", what + ": gate.bias (Llama mlp_bias) is not supported by --loss lm");
      // The tail's roles array has no slot for them: without the function that takes them, dropping them would
      // back-propagate through different layers.
      if ((w.post_attn_norm_w || w.post_mlp_norm_w) && !api_->set_lm_tail_post_norm)
        throw_error(env, "E_UNSUPPORTED", what + ": post_attn_norm.weight/post_mlp_norm.weight (Gemma post-sublayer norms): "
                                                 "the CUDA backend library lacks streamline_cuda_train_set_lm_tail_post_norm "
                                                 "(built before post norms in the lm tail on the GPU); rebuild it, or train on the CPU");
      post_norm = post_norm || w.post_attn_norm_w || w.post_mlp_norm_w;
      (*post)[2 * size_t(k)] = cuda_weight(w.post_attn_norm_w);
      (*post)[2 * size_t(k) + 1] = cuda_weight(w.post_mlp_norm_w);
      // The roles array has no q/k norm: without the function that takes them the tail would run different layers.
      if ((w.q_norm_w || w.k_norm_w) && !api_->set_lm_tail_qk_norm)
        throw_error(env, "E_UNSUPPORTED", what + ": q_norm.weight/k_norm.weight (Qwen3): the CUDA backend library lacks "
                                                 "streamline_cuda_train_set_lm_tail_qk_norm (built before q/k norms in "
                                                 "the lm tail on the GPU); rebuild it, or train on the CPU");
      qk_norm = qk_norm || w.q_norm_w || w.k_norm_w;
      (*norms)[2 * size_t(k)] = cuda_weight(w.q_norm_w);
      (*norms)[2 * size_t(k) + 1] = cuda_weight(w.k_norm_w);
      for (int r = 0; r < STREAMLINE_CUDA_ROLES; r++)
        (*roles)[size_t(k) * STREAMLINE_CUDA_ROLES + r] = cuda_weight(*layer_weight_role(w, kCudaRoleNames[r]));
    }
    const std::string hwhat = std::string(fn) + ": headWeights";
    HeadWeights hw = lm_head_weights(env, info[1], &keep, hwhat);
    const HeadSpec hs = lm_head_spec(spec_, hw);
    rethrow(env, [&] { validate_head(hs, hw); });
    auto head = std::make_shared<std::array<streamline_cuda_weight, 3>>(
        std::array<streamline_cuda_weight, 3>{cuda_weight(hw.norm_w), cuda_weight(hw.norm_b), cuda_weight(hw.lm_head)});
    const int64_t n_layers = int64_t(layers.Length()), vocab = int64_t(hs.vocab);
    // The spec's per-layer tail ropes (cudaTrainer) are per frozen layer: set_lm_tail resets them, so they follow it.
    const std::shared_ptr<const TailRope> rope = tail_rope_;
    if (rope && int64_t(rope->scalings.size()) != n_layers)
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": " + std::to_string(n_layers) + " frozen layers, but the "
                                       "trainer's spec.tailRopeInvFreq / tailRopeAttentionScaling have " +
                                       std::to_string(rope->scalings.size()) + " entries");
    const TrainApi* a = api_;
    return async(info, keep, [=] {
      auto& h = *head;
      check_rc(*a, a->set_lm_tail(t, n_layers, roles->data(), &h[0], &h[1], &h[2], vocab), "train_set_lm_tail");
      if (qk_norm) check_rc(*a, a->set_lm_tail_qk_norm(t, n_layers, norms->data()), "train_set_lm_tail_qk_norm");
      if (post_norm) check_rc(*a, a->set_lm_tail_post_norm(t, n_layers, post->data()), "train_set_lm_tail_post_norm");
      if (rope)
        check_rc(*a, a->set_lm_tail_rope(t, n_layers, rope->rows.data(), rope->scalings.data()), "train_set_lm_tail_rope");
    });
  }

  // The inputs of one lm micro-batch, as stepLm() and evalLm() take them (info[0..4]): targets Int32Array[batch*T]
  // (the next token of each row, -1 = none) in place of the mse target.
  struct LmBatchArgs {
    int64_t batch;
    const float* x;
    const int32_t *targets, *pos;
    const uint8_t* mask;
    Rows xr;
  };
  // info[0]: x f32, one bf16 row array per sequence (stageLmBf16), or block indices the caller reads (stageLmKept).
  enum class XMode { F32, Rows, Kept };
  LmBatchArgs lm_batch_args(const Napi::CallbackInfo& info, const char* fn, XMode mode = XMode::F32) {
    Napi::Env env = info.Env();
    const std::string f(fn);
    LmBatchArgs b{};
    b.batch = int_arg(env, info[4], "batch");
    if (b.batch < 1 || size_t(b.batch) > spec_.B)
      throw_error(env, "E_SHAPE", f + ": batch must be in [1, " + std::to_string(spec_.B) + "] (the spec's batch)");
    size_t M = size_t(b.batch) * spec_.T, n = M * spec_.D;
    if (mode == XMode::Rows) b.xr = rows_arg(env, info[0], b.batch, f + ": xRows");
    else if (mode == XMode::F32) b.x = typed<Napi::Float32Array>(env, info[0], napi_float32_array, n, f + ": x", "Float32Array").Data();
    b.targets = typed<Napi::Int32Array>(env, info[1], napi_int32_array, M, f + ": targets", "Int32Array").Data();
    if (spec_.use_rope || lm_layer_.use_rope)
      b.pos = typed<Napi::Int32Array>(env, info[2], napi_int32_array, M, f + ": positions", "Int32Array").Data();
    b.mask = absent(info[3]) ? nullptr
                             : typed<Napi::Uint8Array>(env, info[3], napi_uint8_array, M, f + ": keyMask", "Uint8Array").Data();
    return b;
  }

  // stepLm(x Float32Array[batch*T*D], targets Int32Array[batch*T], positions, keyMask, batch, gradScale?) ->
  // Promise<loss>: step() with the next-token loss (mean NLL over rows with a target); E_CUDA without a tail.
  Napi::Value StepLm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    need_lm(env, "stepLm");
    const LmBatchArgs b = lm_batch_args(info, "stepLm");
    float scale = 1.f;
    if (!absent(info[5])) {
      double gs = number_arg(env, info[5], "gradScale");
      if (!std::isfinite(gs)) throw_error(env, "E_NATIVE_ARG", "stepLm: gradScale must be finite");
      scale = float(gs);
    }
    auto loss = std::make_shared<double>(0.0);
    const TrainApi* a = api_;
    return async(info, {info[0], info[1], info[2], info[3]},
                 [=] { check_rc(*a, a->step_lm(t, b.x, b.targets, b.pos, b.mask, b.batch, scale, loss.get()), "train_step_lm"); },
                 [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
  }

  // evalLm(x, targets, positions, keyMask, batch) -> Promise<Float64Array[batch]>: each sequence's mean next-token NLL
  // over its own rows with a target (0 when none), lmLossEval of that sequence alone; no state changes.
  Napi::Value EvalLm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    need_lm(env, "evalLm");
    const LmBatchArgs b = lm_batch_args(info, "evalLm");
    Napi::Float64Array out = Napi::Float64Array::New(env, size_t(b.batch));
    double* dst = out.Data();
    const TrainApi* a = api_;
    auto ref = std::make_shared<Napi::Reference<Napi::Float64Array>>(Napi::Persistent(out));
    return async(info, {info[0], info[1], info[2], info[3], out},
                 [=] { check_rc(*a, a->eval_lm(t, b.x, b.targets, b.pos, b.mask, b.batch, dst), "train_eval_lm"); },
                 [ref](Napi::Env) -> Napi::Value { return ref->Value(); });
  }

  // hasStageLm() -> whether the backend exports train_stage_lm/train_step_lm_staged (and the lm loss); else lm
  // micro-batches go through stepLm only.
  Napi::Value HasStageLm(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), api_ && api_->stage_lm);
  }
  void need_stage_lm(Napi::Env env, const char* fn) {
    if (!api_->stage_lm)
      throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": the CUDA backend library lacks streamline_cuda_train_stage_lm/"
                                        "step_lm_staged (built before prefetch for the lm loss existed)");
  }

  // stageLm(x, targets, positions, keyMask, batch) -> Promise<void>: stage() with stepLm's inputs; the backend checks
  // the targets here (E_CUDA for one >= vocab, or without a tail). May run while a stepLmStaged is in flight; the
  // arrays are kept alive (and must stay unchanged) until it settles.
  Napi::Value StageLm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Stage, true);
    need_stage_lm(env, "stageLm");
    const LmBatchArgs b = lm_batch_args(info, "stageLm");
    const TrainApi* a = api_;
    return async(info, {info[0], info[1], info[2], info[3]},
                 [=] { check_rc(*a, a->stage_lm(t, b.x, b.targets, b.pos, b.mask, b.batch), "train_stage_lm"); }, nullptr,
                 Lane::Stage, true);
  }

  // stageLmBf16(xRows Uint16Array[T*D][batch], targets, positions, keyMask, batch) -> Promise<void>: stageLm() with x
  // as bf16 rows, one array per sequence (see stageBf16). Needs hasStageBf16() and hasStageLm().
  Napi::Value StageLmBf16(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Stage, true);
    need_stage_lm(env, "stageLmBf16");
    if (!api_->stage_lm_bf16)
      throw_error(env, "E_UNSUPPORTED", "stageLmBf16: the CUDA backend library lacks streamline_cuda_train_stage_lm_bf16");
    const LmBatchArgs b = lm_batch_args(info, "stageLmBf16", XMode::Rows);
    const TrainApi* a = api_;
    return async(info, {info[0], info[1], info[2], info[3]},
                 [=] {
                   check_rc(*a, a->stage_lm_bf16(t, b.xr->data(), b.targets, b.pos, b.mask, b.batch),
                            "train_stage_lm_bf16");
                 },
                 nullptr, Lane::Stage, true);
  }

  // stageLmKept(blocks Int32Array[batch], targets, positions, keyMask, batch) -> Promise<void>: stageLm() from kept
  // pairs by block index (see stageKept).
  Napi::Value StageLmKept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Stage, true);
    need_stage_lm(env, "stageLmKept");
    if (!api_->stage_lm_kept)
      throw_error(env, "E_UNSUPPORTED", "stageLmKept: the CUDA backend library lacks streamline_cuda_train_stage_lm_kept");
    const LmBatchArgs b = lm_batch_args(info, "stageLmKept", XMode::Kept);
    auto blocks = blocks_arg(env, info[0], b.batch, "stageLmKept");
    const TrainApi* a = api_;
    return async(info, {info[1], info[2], info[3]},
                 [=] {
                   check_rc(*a, a->stage_lm_kept(t, blocks->data(), b.targets, b.pos, b.mask, b.batch),
                            "train_stage_lm_kept");
                 },
                 nullptr, Lane::Stage, true);
  }

  // stepLmStaged(gradScale?) -> Promise<loss>: stepLm() on the oldest staged batch; E_CUDA when none is staged or it
  // was staged by stage() (it stays staged).
  Napi::Value StepLmStaged(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env, Lane::Staged, true);
    need_stage_lm(env, "stepLmStaged");
    float scale = 1.f;
    if (!absent(info[0])) {
      double gs = number_arg(env, info[0], "gradScale");
      if (!std::isfinite(gs)) throw_error(env, "E_NATIVE_ARG", "stepLmStaged: gradScale must be finite");
      scale = float(gs);
    }
    auto loss = std::make_shared<double>(0.0);
    const TrainApi* a = api_;
    return async(info, {}, [=] { check_rc(*a, a->step_lm_staged(t, scale, loss.get()), "train_step_lm_staged"); },
                 [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); }, Lane::Staged, true);
  }

  // apply({lr, beta1, beta2, eps, weightDecay, maxNorm, step}) -> Promise<gradNorm>: clip, AdamW, gradients zeroed.
  // A non-finite norm updates nothing (the caller stops, as the CPU trainer does).
  Napi::Value Apply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    if (!info[0].IsObject()) throw_error(env, "E_NATIVE_ARG", "apply: options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto num = [&](const char* k) {
      Napi::Value v = o.Get(k);
      if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
        throw_error(env, "E_NATIVE_ARG", std::string("apply: options.") + k + " must be a finite number");
      return v.As<Napi::Number>().DoubleValue();
    };
    streamline_cuda_adamw opt{num("lr"), num("beta1"), num("beta2"), num("eps"), num("weightDecay"), num("maxNorm"), 0};
    double step = num("step");
    // The same ranges as adamwStep (binding_backward.cpp).
    if (!(opt.lr >= 0) || !(opt.eps >= 0) || !(opt.weight_decay >= 0) || !(opt.beta1 >= 0 && opt.beta1 < 1) ||
        !(opt.beta2 >= 0 && opt.beta2 < 1))
      throw_error(env, "E_NATIVE_ARG", "apply: lr, eps, weightDecay must be >= 0 and beta1, beta2 in [0, 1)");
    if (step < 1 || step != std::floor(step)) throw_error(env, "E_NATIVE_ARG", "apply: options.step must be an integer >= 1");
    opt.step = int64_t(step);
    auto norm = std::make_shared<double>(0.0);
    const TrainApi* a = api_;
    return async(info, {}, [=] { check_rc(*a, a->apply(t, &opt, norm.get()), "train_apply"); },
                 [norm](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *norm); });
  }

  // The role named by info[0] (a parameter of this trainer) and its element count.
  int role_arg(Napi::Env env, const Napi::Value& v, const char* fn, size_t* numel) {
    std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    int r = 0;
    while (r < kRoleCount && name != role_name(r)) r++;
    if (r == kRoleCount || !present_[r])
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": '" + name + "' is not a parameter of this trainer");
    size_t rows, cols;
    role_shape(spec_, r, &rows, &cols);
    *numel = rows * cols;
    return r;
  }

  Napi::Value Get(const Napi::CallbackInfo& info, bool grads) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    size_t n;
    const int r = role_arg(env, info[0], grads ? "getGrads" : "getParams", &n);
    size_t rows = n, cols = 1;
    Napi::Float32Array out = Napi::Float32Array::New(env, rows * cols);
    float* dst = out.Data();
    int64_t numel = int64_t(rows * cols);
    const TrainApi* a = api_;
    auto ref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(out));
    return async(info, {out}, [=] {
      check_rc(*a, grads ? a->get_grads(t, r, dst, numel) : a->get_params(t, r, dst, numel), grads ? "train_get_grads" : "train_get_params");
    }, [ref](Napi::Env) -> Napi::Value { return ref->Value(); });
  }
  // getParams(role) -> Promise<Float32Array>: the role's f32 master weights; getGrads(role): its accumulated gradient.
  Napi::Value GetParams(const Napi::CallbackInfo& info) { return Get(info, false); }
  Napi::Value GetGrads(const Napi::CallbackInfo& info) { return Get(info, true); }

  // hasState() -> whether the backend exports get_state/set_state (else checkpoints and resume stay CPU-only).
  Napi::Value HasState(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), api_ && api_->get_state && api_->set_state);
  }
  void need_state(Napi::Env env, const char* fn) {
    if (!api_->get_state || !api_->set_state)
      throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": the CUDA backend library lacks streamline_cuda_train_get_state/"
                                        "set_state (built before GPU checkpoints existed)");
  }

  // getState(role) -> Promise<{param, m, v}>: the role's f32 master weights and AdamW moments (Float32Array each).
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    need_state(env, "getState");
    size_t n;
    const int r = role_arg(env, info[0], "getState", &n);
    Napi::Object out = Napi::Object::New(env);
    Napi::Float32Array p = Napi::Float32Array::New(env, n), m = Napi::Float32Array::New(env, n),
                       v = Napi::Float32Array::New(env, n);
    out.Set("param", p);
    out.Set("m", m);
    out.Set("v", v);
    float *dp = p.Data(), *dm = m.Data(), *dv = v.Data();
    const int64_t numel = int64_t(n);
    const TrainApi* a = api_;
    auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out));
    return async(info, {out}, [=] { check_rc(*a, a->get_state(t, r, dp, dm, dv, numel), "train_get_state"); },
                 [ref](Napi::Env) -> Napi::Value { return ref->Value(); });
  }

  // setState(role, {param, m, v}) -> Promise<void>: overwrite the role's weights and moments (Float32Array[numel]
  // each; copied before the promise settles). Call between apply() and the next step() (gradients are not state).
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_train* t = ready(env);
    need_state(env, "setState");
    size_t n;
    const int r = role_arg(env, info[0], "setState", &n);
    if (!info[1].IsObject()) throw_error(env, "E_NATIVE_ARG", "setState: state must be an object {param, m, v}");
    Napi::Object st = info[1].As<Napi::Object>();
    const std::string what = std::string("setState: ") + role_name(r);
    Napi::Value pv = st.Get("param"), mv = st.Get("m"), vv = st.Get("v");
    const float* p = typed<Napi::Float32Array>(env, pv, napi_float32_array, n, what + ".param", "Float32Array").Data();
    const float* m = typed<Napi::Float32Array>(env, mv, napi_float32_array, n, what + ".m", "Float32Array").Data();
    const float* v = typed<Napi::Float32Array>(env, vv, napi_float32_array, n, what + ".v", "Float32Array").Data();
    const int64_t numel = int64_t(n);
    const TrainApi* a = api_;
    return async(info, {pv, mv, vv}, [=] { check_rc(*a, a->set_state(t, r, p, m, v, numel), "train_set_state"); });
  }

  // destroy(): frees the device memory now (idempotent).
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (busy_ || staging_) throw_error(env, "E_CUDA_BUSY", "CUDA trainer: cannot destroy while a call is in flight");
    if (t_) api_->destroy(t_);
    t_ = nullptr;
    return env.Undefined();
  }

  friend Napi::Value OpenTrainer(const Napi::CallbackInfo& info);
  const TrainApi* api_ = nullptr;
  // spec.tailRopeInvFreq / tailRopeAttentionScaling as train_set_lm_tail_rope takes them (rows [n * rot/2], a null
  // entry filled with ropeInvFreq); null when the spec has neither.
  struct TailRope {
    std::vector<float> rows, scalings;
  };
  std::shared_ptr<const TailRope> tail_rope_;
  ReplacementSpec spec_;
  LayerSpec lm_layer_;      // the frozen layers' spec (the trainer's spec as a full decoder layer)
  bool lm_layers_ = false;  // whether the spec has heads, so the tail may have layers (an mlp spec may lack them)
  bool present_[kRoleCount] = {};
  streamline_cuda_train* t_ = nullptr;
  bool busy_ = false, step_staged_ = false, staged_lm_ = false, staging_ = false, stage_lm_ = false;
};

Napi::FunctionReference* g_trainer_ctor = nullptr;

// cudaTrainer(kind, spec, params, ropeInvFreq) -> Promise<CudaTrainer>: params are copied to the device (the host
// arrays may change once the promise settles).
Napi::Value OpenTrainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "cudaTrainer";
  const TrainApi& api = train_api(env);
  ReplacementKind kind = kind_arg(env, info[0], fn);
  ReplacementSpec s = spec_arg(env, info[1], kind, fn);
  auto params = std::make_shared<ReplacementParams>();
  params->fill(nullptr);
  roles_arg(env, info[2], kind, s, params.get(), fn, "params", nullptr);
  // Nor has it the post-sublayer norms: without train_set_post_norm, dropping them would train a different layer.
  const bool post_norm = (*params)[kRolePostAttnNormW] || (*params)[kRolePostMlpNormW];
  if (post_norm && !api.set_post_norm)
    throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": params['post_attn_norm.weight'/'post_mlp_norm.weight'] (Gemma "
                                      "post-sublayer norms): the CUDA backend library lacks streamline_cuda_train_set_post_norm "
                                      "(built before post norms were trained on the GPU); rebuild it, or train on the CPU");
  // train_create's array has no slot for them: without train_set_qk_norm, dropping them would train a different layer
  // than the one exported.
  const bool qk_norm = (*params)[kRoleQNormW] || (*params)[kRoleKNormW];
  if (qk_norm && !api.set_qk_norm)
    throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": params['q_norm.weight'/'k_norm.weight'] (Qwen3): the CUDA "
                                      "backend library lacks streamline_cuda_train_set_qk_norm (built before q/k norms "
                                      "were trained on the GPU); rebuild it, or train on the CPU");
  // The frozen layers of an lm tail (setLmTail) are full decoder layers of the trainer's spec: for an mlp replacement
  // the spec is read a second time as a layer's (heads, RoPE, attention scale), as lmLossStep reads it, and those
  // fields go to the backend too (the mlp's own step ignores them).
  const bool has_heads = kind == ReplacementKind::Layer || !absent(info[1].As<Napi::Object>().Get("heads"));
  const ReplacementSpec ls = kind == ReplacementKind::Layer || !has_heads ? s : spec_arg(env, info[1], ReplacementKind::Layer, fn);
  // The trainer's C spec has no rotary width (its layout is fixed): partial RoPE (Phi-4-mini's partial_rotary_factor)
  // goes through train_set_rotary_dim, and without it the library would rotate whole heads, a different layer.
  const bool partial = has_heads && ls.use_rope && ls.rotary != 0 && ls.rotary != ls.Dh;
  if (partial && !api.set_rotary_dim)
    throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": spec.rotaryDim " + std::to_string(ls.rotary) + " < headDim " +
                                      std::to_string(ls.Dh) + " (partial RoPE): the CUDA backend library lacks streamline_cuda_train_set_rotary_dim "
                                      "(built before partial RoPE was trained on the GPU); rebuild it, or train on the CPU");
  const int64_t rot = partial ? int64_t(ls.rotary) : 0;
  const float* inv = nullptr;
  // train_create copies head_dim/2 frequencies: a partial model's rot/2 go in zero-padded (the padding is never read
  // once train_set_rotary_dim has replaced them, before any step).
  auto padded = std::make_shared<std::vector<float>>();
  if (ls.use_rope && has_heads) {
    const size_t n = partial ? ls.rotary / 2 : ls.Dh / 2;
    inv = typed<Napi::Float32Array>(env, info[3], napi_float32_array, n, std::string(fn) + ": ropeInvFreq", "Float32Array").Data();
    if (partial) {
      padded->assign(ls.Dh / 2, 0.f);
      std::copy(inv, inv + n, padded->begin());
    }
  }
  // The lm tail's per-layer RoPE (lmLossStep's spec.tailRopeInvFreq / tailRopeAttentionScaling: Gemma 3's sliding and
  // full layers), read as the CPU lm binding reads them and handed over at setLmTail. A library without
  // train_set_lm_tail_rope would rotate every frozen layer with the trainer's frequencies: refused rather than dropped.
  std::shared_ptr<CudaTrainer::TailRope> tail_rope;
  {
    Napi::Object so = info[1].As<Napi::Object>();
    Napi::Value tf = so.Get("tailRopeInvFreq"), ts = so.Get("tailRopeAttentionScaling");
    if (!absent(tf) || !absent(ts)) {
      const std::string what = std::string(fn) + ": spec.tailRopeInvFreq";
      if (!api.set_lm_tail_rope)
        throw_error(env, "E_UNSUPPORTED", what + " / tailRopeAttentionScaling (frozen layers with their own RoPE): the CUDA "
                                          "backend library lacks streamline_cuda_train_set_lm_tail_rope (built before "
                                          "per-layer RoPE in the lm tail on the GPU); rebuild it, or train on the CPU");
      if (!has_heads || !ls.use_rope)
        throw_error(env, "E_NATIVE_ARG", what + ": given for layers without RoPE (spec.useRope false or no heads)");
      const size_t half = (partial ? ls.rotary : ls.Dh) / 2;
      auto r = std::make_shared<CudaTrainer::TailRope>();
      size_t n = 0;
      bool have_n = false;
      if (!absent(tf)) {
        if (!tf.IsArray()) throw_error(env, "E_NATIVE_ARG", what + " must be an array with one Float32Array (or null) per frozen layer");
        n = tf.As<Napi::Array>().Length(), have_n = true;
      }
      if (!absent(ts)) {
        const std::string sw = std::string(fn) + ": spec.tailRopeAttentionScaling";
        if (!ts.IsArray()) throw_error(env, "E_NATIVE_ARG", sw + " must be an array with one number per frozen layer");
        Napi::Array a = ts.As<Napi::Array>();
        if (have_n && a.Length() != n)
          throw_error(env, "E_NATIVE_ARG", sw + " has " + std::to_string(a.Length()) + " entries, spec.tailRopeInvFreq " +
                                               std::to_string(n));
        n = a.Length();
        for (uint32_t k = 0; k < a.Length(); k++) {
          const double v = number_arg(env, a.Get(k), (sw + "[]").c_str());
          if (!std::isfinite(v)) throw_error(env, "E_NATIVE_ARG", sw + " entries must be finite");
          r->scalings.push_back(float(v));
        }
      } else {
        r->scalings.assign(n, ls.rope_attention_scaling);  // as the CPU: absent = the replacement's
      }
      r->rows.resize(n * half);
      for (uint32_t k = 0; k < n; k++) {
        Napi::Value e = absent(tf) ? env.Undefined() : tf.As<Napi::Array>().Get(k);
        // null = the replacement's frequencies, which the backend recognises and keeps on its own table
        const float* f = absent(e) ? inv
                                   : typed<Napi::Float32Array>(env, e, napi_float32_array, half,
                                                               what + "[" + std::to_string(k) + "]", "Float32Array").Data();
        std::copy(f, f + half, r->rows.begin() + long(k * half));
      }
      tail_rope = r;
    }
  }
  if (s.grad_scale != 1.f) throw_error(env, "E_NATIVE_ARG", "cudaTrainer: spec.gradScale is per step here (step's gradScale)");
  streamline_cuda_train_spec cs{};
  cs.batch = int64_t(s.B);
  cs.seq_len = int64_t(s.T);
  cs.hidden = int64_t(s.D);
  cs.heads = int64_t(s.H);
  cs.kv_heads = int64_t(s.Hk);
  cs.head_dim = int64_t(s.Dh);
  cs.intermediate = int64_t(s.F);
  cs.norm = s.layer_norm ? 1 : 0;
  cs.activation = int32_t(s.act);
  cs.gated = s.gated;
  cs.use_rope = has_heads && ls.use_rope;
  cs.use_cublaslt = 1;  // "available" already required cuBLASLt; the fallback GEMM is for the harness
  cs.norm_eps = s.norm_eps;
  cs.attn_scale = ls.attn_scale;  // resolved by spec_arg (1/sqrt(headDim) when 0 or absent), as the CPU step uses it
  cs.rope_attention_scaling = ls.rope_attention_scaling;

  Napi::Object obj = g_trainer_ctor->New({});
  CudaTrainer* self = CudaTrainer::Unwrap(obj);
  self->api_ = &api;
  self->spec_ = s;
  ReplacementSpec tail = ls;
  tail.use_rope = cs.use_rope != 0;
  self->lm_layer_ = layer_spec_of(tail);
  self->lm_layers_ = has_heads;
  self->tail_rope_ = tail_rope;
  for (int r = 0; r < kRoleCount; r++) self->present_[r] = (*params)[r] != nullptr;
  self->busy_ = true;
  const TrainApi* a = &api;
  int32_t k = kind == ReplacementKind::Layer ? 1 : 0;
  return run_async(env, {info[2], info[3], obj}, [=] {
    streamline_cuda_train* t = nullptr;
    check_rc(*a, a->create(k, &cs, params->data(), rot ? padded->data() : inv, &t), "train_create");
    self->t_ = t;
    if (rot) check_rc(*a, a->set_rotary_dim(t, rot, inv), "train_set_rotary_dim");
    if (qk_norm) check_rc(*a, a->set_qk_norm(t, (*params)[kRoleQNormW], (*params)[kRoleKNormW]), "train_set_qk_norm");
    if (post_norm)
      check_rc(*a, a->set_post_norm(t, (*params)[kRolePostAttnNormW], (*params)[kRolePostMlpNormW]), "train_set_post_norm");
  }, [ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(obj))](Napi::Env) -> Napi::Value {
    return ref->Value();
  }, [self] { self->busy_ = false; });
}

}  // namespace

STREAMLINE_BINDING(cuda_train) {
  Napi::Function ctor = CudaTrainer::Define(env);
  g_trainer_ctor = new Napi::FunctionReference(Napi::Persistent(ctor));
  exports.Set("cudaTrainer", Napi::Function::New(env, OpenTrainer, "cudaTrainer"));
}
