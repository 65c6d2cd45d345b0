// defines: gemm, the one dense matrix product every op and layer is built on.
// Part of the backend boundary (see ops.h): a GPU backend provides the same call over cuBLAS.
#pragma once

namespace mohge {

// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, all row-major; op(X) = Xᵀ when trans_X,
// with X stored as its untransposed shape and leading dimension ld_X. beta = 0 ignores C's
// contents (NaNs included). Inside an OpenMP parallel region it runs on the calling thread only.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace mohge
