// cuBLASLt is never loaded in the emulation: every GEMM takes the fallback kernel. Compiled by run.sh, train.sh and
// forward.sh beside the rewritten kernels.
#include <string>

#include "cublaslt_loader.h"

namespace streamline { namespace cuda { namespace lt {
const Api* api() { return nullptr; }
const std::string& reason() { static const std::string r = "not loaded in the CPU emulation"; return r; }
}}}
