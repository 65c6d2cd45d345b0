// defines: GemmLibrary — the matrix products of oneDNN as plain function pointers: the interface of
//          the module libmohge_onednn.so (kernels/onednn/), which gemm_cpu.cpp loads on the first
//          product
// oneDNN is 40 MB of library whose load (relocations, page faults) cost every process ~8 ms at
// start (docs/BENCHMARKS.md "Startup"); commands that never multiply a matrix through a GEMM
// (config, data, tokenize, generations from prompts of up to 4 tokens, which decode through the
// matrix–vector kernel) now never map it.
#pragma once
#include <cstdint>

namespace mohge {

struct GemmLibrary {
  // C[M,N] = alpha·op(A)[M,K]·op(B)[K,N] + beta·C, row-major fp32 with leading dimensions (BLAS
  // sgemm), M, N, K ≥ 1. Throws mohge::Error when oneDNN fails.
  void (*sgemm)(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, float* C, int ldc);
  // Whether this CPU has AVX512-BF16 (oneDNN's ISA detection): bf16_matmul needs it.
  bool (*bf16_supported)();
  // C[M,N] (+= C when accumulate) op(A)[M,K]·op(B)[K,N] from packed bfloat16 operands (A: [M,K],
  // or [K,M] when trans_a; B likewise), fp32 sums and output. Throws mohge::Error without AVX512-BF16.
  void (*bf16_matmul)(bool trans_a, bool trans_b, int M, int N, int K, const uint16_t* A, const uint16_t* B,
                      bool accumulate, float* C);
};

}  // namespace mohge
