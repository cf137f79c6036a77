// Module entry: runs every STREAMLINE_BINDING initialiser. Native exceptions become JS errors with a code.
#include <vector>

#include "register.h"

namespace streamline::binding {

namespace {
struct Entry { const char* name; InitFn fn; };
std::vector<Entry>& registry() {
  static std::vector<Entry> r;
  return r;
}
}  // namespace

Registrar::Registrar(const char* name, InitFn fn) { registry().push_back({name, fn}); }

void init_all(Napi::Env env, Napi::Object exports) {
  for (auto& e : registry()) e.fn(env, exports);
}

}  // namespace streamline::binding

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  streamline::binding::init_all(env, exports);
  return exports;
}

NODE_API_MODULE(streamline, Init)
