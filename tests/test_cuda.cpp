// The CUDA layer (built with MOHGE_CUDA): the device query sees exactly the devices this machine
// has; the backend exists exactly where a device does. The backend's ops are in the op table
// (tests/test_ops.cpp, rows "cuda_*") and a whole training step in tests/test_backend_model.cpp.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
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


// The registry's entry: the backend where a device exists, else nullptr and a reason that starts
// with "no CUDA device" (what `run.backend = "cuda"` prints on a machine without a GPU).
TEST(CudaBackend, ExistsExactlyWhereADeviceExists) {
  std::string why;
  Backend* be = cuda_backend(&why);
  if (cuda_device_count() == 0) {
    EXPECT_EQ(be, nullptr);
    EXPECT_EQ(why.rfind("no CUDA device: ", 0), 0u) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << why;
    return;
  }
  ASSERT_NE(be, nullptr) << why;
  EXPECT_STREQ(be->name(), "cuda");
  EXPECT_FALSE(be->host_accessible());
  EXPECT_EQ(be, cuda_backend(nullptr)) << "one backend per process";
}

// Device memory round trip, and an allocation far beyond the GPU's memory is one clear error.
TEST(CudaBackend, MemoryRoundTripAndOutOfMemoryError) {
  std::string why;
  Backend* be = cuda_backend(&why);
  if (!be) GTEST_SKIP() << why;
  std::vector<float> x = {1.5f, -2.0f, 3.25f, 0.0f}, y(4, 0.0f);
  Buffer<float> a(*be, 4), b(*be, 4);
  a.upload(x.data(), 4);
  be->copy(b.data(), a.data(), 4 * sizeof(float));
  be->add_inplace(b.data(), a.data(), 4);
  b.download(y.data(), 4);
  for (int i = 0; i < 4; i++) EXPECT_EQ(y[i], 2 * x[i]);
  try {
    be->alloc((size_t)1 << 50);  // 1 PiB
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory: cannot allocate"), std::string::npos) << e.what();
  }
}

// A failing CUDA or cuBLAS call is one mohge::Error line naming the call, the library's words
// for the error and the source line (no GPU needed: the messages are the libraries' own tables).
TEST(CudaCheck, FailuresAreOneLineNamingTheCall) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string cuda = message([] { MOHGE_CUDA_CHECK(cudaErrorInvalidValue); });
  EXPECT_NE(cuda.find("CUDA: cudaErrorInvalidValue failed: invalid argument (cudaErrorInvalidValue) at test_cuda.cpp:"),
            std::string::npos) << cuda;
  const std::string blas = message([] { MOHGE_CUBLAS_CHECK(CUBLAS_STATUS_NOT_SUPPORTED); });
  EXPECT_NE(blas.find("cuBLAS: CUBLAS_STATUS_NOT_SUPPORTED failed: "), std::string::npos) << blas;
  EXPECT_NE(blas.find("(CUBLAS_STATUS_NOT_SUPPORTED) at test_cuda.cpp:"), std::string::npos) << blas;
  for (const std::string& m : {cuda, blas}) EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_EQ(message([] { MOHGE_CUDA_CHECK(cudaSuccess); }), "no error");
}

}  // namespace mohge
