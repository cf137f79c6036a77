// streamline_cuda_check: every CUDA op against its CPU reference, the GPU decoder layer against the CPU layer,
// model-level checks when a model directory is given, and benchmarks timed with CUDA events.
// Without a usable GPU it prints "SKIP: no usable GPU: <reason>" and exits 0 (CI and CPU machines).
//
// Usage: streamline_cuda_check [--quick] [--no-bench] [--bench-only] [--model DIR] [--json FILE] [--repo DIR]
//                              [--only ops|backward|layer|model|train|bench] [--cpu-selftest]
#include <cstdlib>
#include <string>

#include "cublaslt_loader.h"
#include "harness.h"

using namespace harness;

namespace {

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (c == '\n') o += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
    else o += c;
  }
  return o;
}

void write_json(const std::string& path, const std::string& device, int passed, int failed) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) { std::printf("could not write %s\n", path.c_str()); return; }
  std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"cublaslt\": \"%s\",\n  \"passed\": %d,\n  \"failed\": %d,\n  \"checks\": [\n",
               json_escape(device).c_str(),
               json_escape(streamline::cuda::lt::api() ? streamline::cuda::lt::api()->path : streamline::cuda::lt::reason()).c_str(),
               passed, failed);
  const auto& r = results();
  for (size_t i = 0; i < r.size(); i++)
    std::fprintf(f, "    {\"group\": \"%s\", \"name\": \"%s\", \"ok\": %s, \"err\": %.6g, \"tol\": %.6g, \"note\": \"%s\"}%s\n",
                 json_escape(r[i].group).c_str(), json_escape(r[i].name).c_str(), r[i].ok ? "true" : "false",
                 std::isfinite(r[i].err) ? r[i].err : -1.0, r[i].tol, json_escape(r[i].note).c_str(),
                 i + 1 < r.size() ? "," : "");
  std::fprintf(f, "  ],\n  \"bench\": [\n");
  const auto& b = bench_rows();
  for (size_t i = 0; i < b.size(); i++)
    std::fprintf(f, "    {\"name\": \"%s\", \"value\": %.6g, \"unit\": \"%s\", \"note\": \"%s\"}%s\n",
                 json_escape(b[i].name).c_str(), b[i].value, json_escape(b[i].unit).c_str(),
                 json_escape(b[i].note).c_str(), i + 1 < b.size() ? "," : "");
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, bench = true, checks = true, selftest = false;
  std::string only;  // ops | backward | layer | model | train | bench
  std::string model_dir, json_path = "streamline_cuda_check.json", repo_root = ".";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--no-bench") bench = false;
    else if (a == "--bench-only") checks = false;
    else if (a == "--cpu-selftest") selftest = true;
    else if (a == "--model" && i + 1 < argc) model_dir = argv[++i];
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--repo" && i + 1 < argc) repo_root = argv[++i];
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else {
      std::printf("usage: %s [--quick] [--no-bench] [--bench-only] [--model DIR] [--json FILE] [--repo DIR] [--only ops|backward|layer|model|train|bench] [--cpu-selftest]\n", argv[0]);
      return 2;
    }
  }
  if (selftest) {
    int rc = run_cpu_selftest();
    rc += cpu_model_selftest(model_dir, repo_root);
    rc += cpu_train_selftest(model_dir);
    if (rc != 0) return 1;
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::printf("SKIP: no usable GPU: %s\n", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found");
    return 0;
  }
  cudaDeviceProp prop;
  H_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::string device = fmt("%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                           double(prop.totalGlobalMem) / (1 << 30));
  std::printf("device: %s\ncuBLASLt: %s\n", device.c_str(),
              streamline::cuda::lt::api() ? streamline::cuda::lt::api()->path.c_str() : streamline::cuda::lt::reason().c_str());
  // Each group runs on its own: an exception (a CUDA or cuBLASLt error) fails that group and the next one still runs.
  // A sticky device error (e.g. an illegal address) will fail the rest too; the first FAIL line is the one to read.
  auto group = [&](const char* name, auto&& fn) {
    if (!only.empty() && only != name) return;
    try {
      fn();
    } catch (const std::exception& ex) {
      record(name, "uncaught exception", false, NAN, 0, ex.what());
    }
    cudaError_t le = cudaDeviceSynchronize();
    if (le != cudaSuccess) record(name, "device state after the group", false, NAN, 0, cudaGetErrorString(le));
  };
  if (checks) {
    group("ops", [&] { run_op_checks(quick); });
    group("backward", [&] { run_backward_checks(quick); });
    group("layer", [&] { run_layer_checks(quick); });
    group("model", [&] { run_model_checks(model_dir, repo_root); });
    group("train", [&] { run_train_checks(quick, model_dir); });
  }
  if (bench) {
    group("bench", [&] { run_benchmarks(quick); });
    group("bench", [&] { run_backward_benchmarks(quick); });  // its own try: a forward failure does not hide it
  }
  int passed = 0, failed = 0;
  for (const auto& r : results()) (r.ok ? passed : failed)++;
  std::printf("\n%-10s %-58s %10s %10s  %s\n", "group", "check", "error", "tolerance", "result");
  for (const auto& r : results())
    std::printf("%-10s %-58s %10.3g %10.3g  %s %s\n", r.group.c_str(), r.name.c_str(), r.err, r.tol, r.ok ? "ok" : "FAIL",
                r.ok ? "" : r.note.c_str());
  if (!bench_rows().empty()) {
    std::printf("\n%-46s %12s %-8s %s\n", "benchmark", "value", "unit", "note");
    for (const auto& b : bench_rows())
      std::printf("%-46s %12.3f %-8s %s\n", b.name.c_str(), b.value, b.unit.c_str(), b.note.c_str());
  }
  std::printf("\n%d passed, %d failed\n", passed, failed);
  write_json(json_path, device, passed, failed);
  return failed == 0 ? 0 : 1;
}
