// The CUDA layer (built with MOHGE_CUDA): the device query sees exactly the devices this machine has.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "kernels/cuda/cuda_device.h"

namespace mohge {

TEST(CudaDevice, CountsTheDevicesOfThisMachine) {
  // a GPU machine exposes /dev/nvidia0; a CPU machine with the toolkit reports 0, not an error
  EXPECT_EQ(cuda_device_count() > 0, std::filesystem::exists("/dev/nvidia0"));
}

TEST(CudaDevice, HonoursCudaVisibleDevices) {
  setenv("CUDA_VISIBLE_DEVICES", "", 1);  // before the first CUDA call of this process
  EXPECT_EQ(cuda_device_count(), 0);
}

}  // namespace mohge
