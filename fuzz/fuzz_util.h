// defines: fuzz_expect_clean, FuzzFile — what every harness shares
// A parser of outside input may only return or throw mohge::Error (a clean one-line error). Any
// other exception (std::bad_alloc, nlohmann's, std::out_of_range, ...) is a bug: fuzz_expect_clean
// turns it into an abort so libFuzzer records the input. Crashes, hangs (-timeout) and ASan/UBSan
// reports are caught by libFuzzer itself.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/error.h"

template <class Fn>
void fuzz_expect_clean(Fn&& fn) {
  try {
    fn();
  } catch (const mohge::Error& e) {
    const std::string msg = e.what();
    if (msg.empty() || msg.find('\n') != std::string::npos) {
      std::fprintf(stderr, "error message is not one non-empty line: [%s]\n", msg.c_str());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unclean exception: %s\n", e.what());
    std::abort();
  }
}

// The input as a file (for parsers that open paths); one per process, rewritten per input.
struct FuzzFile {
  std::string path;
  explicit FuzzFile(const char* suffix) {
    const char* dir = std::getenv("TMPDIR");
    path = std::string(dir ? dir : "/tmp") + "/mohge_fuzz_" + std::to_string(getpid()) + suffix;
  }
  ~FuzzFile() { std::remove(path.c_str()); }
  const std::string& write(const uint8_t* data, size_t size) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) std::abort();
    return path;
  }
};
