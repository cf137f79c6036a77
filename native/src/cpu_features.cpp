// Detects the CPU's vector extensions once and asks Linux for AMX tile permission when AMX exists.
#include "streamline/cpu_features.h"

#include <cstdlib>
#include <cstring>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace streamline {

namespace {

bool request_amx_permission() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return false;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bitmask) != 0) return false;
  return (bitmask & (1ul << XFEATURE_XTILEDATA)) != 0;
#else
  return false;
#endif
}

CpuLevel parse_level(const char* s, CpuLevel fallback) {
  if (!s || !*s) return fallback;
  if (!std::strcmp(s, "scalar")) return CpuLevel::Scalar;
  if (!std::strcmp(s, "avx2")) return CpuLevel::AVX2;
  if (!std::strcmp(s, "avx512")) return CpuLevel::AVX512;
  if (!std::strcmp(s, "avx512bf16")) return CpuLevel::AVX512BF16;
  if (!std::strcmp(s, "amx")) return CpuLevel::AMX;
  return fallback;
}

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__)
  __builtin_cpu_init();
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
  f.amx_bf16 = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16");
  if (f.amx_bf16) f.amx_permitted = request_amx_permission();
#endif
  CpuLevel l = CpuLevel::Scalar;
  if (f.avx2_fma) l = CpuLevel::AVX2;
  if (l == CpuLevel::AVX2 && f.avx512f && f.avx512bw) l = CpuLevel::AVX512;
  if (l == CpuLevel::AVX512 && f.avx512bf16) l = CpuLevel::AVX512BF16;
  if (l == CpuLevel::AVX512BF16 && f.amx_bf16 && f.amx_permitted) l = CpuLevel::AMX;
  f.detected = l;
  CpuLevel want = parse_level(std::getenv("STREAMLINE_CPU"), l);
  f.level = int(want) < int(l) ? want : l;
  return f;
}

#if defined(STREAMLINE_HAVE_BLAS) && defined(__linux__) && defined(__x86_64__)
// OpenBLAS 0.3.21 (DYNAMIC_ARCH) misdetects recent CPUs (AMD Zen 4, Sapphire Rapids) as Prescott and runs
// 5x slower. It reads OPENBLAS_CORETYPE in its own load-time constructor, so this one runs first (a priority
// constructor precedes every plain one in the same library) and picks a core from CPUID when the user has not.
// CPUID, not /proc/cpuinfo: under an emulator (qemu-x86_64 -cpu Nehalem) the file shows the host's flags.
__attribute__((constructor(101))) void choose_openblas_coretype() {
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) setenv("OPENBLAS_CORETYPE", "Haswell", 0);
  // Otherwise OpenBLAS's own detection is right (it knows the older cores).
}
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* cpu_level_name(CpuLevel l) {
  switch (l) {
    case CpuLevel::Scalar: return "scalar";
    case CpuLevel::AVX2: return "avx2";
    case CpuLevel::AVX512: return "avx512";
    case CpuLevel::AVX512BF16: return "avx512bf16";
    case CpuLevel::AMX: return "amx";
  }
  return "?";
}

}  // namespace streamline
