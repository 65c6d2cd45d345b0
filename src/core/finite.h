// defines: first_non_finite, require_finite — NaN/inf detection for loaded weights and results
// Weights are checked once at load (a NaN weight silently turns every logit, loss and accuracy into
// garbage), results before they are reported (a NaN loss must be an error, not `"loss": null`).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/error.h"

namespace mohge {

// Index of the first NaN or ±inf among x[0, n), or n when all are finite. One branch-free pass (a
// max reduction over the exponent-and-mantissa bits: non-finite iff |bits| >= 0x7f800000) that the
// compiler vectorises; the exact index is only searched for when something is wrong.
inline size_t first_non_finite(const float* x, size_t n) {
  uint32_t worst = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    b &= 0x7fffffffu;
    worst = b > worst ? b : worst;
  }
  if (worst < 0x7f800000u) return n;
  size_t i = 0;
  while (std::isfinite(x[i])) i++;
  return i;
}

// `value` when finite; otherwise mohge::Error "<what> is <nan|inf> (...)".
inline double require_finite(double value, std::string_view what) {
  MOHGE_CHECK(std::isfinite(value), "{} is {} (the model produced non-finite numbers: diverged or corrupt weights)",
              what, value);
  return value;
}

}  // namespace mohge
