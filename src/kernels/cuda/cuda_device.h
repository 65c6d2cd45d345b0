// defines: cuda_device_count — the CUDA devices this process can use
#pragma once

namespace mohge {

// Number of visible CUDA devices (honours CUDA_VISIBLE_DEVICES); 0 when there is no device or
// no driver, which is a normal state for a CUDA build on a CPU machine, not an error.
int cuda_device_count();

}  // namespace mohge
