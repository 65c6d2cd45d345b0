// defines: gemm on the CPU through oneDNN's sgemm (JIT AVX-512 kernels, OpenMP threading).
// oneDNN rather than OpenBLAS: on the shapes of this engine (K = 256..8192, M = tokens routed
// to one expert) it runs 10-50% faster, most of all on single-threaded calls made inside our
// parallel loops; bench/bench_gemm.cpp measures both.
#include <dnnl.h>

#include "core/error.h"
#include "kernels/gemm.h"

namespace mohge {

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda,
                                B, ldb, beta, C, ldc);
  MOHGE_CHECK(st == dnnl_success, "gemm: oneDNN sgemm failed (status {}) for M={} N={} K={} "
              "lda={} ldb={} ldc={}", (int)st, M, N, K, lda, ldb, ldc);
}

}  // namespace mohge
