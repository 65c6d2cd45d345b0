// fuzz target: run_config_read (the TOML run config: [model], [moe], [data], [train]) on a file.
#include "fuzz_util.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzFile file(".toml");
  const std::string& path = file.write(data, size);
  fuzz_expect_clean([&] { (void)mohge::run_config_read(path, {}); });
  return 0;
}
