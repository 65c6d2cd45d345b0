// defines: cuda_device_count — the CUDA devices this process can use
#pragma once
#include <string>

namespace mohge {

// Number of visible CUDA devices (honours CUDA_VISIBLE_DEVICES); 0 when there is no device or
// no driver, which is a normal state for a CUDA build on a CPU machine, not an error. With 0,
// *why_not (when given) says why, in the runtime's words.
int cuda_device_count(std::string* why_not = nullptr);

}  // namespace mohge
