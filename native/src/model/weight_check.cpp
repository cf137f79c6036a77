#include <string>

#include "streamline/convert.h"
#include "streamline/error.h"
#include "streamline/model.h"

namespace streamline {

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
}  // namespace

void check_weight(const WeightView& w, const char* role, const std::vector<int64_t>& want, bool required) {
  if (!w) {
    if (required) throw Error("E_SHAPE", std::string(role) + ": required weight is missing");
    return;
  }
  if (!is_float_dtype(w.dtype))
    throw Error("E_DTYPE", std::string(role) + ": expected f32, bf16 or f16, got " + dtype_name(w.dtype));
  if (w.shape != want)
    throw Error("E_SHAPE", std::string(role) + ": expected shape " + shape_str(want) + ", got " + shape_str(w.shape));
}

}  // namespace streamline
