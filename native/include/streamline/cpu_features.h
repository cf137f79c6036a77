// What this CPU can run, and which level the kernels should use. The level is detected once; the environment
// variable STREAMLINE_CPU (scalar | avx2 | avx512 | avx512bf16 | amx) lowers it for testing, never raises it.
#pragma once

namespace streamline {

enum class CpuLevel : int { Scalar = 0, AVX2 = 1, AVX512 = 2, AVX512BF16 = 3, AMX = 4 };

struct CpuFeatures {
  bool avx2_fma = false, avx512f = false, avx512bw = false, avx512bf16 = false, amx_bf16 = false;
  bool amx_permitted = false;  // Linux granted XTILEDATA to this process
  CpuLevel detected = CpuLevel::Scalar;
  CpuLevel level = CpuLevel::Scalar;  // after STREAMLINE_CPU
};

const CpuFeatures& cpu_features();
inline CpuLevel cpu_level() { return cpu_features().level; }
const char* cpu_level_name(CpuLevel l);

}  // namespace streamline
