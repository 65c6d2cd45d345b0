// fuzz target: SafetensorsFile::parse (header length, JSON header, tensor table, byte ranges) and
// the F32 reads a checkpoint load does. Invariants on success: the ranges tile the data region.
#include <cstring>
#include <vector>

#include "core/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_expect_clean([&] {
    auto f = mohge::SafetensorsFile::parse(std::vector<char>(data, data + size), "<fuzz>");
    size_t covered = 0;
    for (const auto& t : f.tensors()) {
      covered += t.nbytes;
      volatile unsigned char sink = 0;
      const auto* p = static_cast<const unsigned char*>(t.data);
      for (size_t i = 0; i < t.nbytes; i++) sink = sink ^ p[i];  // every byte in bounds (ASan)
      if (t.dtype == "F32") (void)f.f32(t.name, t.shape);
    }
    uint64_t hlen;
    std::memcpy(&hlen, data, 8);
    if (covered != size - 8 - hlen) std::abort();  // silent: bytes indexed twice or not at all
  });
  return 0;
}
