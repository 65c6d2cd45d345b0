// defines: MOHGE_CUDA_CHECK, MOHGE_CUBLAS_CHECK, cuda_check_launch — every CUDA runtime and cuBLAS
// call of the backend is checked; a failure becomes one mohge::Error line naming the call, the
// library's error text and the source line (llm.c's cudaCheck). Plain declarations only, so the
// .cu files include this without the engine's C++20 headers.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace mohge {

[[noreturn]] void cuda_fail(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void cublas_fail(cublasStatus_t s, const char* call, const char* file, int line);

// After a kernel launch: a bad configuration (grid, shared memory) fails here, naming the kernel.
// Faults inside a kernel surface at the next synchronising call (download, synchronize).
void cuda_check_launch(const char* kernel, const char* file, int line);

}  // namespace mohge

#define MOHGE_CUDA_CHECK(call)                                                     \
  do {                                                                             \
    cudaError_t mohge_cuda_err_ = (call);                                          \
    if (mohge_cuda_err_ != cudaSuccess)                                            \
      ::mohge::cuda_fail(mohge_cuda_err_, #call, __FILE__, __LINE__);              \
  } while (0)

#define MOHGE_CUBLAS_CHECK(call)                                                   \
  do {                                                                             \
    cublasStatus_t mohge_cublas_st_ = (call);                                      \
    if (mohge_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                 \
      ::mohge::cublas_fail(mohge_cublas_st_, #call, __FILE__, __LINE__);           \
  } while (0)

#define MOHGE_CUDA_LAUNCHED(kernel) ::mohge::cuda_check_launch(kernel, __FILE__, __LINE__)
