#include "async.h"

#include "streamline/error.h"

namespace streamline::binding {

namespace {

class LambdaWorker : public Napi::AsyncWorker {
 public:
  LambdaWorker(Napi::Env env, const std::vector<Napi::Value>& keep, std::function<void()> work,
               std::function<Napi::Value(Napi::Env)> done, std::function<void()> settled)
      : Napi::AsyncWorker(env, "streamline"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)), settled_(std::move(settled)) {
    for (auto& v : keep)
      if (v.IsObject()) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const streamline::Error& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "E_NATIVE";
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (settled_) settled_();
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    if (settled_) settled_();
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    err.Set("code", Napi::String::New(Env(), code_));
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::function<void()> settled_;
  std::vector<Napi::ObjectReference> refs_;
  std::string code_;
};

}  // namespace

Napi::Promise run_async(Napi::Env env, const std::vector<Napi::Value>& keep_alive, std::function<void()> work,
                        std::function<Napi::Value(Napi::Env)> done, std::function<void()> settled) {
  auto* w = new LambdaWorker(env, keep_alive, std::move(work), std::move(done), std::move(settled));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace streamline::binding
