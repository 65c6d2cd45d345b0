// defines: gemm, the one dense matrix product every op and layer is built on, and its precision.
// Part of the backend boundary (see ops.h): a GPU backend provides the same call over cuBLAS.
#pragma once
#include <cstdint>
#include <string>

namespace mohge {

// fp32: float inputs and products. bf16: inputs rounded to bfloat16 (round to nearest even),
// products summed in fp32, output fp32 — mixed precision as in PyTorch autocast: about twice
// the fp32 rate on CPUs with AVX512-BF16; weights, gradients and optimizer state stay fp32.
enum class Precision { fp32, bf16 };
Precision precision_from_string(const std::string& s, const std::string& key);
const char* precision_name(Precision p);
// Whether this CPU runs bf16 matmuls (AVX512-BF16 or newer); gemm fails clearly otherwise.
bool bf16_supported();

// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, all row-major; op(X) = Xᵀ when trans_X,
// with X stored as its untransposed shape and leading dimension ld_X. beta = 0 ignores C's
// contents (NaNs included); K = 0 gives beta · C. Inside an OpenMP parallel region it runs on
// the calling thread only.
// bf16 supports alpha = 1, beta ∈ {0, 1} and a packed C (ldc = N): what matmul_forward/backward use.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, Precision p = Precision::fp32);

// Loads the GEMM library (the module of kernels/gemm_library.h) now rather than at the first
// product: call it before a parallel region whose threads may multiply, since a load error
// (mohge::Error) cannot leave the region.
void gemm_ready();

// out[N,O] (+= when accumulate) inp[N,I]·w16[O,I]ᵀ with the weights already bfloat16 (a frozen
// model's copy, Backend::set_inference_weights): gemm's bf16 product, the same bits, without
// rounding the weights again on every call (a bf16 prefill's largest cost after the products).
void matmul_bf16_weights(float* out, const float* inp, const uint16_t* w16, int N, int I, int O, bool accumulate);

// dst[rows,cols] (packed) = the bfloat16 rounding (bf16_from_float) of src[rows,cols], row-major with
// leading dimension ld; split across the OpenMP threads where that pays (kernels/parallel.h).
void to_bf16(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld);

// float -> bfloat16 bits, round to nearest even (NaN stays NaN); and back (exact).
inline uint16_t bf16_from_float(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16_to_float(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace mohge
