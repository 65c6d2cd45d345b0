// defines: gemm on the CPU: operand checks and bf16 rounding here, the products in oneDNN (dnnl_sgemm
// for fp32, a bf16 matmul primitive for mixed precision) behind the module libmohge_onednn.so
// (kernels/onednn/onednn_gemm.cpp, kernels/gemm_library.h), loaded on the first product.
#include <immintrin.h>

#include <vector>

#include "core/error.h"
#include "core/module.h"
#include "kernels/gemm.h"
#include "kernels/gemm_library.h"
#include "kernels/parallel.h"

namespace mohge {

Precision precision_from_string(const std::string& s, const std::string& key) {
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  fail("{} = \"{}\": expected \"fp32\" or \"bf16\"", key, s);
}

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

namespace {

// GCC 12's AVX-512 shifts warn of their own "undefined" vectors (bug 105593, see matvec_cpu.cpp)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// dst[i] = bf16_from_float(src[i]), i < n: 16 at a time in AVX-512 by the same integer rounding
// (vcvtneps2bf16 would differ: it flushes denormal inputs to zero).
void to_bf16_row(uint16_t* dst, const float* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)  // BW, VL: the 16-bit masked store
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40);
  auto round16 = [&](__m512i u) {
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, half), _mm512_and_si512(_mm512_srli_epi32(u, 16), one)), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    return _mm512_cvtepi32_epi16(_mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(u, 16), quiet));
  };
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i*)(dst + i), round16(_mm512_loadu_si512(src + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(dst + i, m, round16(_mm512_maskz_loadu_epi32(m, src + i)));
    return;
  }
#endif
  for (; i < n; i++) dst[i] = bf16_from_float(src[i]);
}
#pragma GCC diagnostic pop

}  // namespace

void to_bf16(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld) {
  const bool worth = rows * cols >= 4 * kParallelMinElems;
  if (ld == cols) {  // packed: one range of rows·cols, split evenly whatever the shape (a flat tensor is one row)
    parallel_rows(rows * cols, worth, [&](int64_t i0, int64_t i1) { to_bf16_row(dst + i0, src + i0, i1 - i0); });
    return;
  }
  parallel_rows(rows, worth, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) to_bf16_row(dst + r * cols, src + r * ld, cols);
  });
}

namespace {

// The oneDNN module, loaded on the first product (kernels/gemm_library.h).
const GemmLibrary& onednn() {
  static const GemmLibrary& lib = *reinterpret_cast<const GemmLibrary* (*)()>(
      module_entry("oneDNN GEMM", "MOHGE_ONEDNN_MODULE", MOHGE_ONEDNN_MODULE, "mohge_onednn_gemm"))();
  return lib;
}

void gemm_bf16(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B,
               int ldb, float beta, float* C, int ldc) {
  MOHGE_CHECK(beta == 0.0f || beta == 1.0f, "gemm: bf16 supports beta 0 or 1, got {}", beta);
  MOHGE_CHECK(ldc == N, "gemm: bf16 needs a packed C (ldc {} != N {})", ldc, N);
  thread_local std::vector<uint16_t> a16, b16;  // thread-local: experts run concurrently
  const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  a16.resize((size_t)ar * ac), b16.resize((size_t)br * bc);
  to_bf16(a16.data(), A, ar, ac, lda);
  to_bf16(b16.data(), B, br, bc, ldb);
  onednn().bf16_matmul(ta, tb, M, N, K, a16.data(), b16.data(), beta == 1.0f, C);
}

}  // namespace

bool bf16_supported() { return onednn().bf16_supported(); }

void gemm_ready() { onednn(); }

void matmul_bf16_weights(float* out, const float* inp, const uint16_t* w16, int N, int I, int O, bool accumulate) {
  if (N == 0 || O == 0) return;
  thread_local std::vector<uint16_t> x16;
  x16.resize((size_t)N * I);
  to_bf16(x16.data(), inp, N, I, I);
  onednn().bf16_matmul(false, true, N, O, I, x16.data(), w16, accumulate, out);
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, Precision p) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum (a rank without tokens): C = beta·C; oneDNN refuses K = 0
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
    return;
  }
  if (p == Precision::bf16 && K > 0) {
    MOHGE_CHECK(alpha == 1.0f, "gemm: bf16 supports alpha = 1 only, got {}", alpha);
    return gemm_bf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
  }
  onednn().sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace mohge
