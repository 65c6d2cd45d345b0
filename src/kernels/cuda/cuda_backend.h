// defines: cuda_backend — the entry to the CUDA backend (kernels/cuda/cuda_backend.cpp), the one
//          symbol the registry looks up when it loads the module libmohge_cuda.so
#pragma once
#include <string>

#include "kernels/backend.h"

namespace mohge {

// The process-wide CUDA backend on device 0, or nullptr with *why_not saying why it cannot run
// here ("no CUDA device: ..."); backend_find("cuda") calls it. Unmangled, for dlsym.
extern "C" Backend* mohge_cuda_backend(std::string* why_not);
inline Backend* cuda_backend(std::string* why_not) { return mohge_cuda_backend(why_not); }

}  // namespace mohge
