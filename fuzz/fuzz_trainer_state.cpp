// fuzz target: trainer_state_parse (trainer_state.json of a checkpoint).
#include <algorithm>
#include <climits>

#include "fuzz_util.h"
#include "train/trainer_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_expect_clean([&] {
    auto st = mohge::trainer_state_parse(std::string((const char*)data, size), "<fuzz>/trainer_state.json");
    if (st.step < 0 || st.loader.batches / std::max<uint64_t>(st.step, 1) > INT32_MAX || !(st.tokens >= 0) ||
        !(st.elapsed_s >= 0))
      std::abort();
  });
  return 0;
}
