// defines: splitmix64, fnv1a64 — small portable hashes (same values on every platform and library)
#pragma once
#include <cstdint>
#include <string_view>

namespace mohge {

// SplitMix64 finaliser: a well-mixed 64-bit value from a counter or a seed combination.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// FNV-1a over bytes: content fingerprints (e.g. of a tokenizer model) in metadata.
inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace mohge
