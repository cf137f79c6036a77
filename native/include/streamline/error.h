// The one exception type the C++ core throws: a stable code (E_...) and a message naming what was wrong.
#pragma once
#include <stdexcept>
#include <string>

namespace streamline {

struct Error : std::runtime_error {
  std::string code;
  Error(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

}  // namespace streamline
