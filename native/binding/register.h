// Each binding file registers its exports with STREAMLINE_BINDING(name) { exports.Set(...); }.
// addon.cpp calls every registered initialiser; no central list to edit when a file is added.
#pragma once
#include <napi.h>

namespace streamline::binding {

using InitFn = void (*)(Napi::Env, Napi::Object);
struct Registrar {
  Registrar(const char* name, InitFn fn);
};
void init_all(Napi::Env env, Napi::Object exports);

}  // namespace streamline::binding

#define STREAMLINE_BINDING(name)                                                   \
  static void streamline_binding_##name(Napi::Env env, Napi::Object exports);      \
  static ::streamline::binding::Registrar streamline_registrar_##name(#name,       \
                                                                      streamline_binding_##name); \
  static void streamline_binding_##name(Napi::Env env, Napi::Object exports)
