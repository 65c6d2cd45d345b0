// defines: CublasMatmul — Backend::matmul_forward / matmul_backward on the GPU through cuBLAS
// (cublasGemmEx). fp32: float inputs, fp32 compute (CUBLAS_COMPUTE_32F: no TF32, the CPU's
// numbers). bf16: inputs rounded to bfloat16 (round to nearest even) into scratch, products summed
// in fp32, fp32 output — gemm.h's contract, so the op table checks both backends alike.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gemm.h"

namespace mohge {

class CublasMatmul {
 public:
  explicit CublasMatmul(cudaStream_t stream);  // throws mohge::Error when cuBLAS cannot start
  ~CublasMatmul();
  CublasMatmul(const CublasMatmul&) = delete;
  CublasMatmul& operator=(const CublasMatmul&) = delete;

  // out[N,O] = [out +] inp[N,I] · w[O,I]ᵀ
  void forward(float* out, const float* inp, const float* w, int N, int I, int O, bool accumulate, Precision p);
  // dinp[N,I] += dout[N,O] · w[O,I];  dw[O,I] += doutᵀ · inp.  Either output may be null.
  void backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int N, int I,
                int O, Precision p);

 private:
  // Row-major C[M,N] = op(A)[M,K]·op(B)[K,N] + beta·C (C packed: ldc = N); A, B float or bf16.
  void gemm(bool ta, bool tb, int M, int N, int K, const void* A, int lda, const void* B, int ldb,
            float beta, float* C, bool bf16);
  // x[n] rounded to bf16 in scratch buffer `slot` (0 or 1), valid until that slot's next use.
  const uint16_t* bf16(int slot, const float* x, int64_t n);

  cudaStream_t stream_;
  cublasHandle_t handle_ = nullptr;
  uint16_t* scratch_[2] = {nullptr, nullptr};
  size_t scratch_cap_[2] = {0, 0};  // elements
};

}  // namespace mohge
