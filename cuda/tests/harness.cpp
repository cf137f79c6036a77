// Harness helpers: data generation, device buffers, comparison and the result tables.
#include <cstdarg>
#include <cstring>

#include "harness.h"

#include <dlfcn.h>
#include <unistd.h>

namespace harness {

std::vector<float> randn(size_t n, Rng& r, float scale) {
  std::vector<float> v(n);
  for (auto& x : v) x = r.normal() * scale;
  return v;
}
std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); i++) o[i] = streamline::f32_to_bf16(v[i]);
  return o;
}
std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); i++) o[i] = streamline::bf16_to_f32(v[i]);
  return o;
}
std::vector<float> round_bf16(const std::vector<float>& v) { return from_bf16(to_bf16(v)); }
std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); i++) o[i] = streamline::f32_to_f16(v[i]);
  return o;
}

DevBuf::DevBuf(size_t b) : p(streamline::cuda::device_alloc(b)), bytes(b) {}
DevBuf::~DevBuf() { streamline::cuda::device_free(p, bytes); }
void DevBuf::upload(const void* h, size_t n) const { H_CHECK(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice)); }
void DevBuf::download(void* h, size_t n) const {
  H_CHECK(cudaDeviceSynchronize());
  H_CHECK(cudaMemcpy(h, p, n, cudaMemcpyDeviceToHost));
}
void DevBuf::poison() const { H_CHECK(cudaMemset(p, 0xFF, bytes)); }

Compare compare(const float* out, const float* ref, size_t n) {
  Compare c;
  c.n = n;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const bool no = std::isnan(out[i]), nr = std::isnan(ref[i]);
    if (no != nr) { c.nan_mismatch++; continue; }
    if (nr) continue;
    if (std::isinf(ref[i]) || std::isinf(out[i])) {
      if (out[i] != ref[i]) c.nan_mismatch++;
      continue;
    }
    const double d = double(out[i]) - ref[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
    c.max_abs = std::max(c.max_abs, std::fabs(d));
  }
  c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return c;
}

size_t bit_mismatches(const float* a, const float* b, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    uint32_t x, y;
    std::memcpy(&x, a + i, 4);
    std::memcpy(&y, b + i, 4);
    bad += x != y;
  }
  return bad;
}

namespace {
std::vector<Result> g_results;
std::vector<BenchRow> g_bench;
}  // namespace

void record(const std::string& group, const std::string& name, bool ok, double err, double tol, const std::string& note) {
  g_results.push_back(Result{group, name, ok, err, tol, note});
  if (!ok) std::printf("FAIL %-10s %-58s err %.3g tol %.3g %s\n", group.c_str(), name.c_str(), err, tol, note.c_str());
}

bool check(const std::string& group, const std::string& name, const Compare& c, double tol) {
  const bool ok = c.nan_mismatch == 0 && c.rel_l2 <= tol && std::isfinite(c.rel_l2);
  record(group, name, ok, c.rel_l2, tol,
         c.nan_mismatch ? fmt("%zu NaN/inf mismatches of %zu", c.nan_mismatch, c.n) : fmt("max_abs %.3g", c.max_abs));
  return ok;
}

const std::vector<Result>& results() { return g_results; }

void bench_record(const std::string& name, double value, const std::string& unit, const std::string& note) {
  g_bench.push_back(BenchRow{name, value, unit, note});
  std::printf("  bench %-44s %12.3f %-8s %s\n", name.c_str(), value, unit.c_str(), note.c_str());
  std::fflush(stdout);
}
const std::vector<BenchRow>& bench_rows() { return g_bench; }

std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

void* open_backend_library(std::string* path) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string dir = n > 0 ? std::string(exe, size_t(n)) : std::string(".");
  dir = dir.substr(0, dir.rfind('/'));
  *path = dir + "/streamline_cuda.so";
  return dlopen(path->c_str(), RTLD_NOW | RTLD_LOCAL);
}

}  // namespace harness
