// defines: the matvec kernels of kernels/matvec.h (AVX-512 intrinsics, OpenMP over output rows)
#include "kernels/matvec.h"

#include <immintrin.h>

#include <vector>

#include "core/error.h"
#include "kernels/gemm.h"
#include "kernels/parallel.h"

namespace mohge {

bool matvec_supported() {
#ifdef __AVX512F__
  return true;
#else
  return false;
#endif
}

bool matvec_bf16_supported() {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

#ifdef __AVX512F__
// GCC 12's AVX-512 headers make "undefined" vectors by self-initialisation, which -Wuninitialized
// reports inside the shuffles below (GCC bug 105593, fixed in 13): not a bug here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace {

// One 512-bit step of a dot product over elements of type T: fp32 reads 16 floats and FMAs them;
// bf16 reads 32 bfloat16 (16 pairs) and vdpbf16ps adds each pair's two products to an fp32 lane.
// Whole steps load plainly; only a row's last partial step is masked (zeros past the end), so a row
// of any length sums the same lanes. A masked load in every step halved the kernel's rate on Zen 4.
template <class T>
struct Lanes;
template <>
struct Lanes<float> {
  static constexpr int n = 16;
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 load_tail(const float* p, int left) { return _mm512_maskz_loadu_ps((__mmask16)((1u << left) - 1), p); }
  static __m512 fma(__m512 acc, __m512 x, __m512 w) { return _mm512_fmadd_ps(x, w, acc); }
};
#ifdef __AVX512BF16__
template <>
struct Lanes<uint16_t> {
  static constexpr int n = 32;
  static __m512 load(const uint16_t* p) { return _mm512_castsi512_ps(_mm512_loadu_si512(p)); }
  static __m512 load_tail(const uint16_t* p, int left) {
    return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16((__mmask32)((1ull << left) - 1), p));
  }
  static __m512 fma(__m512 acc, __m512 x, __m512 w) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(x), (__m512bh)_mm512_castps_si512(w));
  }
};
#endif

// Σ of the 16 lanes, in a fixed order (halves, quarters, then within 128 bits).
inline float lane_sum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  __m128 x = _mm512_castps512_ps128(v);
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

// out[o] (+)= Σ_i x[i]·w[o,i] for RO weight rows w (stride I): RO accumulators, the input step
// loaded once for all RO rows.
template <class T, int RO>
void tile(float* out, const T* x, const T* w, int I, bool accumulate) {
  using L = Lanes<T>;
  __m512 acc[RO];
  for (int r = 0; r < RO; r++) acc[r] = _mm512_setzero_ps();
  int i = 0;
  for (; i + L::n <= I; i += L::n) {
    const __m512 xv = L::load(x + i);
    for (int r = 0; r < RO; r++) acc[r] = L::fma(acc[r], xv, L::load(w + (int64_t)r * I + i));
  }
  if (i < I) {
    const __m512 xv = L::load_tail(x + i, I - i);
    for (int r = 0; r < RO; r++) acc[r] = L::fma(acc[r], xv, L::load_tail(w + (int64_t)r * I + i, I - i));
  }
  for (int r = 0; r < RO; r++) {
    const float s = lane_sum(acc[r]);
    out[r] = accumulate ? out[r] + s : s;
  }
}

template <class T>
void matvec_tiles(const MatvecProduct<T>* products, int count, const T* x, int N, int I, bool accumulate) {
  MOHGE_CHECK(count >= 1 && count <= kMatvecMaxProducts, "matvec: {} products of one input (1 to {})", count,
              kMatvecMaxProducts);
  // 8 weight rows per tile: in a standalone comparison on the dense preset's shapes 8 beat 4, and
  // beat blocking several inputs per tile at 1 to 32 inputs; the tile stays in L1 while it meets
  // the N inputs in turn. bench/bench_matvec measures the kernel as it is.
  constexpr int RO = 8;
  int64_t first[kMatvecMaxProducts + 1] = {0}, elems = 0;  // product j: tiles first[j] .. first[j+1]-1
  for (int j = 0; j < count; j++) {
    first[j + 1] = first[j] + (products[j].O + RO - 1) / RO;
    elems += (int64_t)products[j].O * I;
  }
  // Threads take contiguous runs of tiles across the products, so each streams its slice of the
  // weights once; small products (router gates) are not worth waking the other threads for.
  parallel_rows(first[count], elems >= kParallelMinElems, [&](int64_t b0, int64_t b1) {
    int j = 0;
    for (int64_t b = b0; b < b1; b++) {
      while (b >= first[j + 1]) j++;
      const int O = products[j].O, o0 = (int)(b - first[j]) * RO;
      const T* w = products[j].w;
      for (int n = 0; n < N; n++) {
        float* o = products[j].out + (int64_t)n * O + o0;
        const T* xn = x + (int64_t)n * I;
        if (o0 + RO <= O) {
          tile<T, RO>(o, xn, w + (int64_t)o0 * I, I, accumulate);
        } else {
          for (int r = o0; r < O; r++) tile<T, 1>(o + (r - o0), xn, w + (int64_t)r * I, I, accumulate);
        }
      }
    }
  });
}

}  // namespace

void matvec(const MatvecProduct<float>* products, int count, const float* inp, int N, int I, bool accumulate) {
  matvec_tiles(products, count, inp, N, I, accumulate);
}

void matvec(const MatvecProduct<uint16_t>* products, int count, const float* inp, int N, int I, bool accumulate) {
#ifdef __AVX512BF16__
  // the inputs rounded to bf16 once (N ≤ kMatvecMaxRows rows: a few KB), from a cache line
  thread_local std::vector<uint16_t> buf;
  const size_t n = (size_t)N * I;
  buf.resize(n + 32);
  uint16_t* x16 = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t{63});
  to_bf16(x16, inp, N, I, I);
  matvec_tiles(products, count, x16, N, I, accumulate);
#else
  fail("bf16 weights need a CPU with AVX512-BF16 and a build for it (-march=native): use fp32 weights");
#endif
}

#else  // no AVX-512: matvec_supported() is false and the backend uses the GEMM instead

void matvec(const MatvecProduct<float>*, int, const float*, int, int, bool) {
  fail("matvec needs AVX-512 (this build has none)");
}
void matvec(const MatvecProduct<uint16_t>*, int, const float*, int, int, bool) {
  fail("bf16 weights need a CPU with AVX512-BF16 and a build for it (-march=native): use fp32 weights");
}

#endif

}  // namespace mohge
