#include "kernels/cuda/cuda_device.h"

#include <cuda_runtime.h>

namespace mohge {

int cuda_device_count(std::string* why_not) {
  int n = 0;
  // cudaErrorNoDevice / cudaErrorInsufficientDriver: a machine without a GPU
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) n = 0;
  if (n == 0 && why_not)
    *why_not = e != cudaSuccess ? std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")"
                                : "cudaGetDeviceCount reports 0 devices";
  return n;
}

}  // namespace mohge
