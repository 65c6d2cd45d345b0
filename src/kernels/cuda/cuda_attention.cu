// defines: causal GQA attention on the GPU — forward with an online softmax saving each row's
// log-sum-exp (flash attention: Dao et al. 2022; memory O(T), never T×T), and its backward in
// three deterministic kernels (no atomics): D = rowsum(dout ⊙ out); dq by query tiles; dk, dv by
// key tiles. fp32 on CUDA cores, written for correctness first: one warp per query row (or key)
// at a time, keys (or queries) staged kTile at a time in shared memory, lane j handling key (or
// query) j of the tile. These serve p = fp32 and the calls the tensor-core kernels do not take;
// p = bf16 goes to those (cuda_attention_mma.cu), which cut the dense_3b training step on an H200
// from 751 to 225 ms (docs/BENCHMARKS.md).
// Layouts (Backend::attention_forward): q[B,T,H,hd], k/v[B,T,KVH,hd], out[B,T,H,hd], lse[B,H,T];
// query head h reads kv head h / (H/KVH).
#include <type_traits>

#include "kernels/cuda/cuda_attention.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mohge::cuda {

namespace {

constexpr int kTile = 32;         // queries or keys per tile: one per lane
constexpr int kWarps = 4;         // per block of the forward and dq kernels: 4 × 8 query rows
constexpr int kPerWarp = kTile / kWarps;
constexpr int kKvWarps = 8;       // per block of the dk/dv kernel: 8 × 4 keys (its accumulators
constexpr int kKvPerWarp = kTile / kKvWarps;  // are twice the forward's: fewer per warp, no spills)
// Kernels are templated on DIMS, the head dims per lane (d = lane + 32·i, i < DIMS): register
// arrays need a compile-time size, and hd = 64 should not pay for hd = 128's registers.

// Σ_d a[d]·b[d], in d order (the forward and backward score of a (query, key) pair agree).
__device__ inline float dot(const float* a, const float* b, int hd) {
  float s = 0.0f;
  for (int d = 0; d < hd; d++) s += a[d] * b[d];
  return s;
}

// rows kTile × hd of x starting at time t0 into shared memory with row stride `stride` (hd, or
// hd + 1 where a lane reads its own row: the padding puts the 32 rows in 32 different banks);
// rows at t ≥ T are zero, so a masked probability (0) never meets an uninitialised value.
__device__ inline void load_tile(float* dst, int stride, const float* x, int64_t row0, int64_t row_step,
                                 int t0, int T, int hd) {
  for (int e = threadIdx.x; e < kTile * hd; e += blockDim.x) {
    const int i = e / hd, d = e % hd;
    dst[i * stride + d] = t0 + i < T ? x[row0 + (int64_t)i * row_step + d] : 0.0f;
  }
}

// Grid (query tiles, H, B). Warp w owns query rows w·kPerWarp … of the tile; for each key tile it
// updates each row's running max m, sum l and output accumulator (FlashAttention-2's loop).
template <int DIMS>
__global__ void attention_forward_kernel(float* out, float* lse, const float* q, const float* k,
                                         const float* v, AttnShape s) {
  extern __shared__ float smem[];
  const int hd = s.hd, b = blockIdx.z, h = blockIdx.y, kh = h / s.rep(), r0 = blockIdx.x * kTile;
  float* Qs = smem;                  // [kTile][hd]
  float* Ks = Qs + kTile * hd;       // [kTile][hd + 1]
  float* Vs = Ks + kTile * (hd + 1);  // [kTile][hd]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  load_tile(Qs, hd, q, s.q_at(b, r0, h), (int64_t)s.H * hd, r0, s.T, hd);

  float m[kPerWarp], l[kPerWarp], acc[kPerWarp][DIMS];
#pragma unroll
  for (int r = 0; r < kPerWarp; r++) {
    m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < DIMS; i++) acc[r][i] = 0.0f;
  }
  const int keys_end = min(s.T, r0 + kTile);  // the last row of the tile sees keys < keys_end
  for (int c0 = 0; c0 < keys_end; c0 += kTile) {
    __syncthreads();  // the previous tile is consumed
    load_tile(Ks, hd + 1, k, s.kv_at(b, c0, kh), (int64_t)s.KVH * hd, c0, s.T, hd);
    load_tile(Vs, hd, v, s.kv_at(b, c0, kh), (int64_t)s.KVH * hd, c0, s.T, hd);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kPerWarp; r++) {
      const int i = warp * kPerWarp + r, t = r0 + i;
      if (t >= s.T || c0 > t) continue;  // the same for the whole warp
      const int key = c0 + lane;
      const float sc = key <= t ? dot(Qs + i * hd, Ks + lane * (hd + 1), hd) * s.scale : -INFINITY;
      // key c0 ≤ t is in this tile, so m_new is finite; exp(−inf) = 0 masks the rest
      const float m_new = fmaxf(m[r], warp_max(sc));
      const float p = expf(sc - m_new), corr = expf(m[r] - m_new);
      l[r] = l[r] * corr + warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int i2 = 0; i2 < DIMS; i2++) acc[r][i2] *= corr;
      for (int j = 0; j < kTile; j++) {
        const float pj = __shfl_sync(kFullWarp, p, j);
#pragma unroll
        for (int i2 = 0; i2 < DIMS; i2++) {
          const int d = lane + 32 * i2;
          if (d < hd) acc[r][i2] += pj * Vs[j * hd + d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kPerWarp; r++) {
    const int t = r0 + warp * kPerWarp + r;
    if (t >= s.T) continue;
    float* o = out + s.q_at(b, t, h);
#pragma unroll
    for (int i2 = 0; i2 < DIMS; i2++) {
      const int d = lane + 32 * i2;
      if (d < hd) o[d] = acc[r][i2] / l[r];
    }
    if (lane == 0) lse[s.lse_at(b, h, t)] = m[r] + logf(l[r]);
  }
}

// D[b,h,t] = Σ_d dout·out, the softmax backward's row term (= Σ_s P·dP). One warp per row.
__global__ void attention_rowdot_kernel(float* D, const float* dout, const float* out, AttnShape s) {
  const int64_t row = (int64_t)blockIdx.x * kWarps + threadIdx.x / 32;  // (b·T + t)·H + h
  if (row >= (int64_t)s.B * s.T * s.H) return;
  const int lane = threadIdx.x % 32, h = (int)(row % s.H), t = (int)((row / s.H) % s.T);
  const int b = (int)(row / ((int64_t)s.H * s.T));
  float x = 0.0f;
  for (int d = lane; d < s.hd; d += 32) x += dout[row * s.hd + d] * out[row * s.hd + d];
  x = warp_sum(x);
  if (lane == 0) D[s.lse_at(b, h, t)] = x;
}

// dS[t, s] = P·(dP − D)·scale with P = exp(score − lse), dP = dout_t·v_s. Query 0 sees key 0
// alone: its softmax is constant, so dS is exactly 0 there (as on the CPU: D cancels dP only up
// to rounding, the two being summed in different orders).
__device__ inline float attention_dscore(float p, const float* dO, const float* V, float D, int t, int hd,
                                         float scale) {
  return t == 0 ? 0.0f : p * (dot(dO, V, hd) - D) * scale;
}

// Grid (query tiles, H, B): dq[t] += Σ_s dS[t, s]·k[s], keys visited tile by tile as in forward.
template <int DIMS>
__global__ void attention_backward_dq_kernel(float* dq, const float* dout, const float* lse, const float* D,
                                             const float* q, const float* k, const float* v, AttnShape s) {
  extern __shared__ float smem[];
  const int hd = s.hd, b = blockIdx.z, h = blockIdx.y, kh = h / s.rep(), r0 = blockIdx.x * kTile;
  float* Qs = smem;                    // [kTile][hd]
  float* dOs = Qs + kTile * hd;        // [kTile][hd]
  float* Ks = dOs + kTile * hd;        // [kTile][hd + 1]
  float* Vs = Ks + kTile * (hd + 1);   // [kTile][hd + 1]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  load_tile(Qs, hd, q, s.q_at(b, r0, h), (int64_t)s.H * hd, r0, s.T, hd);
  load_tile(dOs, hd, dout, s.q_at(b, r0, h), (int64_t)s.H * hd, r0, s.T, hd);

  float acc[kPerWarp][DIMS] = {};
  const int keys_end = min(s.T, r0 + kTile);
  for (int c0 = 0; c0 < keys_end; c0 += kTile) {
    __syncthreads();
    load_tile(Ks, hd + 1, k, s.kv_at(b, c0, kh), (int64_t)s.KVH * hd, c0, s.T, hd);
    load_tile(Vs, hd + 1, v, s.kv_at(b, c0, kh), (int64_t)s.KVH * hd, c0, s.T, hd);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kPerWarp; r++) {
      const int i = warp * kPerWarp + r, t = r0 + i;
      if (t >= s.T || c0 > t) continue;  // the same for the whole warp
      const int key = c0 + lane;
      float ds = 0.0f;
      if (key <= t) {
        const float p = expf(dot(Qs + i * hd, Ks + lane * (hd + 1), hd) * s.scale - lse[s.lse_at(b, h, t)]);
        ds = attention_dscore(p, dOs + i * hd, Vs + lane * (hd + 1), D[s.lse_at(b, h, t)], t, hd, s.scale);
      }
      for (int j = 0; j < kTile; j++) {
        const float dsj = __shfl_sync(kFullWarp, ds, j);
#pragma unroll
        for (int i2 = 0; i2 < DIMS; i2++) {
          const int d = lane + 32 * i2;
          if (d < hd) acc[r][i2] += dsj * Ks[j * (hd + 1) + d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kPerWarp; r++) {
    const int t = r0 + warp * kPerWarp + r;
    if (t >= s.T) continue;
    float* g = dq + s.q_at(b, t, h);
#pragma unroll
    for (int i2 = 0; i2 < DIMS; i2++) {
      const int d = lane + 32 * i2;
      if (d < hd) g[d] += acc[r][i2];
    }
  }
}

// Grid (key tiles, KVH, B): for the keys of the tile, over every query head of the kv head and
// every query t ≥ the tile's first key, dv[s] += Σ_t P[t,s]·dout[t] and dk[s] += Σ_t dS[t,s]·q[t].
// Warp w owns keys w·kKvPerWarp …; lane i handles query i of the staged query tile.
template <int DIMS>
__global__ void attention_backward_dkv_kernel(float* dk, float* dv, const float* dout, const float* lse,
                                              const float* D, const float* q, const float* k, const float* v,
                                              AttnShape s) {
  extern __shared__ float smem[];
  const int hd = s.hd, b = blockIdx.z, kh = blockIdx.y, c0 = blockIdx.x * kTile;
  float* Ks = smem;                     // [kTile][hd]
  float* Vs = Ks + kTile * hd;          // [kTile][hd]
  float* Qs = Vs + kTile * hd;          // [kTile][hd + 1]
  float* dOs = Qs + kTile * (hd + 1);   // [kTile][hd + 1]
  float* Ls = dOs + kTile * (hd + 1);   // [kTile]
  float* Ds = Ls + kTile;               // [kTile]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  load_tile(Ks, hd, k, s.kv_at(b, c0, kh), (int64_t)s.KVH * hd, c0, s.T, hd);
  load_tile(Vs, hd, v, s.kv_at(b, c0, kh), (int64_t)s.KVH * hd, c0, s.T, hd);

  float gk[kKvPerWarp][DIMS] = {}, gv[kKvPerWarp][DIMS] = {};
  for (int h = kh * s.rep(); h < (kh + 1) * s.rep(); h++)
    for (int r0 = c0; r0 < s.T; r0 += kTile) {  // queries before c0 see none of these keys
      __syncthreads();
      load_tile(Qs, hd + 1, q, s.q_at(b, r0, h), (int64_t)s.H * hd, r0, s.T, hd);
      load_tile(dOs, hd + 1, dout, s.q_at(b, r0, h), (int64_t)s.H * hd, r0, s.T, hd);
      if (threadIdx.x < kTile) {
        const int t = r0 + threadIdx.x;
        Ls[threadIdx.x] = t < s.T ? lse[s.lse_at(b, h, t)] : 0.0f;
        Ds[threadIdx.x] = t < s.T ? D[s.lse_at(b, h, t)] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kKvPerWarp; r++) {
        const int j = warp * kKvPerWarp + r, key = c0 + j;
        if (key >= s.T) continue;  // the same for the whole warp
        const int t = r0 + lane;
        float p = 0.0f, ds = 0.0f;
        if (t < s.T && t >= key) {
          p = expf(dot(Qs + lane * (hd + 1), Ks + j * hd, hd) * s.scale - Ls[lane]);
          ds = attention_dscore(p, dOs + lane * (hd + 1), Vs + j * hd, Ds[lane], t, hd, s.scale);
        }
        for (int i = 0; i < kTile; i++) {
          const float pi = __shfl_sync(kFullWarp, p, i), dsi = __shfl_sync(kFullWarp, ds, i);
#pragma unroll
          for (int i2 = 0; i2 < DIMS; i2++) {
            const int d = lane + 32 * i2;
            if (d < hd) {
              gv[r][i2] += pi * dOs[i * (hd + 1) + d];
              gk[r][i2] += dsi * Qs[i * (hd + 1) + d];
            }
          }
        }
      }
    }
#pragma unroll
  for (int r = 0; r < kKvPerWarp; r++) {
    const int key = c0 + warp * kKvPerWarp + r;
    if (key >= s.T) continue;
    float *gK = dk + s.kv_at(b, key, kh), *gV = dv + s.kv_at(b, key, kh);
#pragma unroll
    for (int i2 = 0; i2 < DIMS; i2++) {
      const int d = lane + 32 * i2;
      if (d < hd) gK[d] += gk[r][i2], gV[d] += gv[r][i2];
    }
  }
}

// Grid (N, H), one warp per block: query row i (sequence seq[i] at position pos[i]) and head h
// over that sequence's cached keys 0..pos[i]. Lane j scores key c0 + j of each chunk of 32; the
// warp keeps one running max and sum (online softmax) and lane j owns output dims j + 32·i.
// Decode is memory-bound (each cached key and value is read once per query head); speed left for
// later: split-K over long caches (FlashDecoding) and reading a kv head once for its rep heads.
template <int DIMS>
__global__ void attention_decode_kernel(float* out, const float* q, const float* kcache, const float* vcache,
                                        const int32_t* seq, const int32_t* pos, int max_len, int H, int KVH,
                                        int hd, float scale) {
  const int i = blockIdx.x, h = blockIdx.y, kh = h / (H / KVH), lane = threadIdx.x;
  const int64_t ks = (int64_t)KVH * hd;
  const float* Q = q + ((int64_t)i * H + h) * hd;
  const float* K = kcache + (int64_t)seq[i] * max_len * ks + (int64_t)kh * hd;
  const float* V = vcache + (int64_t)seq[i] * max_len * ks + (int64_t)kh * hd;
  const int L = pos[i] + 1;
  float m = -INFINITY, l = 0.0f, acc[DIMS];
#pragma unroll
  for (int d = 0; d < DIMS; d++) acc[d] = 0.0f;
  for (int c0 = 0; c0 < L; c0 += 32) {
    const int t = c0 + lane;
    const float sc = t < L ? dot(Q, K + (int64_t)t * ks, hd) * scale : -INFINITY;
    const float m_new = fmaxf(m, warp_max(sc));
    const float p = t < L ? __expf(sc - m_new) : 0.0f;
    const float corr = __expf(m - m_new);  // 0 on the first chunk (m = -inf)
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int d = 0; d < DIMS; d++) acc[d] *= corr;
    const int n = min(32, L - c0);
    for (int j = 0; j < n; j++) {
      const float pj = __shfl_sync(kFullWarp, p, j);
      const float* vr = V + (int64_t)(c0 + j) * ks;
#pragma unroll
      for (int d = 0; d < DIMS; d++)
        if (lane + 32 * d < hd) acc[d] += pj * vr[lane + 32 * d];
    }
    m = m_new;
  }
  float* O = out + ((int64_t)i * H + h) * hd;
#pragma unroll
  for (int d = 0; d < DIMS; d++)
    if (lane + 32 * d < hd) O[lane + 32 * d] = acc[d] / l;
}

unsigned tiles(int T) { return (unsigned)((T + kTile - 1) / kTile); }

// Calls f(std::integral_constant<int, DIMS>) with the smallest DIMS ∈ {1, 2, 4} for which
// 32·DIMS ≥ hd: the one place the head dimension becomes a template argument.
template <class F>
void with_dims(int hd, F f) {
  static_assert(kAttentionMaxHeadDim == 4 * 32, "with_dims covers head dims up to 128");
  if (hd <= 32) f(std::integral_constant<int, 1>());
  else if (hd <= 64) f(std::integral_constant<int, 2>());
  else f(std::integral_constant<int, 4>());
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B,
                       int T, int H, int KVH, int hd, bool bf16, cudaStream_t stream) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  const AttnShape s{B, T, H, KVH, hd, 1.0f / sqrtf((float)hd)};
  if (bf16 && attention_mma_supported(hd, {out, q, k, v})) return attention_forward_mma(out, lse, q, k, v, s, stream);
  with_dims(hd, [&](auto dims) {
    launch_with_smem("attention_forward", attention_forward_kernel<dims()>, dim3(tiles(T), H, B), kWarps * 32,
                     (size_t)kTile * (3 * hd + 1) * sizeof(float), stream, out, lse, q, k, v, s);
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, int B, int T,
                        int H, int KVH, int hd, bool bf16, float* scratch, cudaStream_t stream) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  const AttnShape s{B, T, H, KVH, hd, 1.0f / sqrtf((float)hd)};
  float* D = scratch;
  const int64_t rows = (int64_t)B * T * H;
  attention_rowdot_kernel<<<(unsigned)((rows + kWarps - 1) / kWarps), kWarps * 32, 0, stream>>>(D, dout, out, s);
  MOHGE_CUDA_LAUNCHED("attention_backward (rowdot)");
  if (bf16 && attention_mma_supported(hd, {dq, dk, dv, dout, q, k, v}))
    return attention_backward_mma(dq, dk, dv, dout, lse, D, q, k, v, s, stream);
  with_dims(hd, [&](auto dims) {
    launch_with_smem("attention_backward (dq)", attention_backward_dq_kernel<dims()>, dim3(tiles(T), H, B),
                     kWarps * 32, (size_t)kTile * (4 * hd + 2) * sizeof(float), stream, dq, dout, lse, D, q, k, v, s);
    launch_with_smem("attention_backward (dk, dv)", attention_backward_dkv_kernel<dims()>,
                     dim3(tiles(T), KVH, B), kKvWarps * 32, (size_t)kTile * (4 * hd + 4) * sizeof(float), stream, dk, dv, dout,
                     lse, D, q, k, v, s);
  });
}

void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int32_t* seq,
                      const int32_t* pos, int N, int max_len, int H, int KVH, int hd, cudaStream_t stream) {
  if (N <= 0 || H <= 0) return;
  with_dims(hd, [&](auto dims) {
    attention_decode_kernel<dims()><<<dim3(N, H), 32, 0, stream>>>(out, q, kcache, vcache, seq, pos, max_len, H,
                                                                    KVH, hd, 1.0f / sqrtf((float)hd));
    MOHGE_CUDA_LAUNCHED("attention_decode");
  });
}

}  // namespace mohge::cuda
