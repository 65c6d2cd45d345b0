#include "kernels/cuda/cuda_device.h"

#include <cuda_runtime.h>

namespace mohge {

int cuda_device_count() {
  int n = 0;
  // cudaErrorNoDevice / cudaErrorInsufficientDriver: a machine without a GPU
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

}  // namespace mohge
