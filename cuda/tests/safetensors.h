// Minimal safetensors reader for the harness (GPU machines have no Node.js): memory-maps the file, parses the
// JSON header and checks it (header size cap, dtype x shape = byte size, offsets inside the data section).
// Also a tiny JSON reader for config.json.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "streamline/dtype.h"
#include "streamline/mapped_file.h"

namespace harness {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  double num = 0;
  bool b = false;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;
  const Json* get(const std::string& k) const {
    auto it = obj.find(k);
    return it == obj.end() ? nullptr : &it->second;
  }
  double number_or(const std::string& k, double d) const {
    const Json* j = get(k);
    return j && j->kind == Number ? j->num : d;
  }
};
// Throws std::runtime_error with the offset on malformed input.
Json parse_json(const std::string& text);

struct StTensor {
  std::string dtype;  // "BF16", "F16", "F32", "I32", "I64", "U8", "BOOL"
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
  size_t numel() const;
  bool has_dtype(streamline::DType* out) const;
};

class SafeTensors {
 public:
  // Throws std::runtime_error naming the file and the problem.
  explicit SafeTensors(const std::string& path);
  ~SafeTensors();
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;
  const StTensor* find(const std::string& name) const;
  const std::map<std::string, StTensor>& tensors() const { return tensors_; }

 private:
  streamline::MappedFile file_;
  std::map<std::string, StTensor> tensors_;
};

std::string read_text_file(const std::string& path);

}  // namespace harness
