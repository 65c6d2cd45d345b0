// defines: cuda_backend — the registry's entry to the CUDA backend (kernels/cuda/cuda_backend.cpp)
#pragma once
#include <string>

#include "kernels/backend.h"

namespace mohge {

// The process-wide CUDA backend on device 0, or nullptr with *why_not saying why it cannot run
// here ("no CUDA device: ..."); backend_find("cuda") calls it.
Backend* cuda_backend(std::string* why_not);

}  // namespace mohge
