// defines: exp_approx — a float exp that the compiler vectorises
// libm's expf is a scalar call (GCC only vectorises it under -ffast-math), and the softmaxes of
// cross-entropy and attention call it billions of times. This is the classic Cephes scheme:
// x = n·ln2 + r with |r| ≤ ln2/2, exp(r) by a degree-6 polynomial, 2^n by exponent bits.
// Relative error < 2e-7 over the whole float range (tests/test_ops.cpp checks it); inputs below
// -87.3 give 0, as the softmaxes here only ever pass x − max ≤ 0.
#pragma once
#include <cstdint>
#include <cstring>

namespace mohge {

inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  // round to nearest by the 1.5·2²³ trick: vectorises, unlike roundf
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // ln2 split in two for exact reduction
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return x <= -87.3f ? 0.0f : p * scale;
}

}  // namespace mohge
