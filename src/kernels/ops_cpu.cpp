// defines: the CPU implementation of kernels/ops.h (gemm.h for matmuls, OpenMP elsewhere)
#include <omp.h>

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/parallel.h"
#include "kernels/rope_table.h"
#include "kernels/vec_math.h"

namespace mohge {

void matmul_forward(float* out, const float* inp, const float* w, int N, int I, int O,
                    bool accumulate, Precision p) {
  gemm(false, true, N, O, I, 1.0f, inp, I, w, I, accumulate ? 1.0f : 0.0f, out, O, p);
}

void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                     int N, int I, int O, Precision p) {
  if (dinp) gemm(false, false, N, I, O, 1.0f, dout, O, w, I, 1.0f, dinp, I, p);
  if (dw) gemm(true, false, O, I, N, 1.0f, dout, O, inp, I, 1.0f, dw, I, p);
}

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) {
  parallel_rows(N, (int64_t)N * C >= kParallelMinElems, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) std::copy_n(wte + (int64_t)tokens[n] * C, C, out + n * C);
  });
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
  // Parallel over feature columns: two rows with the same token never race.
  int nthreads = omp_get_max_threads();
#pragma omp parallel for schedule(static)
  for (int part = 0; part < nthreads; part++) {
    int c0 = (int)((int64_t)C * part / nthreads), c1 = (int)((int64_t)C * (part + 1) / nthreads);
    for (int n = 0; n < N; n++) {
      float* d = dwte + (int64_t)tokens[n] * C;
      const float* g = dout + (int64_t)n * C;
      for (int c = c0; c < c1; c++) d[c] += g[c];
    }
  }
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                     float eps) {
  parallel_rows(N, (int64_t)N * C >= kParallelMinElems, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      const float* x = inp + n * C;
      float* y = out + n * C;
      float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
      for (int c = 0; c < C; c++) ss += x[c] * x[c];
      float r = 1.0f / std::sqrt(ss / C + eps);
      for (int c = 0; c < C; c++) y[c] = x[c] * r * w[c];
      rstd[n] = r;
    }
  });
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C) {
  // y = x·r·w with r = (mean x² + eps)^-½:  dx = r·(g·w) − x·r³·mean(g·w·x),  dw += g·x·r.
  int nthreads = omp_get_max_threads();
  std::vector<float> dw_part((size_t)nthreads * C, 0.0f);
#pragma omp parallel
  {
    float* dwp = dw_part.data() + (size_t)omp_get_thread_num() * C;
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      const float* x = inp + (int64_t)n * C;
      const float* g = dout + (int64_t)n * C;
      float* dx = dinp + (int64_t)n * C;
      float r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int c = 0; c < C; c++) dot += g[c] * w[c] * x[c];
      float k = r * r * r * dot / C;
      for (int c = 0; c < C; c++) {
        dx[c] += r * g[c] * w[c] - k * x[c];
        dwp[c] += g[c] * x[c] * r;
      }
    }
  }
  for (int t = 0; t < nthreads; t++)
    for (int c = 0; c < C; c++) dw[c] += dw_part[(size_t)t * C + c];
}

void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse) {
  const int half = hd / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  // the angles of positions up to the table's reach from the shared table (computed once), of
  // later ones row by row
  const std::shared_ptr<const RopeTable> table = rope_table(theta, hd, (int64_t)pos0 + T);
  parallel_rows(T, (int64_t)B * T * H * hd >= kParallelMinElems, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> row;
    for (int64_t t = t0; t < t1; t++) {
      const float* cs;
      if (pos0 + t < table->positions) {
        cs = table->at(pos0 + t);
      } else {
        row.resize(hd);
        rope_angles(row.data(), row.data() + half, pos0 + t, *table);
        cs = row.data();
      }
      const float* sn = cs + half;
      for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
          float* v = x + (((int64_t)b * T + t) * H + h) * hd;
          for (int i = 0; i < half; i++) {
            const float x1 = v[i], x2 = v[i + half], s = sign * sn[i];
            v[i] = x1 * cs[i] - x2 * s;
            v[i + half] = x2 * cs[i] + x1 * s;
          }
        }
    }
  });
}

// Flash-attention tiles: a thread holds the scores of kAttnRows queries × kAttnCols keys at a
// time (64 KB), whatever T is. Key tiles past a query tile's last row are never visited.
static constexpr int kAttnRows = 64, kAttnCols = 256;
// Tiles of at most this many query rows multiply by plain loops, not GEMM calls: decode's one
// query per sequence and head (and a short prompt) gains nothing from a GEMM, and then never
// starts oneDNN, whose first call generates its kernels (most of a short `generate`'s startup).
static constexpr int kAttnLoopRows = 4;

// decode's one-query attention kernels of one head dim (OneQuery below)
struct OneQueryKernels {
  void (*scores)(float*, const float*, const float*, int, int, float);
  void (*values)(float*, const float*, int, const float*, int, bool);
};

#if defined(__AVX512F__) && defined(__AVX512VL__)  // VL: the 256-bit masked store of the scores
// GCC 12's AVX-512 shuffles warn of their own "undefined" vectors (bug 105593, see matvec_cpu.cpp)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// the sums of a, b, c and d's 16 lanes
static __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  auto quarter = [](__m512 x) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x),
                                   _mm512_castps512_ps256(_mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2))));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  };
  return _mm_hadd_ps(_mm_hadd_ps(quarter(a), quarter(b)), _mm_hadd_ps(quarter(c), quarter(d)));
}

// One query over the keys of a tile (decode's case), head dim hd = 16·NV: the query (and the
// output row) stay in NV registers. Scores: 8 keys per step, each with its own accumulator (no
// chain of dependent FMAs per key), reduced 4 at a time; values: NS independent sets of output
// registers over alternate keys, added at the end.
template <int NV>
struct OneQuery {
  static void scores(float* S, const float* q, const float* K, int ks, int nc, float scale) {
    __m512 qv[NV];
    for (int v = 0; v < NV; v++) qv[v] = _mm512_loadu_ps(q + 16 * v);
    const __m128 sc = _mm_set1_ps(scale);
    for (int j0 = 0; j0 < nc; j0 += 8) {
      __m512 acc[8];
      const float* kj[8];
      for (int k = 0; k < 8; k++) {  // keys past the tile repeat its last one, their sums unused
        acc[k] = _mm512_setzero_ps();
        kj[k] = K + (int64_t)std::min(j0 + k, nc - 1) * ks;
      }
      for (int v = 0; v < NV; v++)
        for (int k = 0; k < 8; k++) acc[k] = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(kj[k] + 16 * v), acc[k]);
      const __m128 lo = _mm_mul_ps(sc, sum4(acc[0], acc[1], acc[2], acc[3]));
      const __m128 hi = _mm_mul_ps(sc, sum4(acc[4], acc[5], acc[6], acc[7]));
      const __m256 s8 = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
      if (j0 + 8 <= nc) _mm256_storeu_ps(S + j0, s8);
      else _mm256_mask_storeu_ps(S + j0, (__mmask8)((1u << (nc - j0)) - 1), s8);
    }
  }
  static void values(float* o, const float* S, int nc, const float* V, int ks, bool accumulate) {
    constexpr int NS = NV <= 8 ? 2 : 1;  // NS·NV accumulators: at most 16 of the 32 registers
    __m512 acc[NS][NV];
    for (int v = 0; v < NV; v++) {
      acc[0][v] = accumulate ? _mm512_loadu_ps(o + 16 * v) : _mm512_setzero_ps();
      for (int a = 1; a < NS; a++) acc[a][v] = _mm512_setzero_ps();
    }
    int j = 0;
    for (; j + NS <= nc; j += NS)
      for (int a = 0; a < NS; a++) {
        const __m512 p = _mm512_set1_ps(S[j + a]);
        const float* vj = V + (int64_t)(j + a) * ks;
        for (int v = 0; v < NV; v++) acc[a][v] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 16 * v), acc[a][v]);
      }
    for (; j < nc; j++) {
      const __m512 p = _mm512_set1_ps(S[j]);
      const float* vj = V + (int64_t)j * ks;
      for (int v = 0; v < NV; v++) acc[0][v] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 16 * v), acc[0][v]);
    }
    for (int v = 0; v < NV; v++) {
      for (int a = 1; a < NS; a++) acc[0][v] = _mm512_add_ps(acc[0][v], acc[a][v]);
      _mm512_storeu_ps(o + 16 * v, acc[0][v]);
    }
  }
};

// OneQuery<hd/16> for hd = 16, 32, …, 256; null otherwise (the plain loops then)
template <size_t... I>
constexpr std::array<OneQueryKernels, sizeof...(I)> one_query_table(std::index_sequence<I...>) {
  return {OneQueryKernels{OneQuery<I + 1>::scores, OneQuery<I + 1>::values}...};
}
static constexpr auto kOneQuery = one_query_table(std::make_index_sequence<16>());
static const OneQueryKernels* one_query(int hd) {
  return hd % 16 == 0 && hd >= 16 && hd <= 16 * (int)kOneQuery.size() ? &kOneQuery[hd / 16 - 1] : nullptr;
}
#else
static const OneQueryKernels* one_query(int) { return nullptr; }
#endif

// S[nr,nc] = scale · Q·Kᵀ for the queries r0.. (Q points at row r0) and the keys c0.. (K at row
// 0), with every key after its query's position set to -inf: exp gives 0, the causal mask.
static void attention_scores(float* S, const float* Q, int qs, const float* K, int ks, int r0,
                             int nr, int c0, int nc, int hd, float scale) {
  const OneQueryKernels* one = nr == 1 ? one_query(hd) : nullptr;
  if (one) {
    one->scores(S, Q, K + (int64_t)c0 * ks, ks, nc, scale);
  } else if (nr <= kAttnLoopRows) {
    for (int i = 0; i < nr; i++)
      for (int j = 0; j < nc; j++) {
        const float *qi = Q + (int64_t)i * qs, *kj = K + (int64_t)(c0 + j) * ks;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int d = 0; d < hd; d++) s += qi[d] * kj[d];
        S[(int64_t)i * nc + j] = scale * s;
      }
  } else {
    gemm(false, true, nr, nc, hd, scale, Q, qs, K + (int64_t)c0 * ks, ks, 0.0f, S, nc);
  }
  for (int i = 0; i < nr; i++) {
    const int first_masked = std::max(r0 + i + 1 - c0, 0);
    if (first_masked < nc)
      std::fill(S + (int64_t)i * nc + first_masked, S + (int64_t)(i + 1) * nc, -INFINITY);
  }
}

// O[nr,hd] (stride qs) = S[nr,nc]·V[nc,hd] (V rows of stride ks), or += when accumulate.
static void attention_values(float* O, int qs, const float* S, int nr, int nc, const float* V, int ks, int hd,
                             bool accumulate) {
  if (nr > kAttnLoopRows) return gemm(false, false, nr, hd, nc, 1.0f, S, nc, V, ks, accumulate ? 1.0f : 0.0f, O, qs);
  if (const OneQueryKernels* one = nr == 1 ? one_query(hd) : nullptr) return one->values(O, S, nc, V, ks, accumulate);
  for (int i = 0; i < nr; i++) {
    float* o = O + (int64_t)i * qs;
    if (!accumulate) std::fill_n(o, hd, 0.0f);
    for (int j = 0; j < nc; j++) {
      const float p = S[(int64_t)i * nc + j];
      const float* vj = V + (int64_t)j * ks;
#pragma omp simd
      for (int d = 0; d < hd; d++) o[d] += p * vj[d];
    }
  }
}

// One head of causal attention for the nr ≤ kAttnRows queries Q (rows of stride qs) at positions
// p0 .. p0+nr-1 over the keys 0 .. p0+nr-1 of K and V (rows of stride ks): O (stride qs) and, when
// lse is not null, each row's log-sum-exp. Key tiles with an online softmax; S is the tile scratch.
static void attention_rows(float* O, float* lse, const float* Q, const float* K, const float* V, int qs,
                           int ks, int p0, int nr, int hd, float scale, float* S) {
  float mx[kAttnRows], sum[kAttnRows];  // running max and Σ exp(score − max) per row
  const int r1 = p0 + nr;
  for (int c0 = 0; c0 < r1; c0 += kAttnCols) {
    const int nc = std::min(r1 - c0, kAttnCols);
    attention_scores(S, Q, qs, K, ks, p0, nr, c0, nc, hd, scale);
    // online softmax: the first tile holds key 0, so every max is finite from then on
    for (int i = 0; i < nr; i++) {
      float* row = S + (int64_t)i * nc;
      float m = c0 == 0 ? -INFINITY : mx[i];
#pragma omp simd reduction(max : m)
      for (int j = 0; j < nc; j++) m = std::max(m, row[j]);
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int j = 0; j < nc; j++) s += (row[j] = exp_approx(row[j] - m));
      if (c0 == 0) {
        sum[i] = s;
      } else {  // rescale what earlier tiles summed to the new max
        const float corr = exp_approx(mx[i] - m);
        sum[i] = sum[i] * corr + s;
        float* o = O + (int64_t)i * qs;
        for (int d = 0; d < hd; d++) o[d] *= corr;
      }
      mx[i] = m;
    }
    attention_values(O, qs, S, nr, nc, V + (int64_t)c0 * ks, ks, hd, c0 > 0);
  }
  for (int i = 0; i < nr; i++) {
    const float inv = 1.0f / sum[i];
    float* o = O + (int64_t)i * qs;
    for (int d = 0; d < hd; d++) o[d] *= inv;
    if (lse) lse[i] = mx[i] + std::log(sum[i]);
  }
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int B, int T, int H, int KVH, int hd) {
  const int qs = H * hd, ks = KVH * hd, rep = H / KVH;
  const int row_tiles = (T + kAttnRows - 1) / kAttnRows;
  const float scale = 1.0f / std::sqrt((float)hd);
  if (T > kAttnLoopRows) gemm_ready();  // its tiles multiply inside the region
#pragma omp parallel
  {
    std::vector<float> S((size_t)kAttnRows * kAttnCols);
    // every (batch, head, query tile) writes only its own rows of out and lse
#pragma omp for collapse(3) schedule(dynamic)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int tile = 0; tile < row_tiles; tile++) {
          const int r0 = tile * kAttnRows, nr = std::min(T - r0, kAttnRows);
          const int64_t at = ((int64_t)b * T + r0) * qs + h * hd, kv = (int64_t)b * T * ks + (h / rep) * hd;
          attention_rows(out + at, lse + ((int64_t)b * H + h) * T + r0, q + at, k + kv, v + kv, qs, ks, r0, nr,
                         hd, scale, S.data());
        }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, int B,
                        int T, int H, int KVH, int hd) {
  const int qs = H * hd, ks = KVH * hd, rep = H / KVH;
  const float scale = 1.0f / std::sqrt((float)hd);
  gemm_ready();  // its tiles multiply inside the region
#pragma omp parallel
  {
    std::vector<float> P((size_t)kAttnRows * kAttnCols), dS((size_t)kAttnRows * kAttnCols);
    float D[kAttnRows];  // D_t = Σ_d dout·out = Σ_s P·dP, the softmax backward's row term
    // One task per (batch, kv head): it owns the dk/dv rows of its kv head and the dq rows of
    // the query heads that read it, so nothing races and no sum depends on the thread count.
#pragma omp for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
      for (int kh = 0; kh < KVH; kh++) {
        const float* K = k + (int64_t)b * T * ks + kh * hd;
        const float* V = v + (int64_t)b * T * ks + kh * hd;
        float* dK = dk + (int64_t)b * T * ks + kh * hd;
        float* dV = dv + (int64_t)b * T * ks + kh * hd;
        for (int h = kh * rep; h < (kh + 1) * rep; h++)
          for (int r0 = 0; r0 < T; r0 += kAttnRows) {
            const int r1 = std::min(T, r0 + kAttnRows), nr = r1 - r0;
            const int64_t at = ((int64_t)b * T + r0) * qs + h * hd;
            const float *Q = q + at, *dO = dout + at, *O = out + at;
            float* dQ = dq + at;
            const float* L = lse + ((int64_t)b * H + h) * T + r0;
            for (int i = 0; i < nr; i++) {
              float s = 0.0f;
#pragma omp simd reduction(+ : s)
              for (int d = 0; d < hd; d++)
                s += dO[(int64_t)i * qs + d] * O[(int64_t)i * qs + d];
              D[i] = s;
            }
            for (int c0 = 0; c0 < r1; c0 += kAttnCols) {
              const int nc = std::min(r1 - c0, kAttnCols);
              const float *Kc = K + (int64_t)c0 * ks, *Vc = V + (int64_t)c0 * ks;
              // S (in P) = Q·Kᵀ·scale and dP (in dS) = dO·Vᵀ, then in one pass over the tile
              // P = exp(S − lse), the forward's probabilities (0 where masked), and
              // dS = P ⊙ (dP − D), scaled for the Q·Kᵀ product
              attention_scores(P.data(), Q, qs, K, ks, r0, nr, c0, nc, hd, scale);
              gemm(false, true, nr, nc, hd, 1.0f, dO, qs, Vc, ks, 0.0f, dS.data(), nc);
              for (int i = 0; i < nr; i++) {
                float* p = P.data() + (int64_t)i * nc;
                float* d = dS.data() + (int64_t)i * nc;
                const float l = L[i], Di = D[i];
#pragma omp simd
                for (int j = 0; j < nc; j++) {
                  p[j] = exp_approx(p[j] - l);
                  d[j] = p[j] * (d[j] - Di) * scale;
                }
              }
              // Query 0 sees key 0 alone: its softmax is constant, so dS is exactly 0 there
              // (D cancels dP only up to rounding, as they are summed in different orders).
              if (r0 == 0) std::fill_n(dS.data(), nc, 0.0f);
              // dV += Pᵀ·dO;  dQ += dS·K;  dK += dSᵀ·Q
              gemm(true, false, nc, hd, nr, 1.0f, P.data(), nc, dO, qs, 1.0f,
                   dV + (int64_t)c0 * ks, ks);
              gemm(false, false, nr, hd, nc, 1.0f, dS.data(), nc, Kc, ks, 1.0f, dQ, qs);
              gemm(true, false, nc, hd, nr, 1.0f, dS.data(), nc, Q, qs, 1.0f,
                   dK + (int64_t)c0 * ks, ks);
            }
          }
      }
  }
}

void attention_decode(float* out, const float* q, const float* kcache, const float* vcache,
                      const int32_t* seq, const int32_t* pos, int N, int max_len, int H, int KVH,
                      int hd) {
  const int qs = H * hd, ks = KVH * hd, rep = H / KVH;
  const float scale = 1.0f / std::sqrt((float)hd);
  // Tiles of up to kAttnRows rows of one sequence at consecutive positions (a prompt's rows, or one
  // decoded token): a tile's queries share their keys, so its scores are one GEMM per key tile.
  // kept between calls (no allocation per decode step and layer); a reference, so that the
  // region's threads read the calling thread's list, not their own
  thread_local std::vector<int> kept_tile_row0;
  std::vector<int>& tile_row0 = kept_tile_row0;
  tile_row0.clear();
  for (int i = 0; i < N; i++)
    if (i == 0 || seq[i] != seq[i - 1] || pos[i] != pos[i - 1] + 1 || i - tile_row0.back() == kAttnRows)
      tile_row0.push_back(i);
  const int tiles = (int)tile_row0.size();
  tile_row0.push_back(N);
  int64_t keys = 0;  // query–key pairs: the work, each a dot product and an axpy of hd per head
  int widest = 0;
  for (int i = 0; i < N; i++) keys += pos[i] + 1;
  for (int t = 0; t < tiles; t++) widest = std::max(widest, tile_row0[t + 1] - tile_row0[t]);
  // every (tile, head) writes only its own rows of out; each row is one task's, in a fixed order
  auto task = [&](int t, int h, float* S) {
    const int i0 = tile_row0[t], nr = tile_row0[t + 1] - i0;
    const int64_t at = (int64_t)i0 * qs + h * hd, kv = (int64_t)seq[i0] * max_len * ks + (h / rep) * hd;
    attention_rows(out + at, nullptr, q + at, kcache + kv, vcache + kv, qs, ks, pos[i0], nr, hd, scale, S);
  };
  if (widest > kAttnLoopRows) gemm_ready();  // a prompt's tiles multiply, maybe inside the region
  // each thread's score tile, kept between calls: a fresh 64 KB vector per call was zeroed every
  // decode step and layer
  auto scores = [] {
    thread_local std::vector<float> S((size_t)kAttnRows * kAttnCols);
    return S.data();
  };
  parallel_tasks((int64_t)tiles * H, keys * H * hd >= 2 * kParallelMinElems,
                 [&](int64_t th) { task((int)(th / H), (int)(th % H), scores()); });
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) {
  parallel_rows(N, N >= kParallelMinElems, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      float g = gate[i];
      out[i] = g / (1.0f + exp_approx(-g)) * up[i];
    }
  });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t N) {
  parallel_rows(N, N >= kParallelMinElems, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      float g = gate[i], s = 1.0f / (1.0f + exp_approx(-g));
      float silu = g * s;
      dup[i] += dout[i] * silu;
      dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
    }
  });
}

double crossentropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets,
                            int N, int V) {
  // Per-row losses summed serially afterwards: the total is bit-identical for any thread
  // count, which exact resume (equal losses after restart) relies on.
  std::vector<float> row_loss(N);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* x = logits + (int64_t)n * V;
    // simd reductions: vectorised in a fixed lane order, so still deterministic
    float mx = x[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < V; j++) mx = std::max(mx, x[j]);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++) sum += exp_approx(x[j] - mx);
    lse[n] = mx + std::log(sum);
    row_loss[n] = lse[n] - x[targets[n]];
  }
  double total = 0.0;
  for (int n = 0; n < N; n++) total += row_loss[n];
  if (losses) std::copy(row_loss.begin(), row_loss.end(), losses);
  return total;
}

void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                           const int32_t* targets, int N, int V, float dscale) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* x = logits + (int64_t)n * V;
    float* d = dlogits + (int64_t)n * V;
    const float l = lse[n];
    for (int j = 0; j < V; j++) d[j] = exp_approx(x[j] - l) * dscale;
    d[targets[n]] -= dscale;
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  parallel_rows(n, n >= kParallelMinElems, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] += x[i];
  });
}

void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d) {
  parallel_rows(P, (int64_t)P * d >= kParallelMinElems, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) std::copy_n(inp + (int64_t)src[p] * d, d, out + p * d);
  });
}

// Token-major (each token sums its own rows), so no two threads write the same row.
void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets, const int32_t* pos,
                          int N, int d) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < N; t++) {
    float* dx = dinp + (int64_t)t * d;
    for (int j = offsets[t]; j < offsets[t + 1]; j++) {
      const float* s = dout + (int64_t)pos[j] * d;
#pragma omp simd
      for (int i = 0; i < d; i++) dx[i] += s[i];
    }
  }
}

void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets,
                  const int32_t* pos, int N, int d) {
  parallel_rows(N, (int64_t)offsets[N] * d >= kParallelMinElems, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      float* o = out + t * d;
      std::fill(o, o + d, 0.0f);
      for (int j = offsets[t]; j < offsets[t + 1]; j++) {
        const float w = weight[j], *yj = y + (int64_t)pos[j] * d;
#pragma omp simd
        for (int i = 0; i < d; i++) o[i] += w * yj[i];
      }
    }
  });
}

void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y,
                           const float* weight, const int32_t* offsets, const int32_t* pos, int N,
                           int d) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < N; t++) {
    const float* g = dout + (int64_t)t * d;
    for (int j = offsets[t]; j < offsets[t + 1]; j++) {
      const float w = weight[j], *yj = y + (int64_t)pos[j] * d;
      float* dyj = dy + (int64_t)pos[j] * d;
      float dw = 0.0f;
#pragma omp simd reduction(+ : dw)
      for (int i = 0; i < d; i++) dyj[i] = w * g[i], dw += g[i] * yj[i];
      dweight[j] = dw;
    }
  }
}

double sum_squares(const float* x, int64_t n) {
  constexpr int kChunks = 64;  // fixed partition: the sum order does not depend on the thread count
  double part[kChunks] = {};
#pragma omp parallel for schedule(static)
  for (int c = 0; c < kChunks; c++) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)  // vector lanes in a fixed order: still deterministic
    for (int64_t i = n * c / kChunks; i < n * (c + 1) / kChunks; i++) s += (double)x[i] * x[i];
    part[c] = s;
  }
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

void adamw_step(float* w, const float* g, float* m, float* v, const std::vector<ParamSegment>& segs,
                const AdamWStep& s) {
  const float b1 = (float)s.beta1, b2 = (float)s.beta2, eps = (float)s.eps, lr = (float)s.lr;
  const float gm = s.grad_mult, lr_wd = (float)(s.lr * s.weight_decay);
  const float c1 = 1.0f / (1.0f - (float)std::pow(s.beta1, (double)s.t));
  const float c2 = 1.0f / (1.0f - (float)std::pow(s.beta2, (double)s.t));
  // Tensor by tensor, so the decay flag is a constant of each loop; the threads split every
  // tensor and never wait for each other between tensors (nowait).
#pragma omp parallel
  for (const ParamSegment& p : segs) {
    const float wd = p.decay ? lr_wd : 0.0f;
    float *wp = w + p.offset, *mp = m + p.offset, *vp = v + p.offset;
    const float* gp = g + p.offset;
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < p.numel; i++) {
      const float gi = gp[i] * gm;
      float mi = mp[i] = b1 * mp[i] + (1.0f - b1) * gi;
      float vi = vp[i] = b2 * vp[i] + (1.0f - b2) * gi * gi;
      // decoupled decay: w ← w − lr·wd·w, independent of the gradient statistics
      wp[i] -= lr * (mi * c1) / (std::sqrt(vi * c2) + eps) + wd * wp[i];
    }
  }
}

}  // namespace mohge
