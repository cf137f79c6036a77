// Checks the wmma emulation (mma.h) against a plain product: both operand layouts, both accumulator layouts, an
// accumulator that is read back and accumulated into, two warps at different tiles.
// Build and run: bash cuda/dev/emu/mma_selftest.sh
#include <mma.h>

#include <cstdio>
#include <vector>

namespace wmma = nvcuda::wmma;
using bf16 = uint16_t;

// Warp w: D_w = A_w B_w + C_w, A row-major [16][lda], B column-major or row-major, C/D row- or column-major.
template <typename LB>
void kernel(float* d, const bf16* a, const bf16* b, const float* c, bool col_acc) {
  const int w = threadIdx.x / 32;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> af;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LB> bfr;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  const auto lay = col_acc ? wmma::mem_col_major : wmma::mem_row_major;
  wmma::load_matrix_sync(af, a + w * 256, 16);
  wmma::load_matrix_sync(bfr, b + w * 256, 16);
  wmma::load_matrix_sync(acc, c + w * 256, 16, lay);
  wmma::mma_sync(acc, af, bfr, acc);
  wmma::store_matrix_sync(d + w * 256, acc, 16, lay);
}

int main() {
  int failed = 0;
  for (int variant = 0; variant < 4; variant++) {
    const bool bcol = variant & 1, col_acc = variant & 2;
    // 32-byte aligned, as load/store_matrix_sync require (the emulation aborts otherwise).
    alignas(32) bf16 a[512], b[512];
    alignas(32) float c[512], d[512];
    for (int i = 0; i < 512; i++) {
      d[i] = -1.f;
      a[i] = streamline::f32_to_bf16(float((i * 7) % 13) - 6.f);
      b[i] = streamline::f32_to_bf16(float((i * 5) % 11) * 0.25f - 1.f);
      c[i] = float(i % 9) - 4.f;
    }
    emu::Cfg(dim3(1), dim3(64)).run([&] {
      if (bcol) kernel<wmma::col_major>(d, a, b, c, col_acc);
      else kernel<wmma::row_major>(d, a, b, c, col_acc);
    });
    double worst = 0;
    for (int w = 0; w < 2; w++)
      for (int r = 0; r < 16; r++)
        for (int col = 0; col < 16; col++) {
          const auto at = [&](int rr, int cc) { return col_acc ? w * 256 + cc * 16 + rr : w * 256 + rr * 16 + cc; };
          double want = c[at(r, col)];
          for (int k = 0; k < 16; k++) {
            const float bv = streamline::bf16_to_f32(bcol ? b[w * 256 + col * 16 + k] : b[w * 256 + k * 16 + col]);
            want += double(streamline::bf16_to_f32(a[w * 256 + r * 16 + k])) * bv;
          }
          worst = std::max(worst, std::abs(want - d[at(r, col)]));
        }
    const bool ok = worst == 0;  // small integers and quarters: every sum is exact in f32
    std::printf("wmma emulation: B %s-major, accumulator %s-major: max error %g %s\n", bcol ? "col" : "row",
                col_acc ? "col" : "row", worst, ok ? "ok" : "FAIL");
    failed += !ok;
  }
  return failed ? 1 : 0;
}
