// fuzz target: TokenShard (header, size, token range checks) through a file, as training opens it.
// Invariant on success: every token reads back below the header's vocab size.
#include <vector>

#include "data/shards.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzFile file(".bin");
  const std::string& path = file.write(data, size);
  fuzz_expect_clean([&] {
    mohge::TokenShard shard(path);
    std::vector<int32_t> toks(shard.size());
    shard.read(0, shard.size(), toks.data());
    for (int32_t t : toks)
      if (t < 0 || t >= shard.vocab_size()) std::abort();
  });
  return 0;
}
