// fuzz target: prepared_meta_parse (meta.json beside the token shards).
#include "data/prepared_meta.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_expect_clean([&] {
    auto m = mohge::prepared_meta_parse(std::string((const char*)data, size), "<fuzz>/meta.json");
    if (m.vocab_size < 1 || m.tokenizer_fnv1a64.size() != 16 || !(m.val_fraction >= 0 && m.val_fraction < 1))
      std::abort();
  });
  return 0;
}
