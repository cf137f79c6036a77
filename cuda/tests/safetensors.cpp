// safetensors and JSON parsing for the harness.
#include "safetensors.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace harness {

namespace {
struct Parser {
  const std::string& s;
  size_t i = 0;
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("JSON: ") + what + " at offset " + std::to_string(i));
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
  }
  Json value(int depth) {
    if (depth > 64) fail("nesting too deep");
    ws();
    if (i >= s.size()) fail("unexpected end");
    Json j;
    const char c = s[i];
    if (c == '{') {
      j.kind = Json::Object;
      i++;
      ws();
      if (i < s.size() && s[i] == '}') { i++; return j; }
      for (;;) {
        ws();
        if (i >= s.size() || s[i] != '"') fail("expected a key");
        std::string k = string();
        ws();
        if (i >= s.size() || s[i] != ':') fail("expected ':'");
        i++;
        j.obj[k] = value(depth + 1);
        ws();
        if (i < s.size() && s[i] == ',') { i++; continue; }
        if (i < s.size() && s[i] == '}') { i++; return j; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      j.kind = Json::Array;
      i++;
      ws();
      if (i < s.size() && s[i] == ']') { i++; return j; }
      for (;;) {
        j.arr.push_back(value(depth + 1));
        ws();
        if (i < s.size() && s[i] == ',') { i++; continue; }
        if (i < s.size() && s[i] == ']') { i++; return j; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') { j.kind = Json::String; j.str = string(); return j; }
    if (s.compare(i, 4, "true") == 0) { i += 4; j.kind = Json::Bool; j.b = true; return j; }
    if (s.compare(i, 5, "false") == 0) { i += 5; j.kind = Json::Bool; return j; }
    if (s.compare(i, 4, "null") == 0) { i += 4; return j; }
    size_t end = i;
    while (end < s.size() && std::strchr("+-0123456789.eE", s[end])) end++;
    if (end == i) fail("unexpected character");
    j.kind = Json::Number;
    j.num = std::strtod(s.substr(i, end - i).c_str(), nullptr);
    i = end;
    return j;
  }
  std::string string() {
    i++;  // opening quote
    std::string o;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        if (++i >= s.size()) fail("bad escape");
        const char e = s[i];
        if (e == 'n') o += '\n';
        else if (e == 't') o += '\t';
        else if (e == 'u') { o += '?'; i += 4; }
        else o += e;
        i++;
      } else {
        o += s[i++];
      }
    }
    if (i >= s.size()) fail("unterminated string");
    i++;
    return o;
  }
};

size_t dtype_bytes(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "BF16" || d == "F16") return 2;
  if (d == "I64" || d == "F64") return 8;
  if (d == "U8" || d == "BOOL" || d == "I8") return 1;
  return 0;
}
}  // namespace

Json parse_json(const std::string& text) {
  Parser p{text};
  Json j = p.value(0);
  p.ws();
  if (p.i != text.size()) p.fail("trailing characters");
  return j;
}

size_t StTensor::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  return n;
}

bool StTensor::has_dtype(streamline::DType* out) const {
  return streamline::dtype_from_name(dtype == "BF16" ? "bf16" : dtype == "F16" ? "f16" : dtype == "F32" ? "f32" :
                                     dtype == "I32" ? "i32" : dtype == "I64" ? "i64" : dtype == "U8" ? "u8" : "bool", out);
}

SafeTensors::SafeTensors(const std::string& path) {
  std::string err;
  if (!streamline::map_file(path, &file_, &err)) throw std::runtime_error(path + ": " + err);
  auto fail = [&](const std::string& m) {
    streamline::unmap_file(&file_);
    throw std::runtime_error(path + ": " + m);
  };
  const auto* base = static_cast<const uint8_t*>(file_.data);
  if (file_.size < 8) fail("shorter than the 8-byte header length");
  uint64_t hlen = 0;
  std::memcpy(&hlen, base, 8);
  if (hlen > (100u << 20)) fail("header larger than 100 MB");
  if (8 + hlen > file_.size) fail("header runs past the end of the file");
  Json h;
  try {
    h = parse_json(std::string(reinterpret_cast<const char*>(base + 8), size_t(hlen)));
  } catch (const std::exception& e) {
    fail(e.what());
  }
  if (h.kind != Json::Object) fail("header is not a JSON object");
  const size_t data_start = 8 + size_t(hlen), data_size = file_.size - data_start;
  for (const auto& kv : h.obj) {
    if (kv.first == "__metadata__") continue;
    const Json& t = kv.second;
    const Json* dt = t.get("dtype");
    const Json* sh = t.get("shape");
    const Json* off = t.get("data_offsets");
    if (!dt || dt->kind != Json::String || !sh || sh->kind != Json::Array || !off || off->kind != Json::Array ||
        off->arr.size() != 2)
      fail("tensor " + kv.first + ": needs dtype, shape and data_offsets");
    StTensor st;
    st.dtype = dt->str;
    for (const Json& d : sh->arr) {
      if (d.kind != Json::Number || d.num < 0) fail("tensor " + kv.first + ": bad shape");
      st.shape.push_back(int64_t(d.num));
    }
    const size_t a = size_t(off->arr[0].num), b = size_t(off->arr[1].num), es = dtype_bytes(st.dtype);
    if (es == 0) fail("tensor " + kv.first + ": unknown dtype " + st.dtype);
    if (a > b || b > data_size) fail("tensor " + kv.first + ": data_offsets outside the data section");
    if (b - a != st.numel() * es) fail("tensor " + kv.first + ": byte size does not match dtype x shape");
    st.data = base + data_start + a;
    st.bytes = b - a;
    tensors_[kv.first] = st;
  }
}

SafeTensors::~SafeTensors() { streamline::unmap_file(&file_); }

const StTensor* SafeTensors::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace harness
