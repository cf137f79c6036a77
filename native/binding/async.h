// Runs work on a libuv pool thread and settles a Promise on the JS thread. The work function must not touch
// napi; values it needs are captured as plain pointers while the JS objects are kept alive by references.
#pragma once
#include <napi.h>

#include <functional>
#include <vector>

namespace streamline::binding {

// settled (optional) runs on the JS thread just before the promise is resolved or rejected, whatever the outcome.
Napi::Promise run_async(Napi::Env env, const std::vector<Napi::Value>& keep_alive, std::function<void()> work,
                        std::function<Napi::Value(Napi::Env)> done = nullptr, std::function<void()> settled = nullptr);

}  // namespace streamline::binding
