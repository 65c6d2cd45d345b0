// fuzz target: load_mc_jsonl and load_pairs_jsonl (eval task files), refusing invalid UTF-8.
// Invariant on success: labels index their choices.
#include "eval/task_files.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzFile file(".jsonl");
  const std::string& path = file.write(data, size);
  fuzz_expect_clean([&] {
    for (const auto& it : mohge::load_mc_jsonl(path))
      if (it.label < 0 || (size_t)it.label >= it.choices.size() || it.choices.size() < 2) std::abort();
  });
  fuzz_expect_clean([&] { (void)mohge::load_pairs_jsonl(path); });
  fuzz_expect_clean([&] { (void)mohge::load_mc_jsonl(path, mohge::InvalidUtf8::replace); });
  return 0;
}
