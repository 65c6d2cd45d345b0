#include "kernels/cuda/cuda_check.h"

#include <filesystem>

#include "core/error.h"

namespace mohge {

namespace {
std::string base_name(const char* file) { return std::filesystem::path(file).filename().string(); }
}  // namespace

void cuda_fail(cudaError_t e, const char* call, const char* file, int line) {
  fail("CUDA: {} failed: {} ({}) at {}:{}", call, cudaGetErrorString(e), cudaGetErrorName(e),
       base_name(file), line);
}

void cublas_fail(cublasStatus_t s, const char* call, const char* file, int line) {
  fail("cuBLAS: {} failed: {} ({}) at {}:{}", call, cublasGetStatusString(s), cublasGetStatusName(s),
       base_name(file), line);
}

void cuda_check_launch(const char* kernel, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail("CUDA: kernel {} failed to launch: {} ({}) at {}:{}", kernel, cudaGetErrorString(e),
         cudaGetErrorName(e), base_name(file), line);
}

}  // namespace mohge
