#include "kernels/cuda/cuda_matmul.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace mohge {

CublasMatmul::CublasMatmul(cudaStream_t stream) : stream_(stream) {
  MOHGE_CUBLAS_CHECK(cublasCreate(&handle_));
  MOHGE_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
  // no TF32 for fp32 products: CUBLAS_COMPUTE_32F below asks for it too
  MOHGE_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
}

CublasMatmul::~CublasMatmul() {
  // errors at teardown (the driver may be shutting down at exit) are ignored
  for (uint16_t* p : scratch_) cudaFree(p);
  if (handle_) cublasDestroy(handle_);
}

const uint16_t* CublasMatmul::bf16(int slot, const float* x, int64_t n) {
  if ((size_t)n > scratch_cap_[slot]) {
    // cudaFree waits for the device, so no queued product still reads the old buffer
    MOHGE_CUDA_CHECK(cudaFree(scratch_[slot]));
    scratch_[slot] = nullptr, scratch_cap_[slot] = 0;
    const size_t cap = (size_t)n + (size_t)n / 4;
    MOHGE_CUDA_CHECK(cudaMalloc(&scratch_[slot], cap * sizeof(uint16_t)));
    scratch_cap_[slot] = cap;
  }
  cuda::round_to_bf16(scratch_[slot], x, n, stream_);
  return scratch_[slot];
}

// cuBLAS is column-major: a row-major X[r,c] is the column-major Xᵀ with the same leading
// dimension, so row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands
// and the dimensions M and N, keep each operand's transpose flag.
void CublasMatmul::gemm(bool ta, bool tb, int M, int N, int K, const void* A, int lda, const void* B,
                        int ldb, float beta, float* C, bool bf16) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum (an expert without rows): C = beta·C, beta ∈ {0, 1}
    if (beta == 0.0f) MOHGE_CUDA_CHECK(cudaMemsetAsync(C, 0, (size_t)M * N * sizeof(float), stream_));
    return;
  }
  const float alpha = 1.0f;
  const cudaDataType in = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  MOHGE_CUBLAS_CHECK(cublasGemmEx(handle_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  N, M, K, &alpha, B, in, ldb, A, in, lda, &beta, C, CUDA_R_32F, N,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CublasMatmul::forward(float* out, const float* inp, const float* w, int N, int I, int O,
                           bool accumulate, Precision p) {
  const float beta = accumulate ? 1.0f : 0.0f;
  if (p == Precision::bf16)
    gemm(false, true, N, O, I, bf16(0, inp, (int64_t)N * I), I, bf16(1, w, (int64_t)O * I), I, beta, out, true);
  else
    gemm(false, true, N, O, I, inp, I, w, I, beta, out, false);
}

void CublasMatmul::backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                            int N, int I, int O, Precision p) {
  if (p == Precision::bf16) {
    const uint16_t* g = bf16(0, dout, (int64_t)N * O);
    // slot 1 is reused: the stream runs the dinp product before the second rounding overwrites it
    if (dinp) gemm(false, false, N, I, O, g, O, bf16(1, w, (int64_t)O * I), I, 1.0f, dinp, true);
    if (dw) gemm(true, false, O, I, N, g, O, bf16(1, inp, (int64_t)N * I), I, 1.0f, dw, true);
    return;
  }
  if (dinp) gemm(false, false, N, I, O, dout, O, w, I, 1.0f, dinp, false);
  if (dw) gemm(true, false, O, I, N, dout, O, inp, I, 1.0f, dw, false);
}

}  // namespace mohge
