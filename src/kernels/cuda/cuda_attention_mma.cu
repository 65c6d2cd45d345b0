// defines: causal GQA flash attention on the tensor cores — the p = bf16 path of the backend's
// attention_forward / attention_backward (FlashAttention-2: Dao 2023, algorithms 1 and 2). q, k, v
// and dout are rounded to bfloat16 as their tiles are staged in shared memory; the products
// Q·Kᵀ, P·V, dO·Vᵀ, dS·K, Pᵀ·dO and dSᵀ·Q run as 16×16×16 bf16 WMMA tiles summed in fp32; the
// softmax, its running max and sum, and the row terms stay fp32. No atomics: dq by query tiles,
// dk and dv by key tiles, each summed in a fixed order (deterministic, like the fp32 kernels).
// A block has 4 warps and 64 rows (queries, or keys for dk/dv); each warp owns 16 of them. Scores
// go through the warp's shared memory (WMMA fragments have no defined element layout), where two
// lanes share each row: lane 2r + half handles row r, columns half·32 … half·32 + 31.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_attention.cuh"
#include "kernels/cuda/cuda_common.cuh"

namespace mohge::cuda {

namespace {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

constexpr int kRows = 64;        // queries (forward, dq) or keys (dk, dv) per block
constexpr int kCols = 64;        // keys (forward, dq) or queries (dk, dv) per inner tile
constexpr int kWarps = 4;        // 16 rows each
constexpr int kLS = kCols + 4;   // fp32 row stride of a warp's score tiles
constexpr int kLP = kCols + 8;   // bf16 row stride of a warp's P / dS tiles (16 bytes of padding)

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;  // a row-major tile, transposed
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// bf16 row stride of a staged [64][HD] tile: 16 bytes of padding spread rows over the banks, and
// every 16×16 fragment starts 32-byte aligned as WMMA requires.
template <int HD>
constexpr int ld() {
  return HD + 8;
}

// rows t0 … t0+63 of x (fp32, row stride row_step) rounded to bf16 into dst[64][HD + 8]; rows at
// t ≥ T are zero, so nothing uninitialised meets a masked (zero) probability.
template <int HD>
__device__ void stage(bf16* dst, const float* x, int64_t row0, int64_t row_step, int t0, int T) {
  constexpr int Q = HD / 4;  // float4 per row
  for (int e = threadIdx.x; e < kRows * Q; e += blockDim.x) {
    const int i = e / Q, d = (e % Q) * 4;
    const float4 f = t0 + i < T ? *reinterpret_cast<const float4*>(x + row0 + (int64_t)i * row_step + d)
                                : make_float4(0.f, 0.f, 0.f, 0.f);
    __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(dst + i * ld<HD>() + d);
    o[0] = __floats2bfloat162_rn(f.x, f.y);
    o[1] = __floats2bfloat162_rn(f.z, f.w);
  }
}

// C[16][64] (fp32, row stride kLS) = A[16][HD] · B[64][HD]ᵀ: a warp's scores against a tile.
template <int HD>
__device__ void scores(float* C, const bf16* A, const bf16* B) {
#pragma unroll
  for (int n = 0; n < kCols / 16; n++) {
    FragC c;
    wmma::fill_fragment(c, 0.0f);
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      FragA a;
      FragBt b;
      wmma::load_matrix_sync(a, A + kk * 16, ld<HD>());
      wmma::load_matrix_sync(b, B + n * 16 * ld<HD>() + kk * 16, ld<HD>());
      wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + n * 16, c, kLS, wmma::mem_row_major);
  }
}

// acc[n] (16×16 column block n of a [16][HD] result) += P[16][64] · V[64][HD]
template <int HD>
__device__ void accumulate_pv(FragC (&acc)[HD / 16], const bf16* P, const bf16* V) {
#pragma unroll
  for (int kk = 0; kk < kCols / 16; kk++) {
    FragA a;
    wmma::load_matrix_sync(a, P + kk * 16, kLP);
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
      FragB b;
      wmma::load_matrix_sync(b, V + kk * 16 * ld<HD>() + n * 16, ld<HD>());
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

// Adds scale · acc ([16][HD] in fragments) to the 16 rows of g at row0 + r·row_step for rows
// below `valid`, through the warp's fp32 staging area stage[16][HD + 4].
template <int HD>
__device__ void add_rows(float* g, int64_t row0, int64_t row_step, int valid, float scale, FragC (&acc)[HD / 16],
                         float* stage) {
#pragma unroll
  for (int n = 0; n < HD / 16; n++) wmma::store_matrix_sync(stage + n * 16, acc[n], HD + 4, wmma::mem_row_major);
  __syncwarp();
  const int lane = threadIdx.x % 32;
  for (int e = lane; e < 16 * (HD / 4); e += 32) {
    const int r = e / (HD / 4), d = (e % (HD / 4)) * 4;
    if (r >= valid) continue;
    float4* o = reinterpret_cast<float4*>(g + row0 + r * row_step + d);
    const float* x = stage + r * (HD + 4) + d;
    float4 y = *o;
    y.x += scale * x[0], y.y += scale * x[1], y.z += scale * x[2], y.w += scale * x[3];
    *o = y;
  }
  __syncwarp();
}

// Shared memory of the forward kernel, in bytes: Q, K, V tiles, then per warp scores [16][kLS],
// the output accumulator [16][HD + 4] (fp32) and P [16][kLP] (bf16).
template <int HD>
constexpr size_t forward_smem() {
  return 3 * kRows * ld<HD>() * sizeof(bf16) + kWarps * 16 * (kLS + HD + 4) * sizeof(float) +
         kWarps * 16 * kLP * sizeof(bf16);
}

// Grid (query tiles of 64, H, B). For each key tile up to the block's last query, every warp
// scores its 16 queries, updates each row's running max m and sum l (online softmax), rescales
// its output accumulator by exp(m_old − m_new) and adds P·V — the accumulator lives in shared
// memory so that each row can be rescaled, and goes in and out of the tensor cores as a fragment.
template <int HD>
__global__ void __launch_bounds__(kWarps * 32) attention_forward_mma_kernel(float* out, float* lse, const float* q,
                                                                          const float* k, const float* v,
                                                                          AttnShape s) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int b = blockIdx.z, h = blockIdx.y, kh = h / s.rep(), r0 = blockIdx.x * kRows;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, row = lane / 2, half = lane % 2;
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + kRows * ld<HD>();
  bf16* Vs = Ks + kRows * ld<HD>();
  float* Sw = reinterpret_cast<float*>(Vs + kRows * ld<HD>()) + warp * 16 * (kLS + HD + 4);
  float* Ow = Sw + 16 * kLS;
  bf16* Pw = reinterpret_cast<bf16*>(reinterpret_cast<float*>(Vs + kRows * ld<HD>()) + kWarps * 16 * (kLS + HD + 4)) +
             warp * 16 * kLP;
  stage<HD>(Qs, q, s.q_at(b, r0, h), (int64_t)s.H * HD, r0, s.T);
  for (int e = lane; e < 16 * HD; e += 32) Ow[(e / HD) * (HD + 4) + e % HD] = 0.0f;

  const int t = r0 + warp * 16 + row;  // this lane's query
  float m = -INFINITY, l = 0.0f;
  const int keys_end = min(s.T, r0 + kRows);  // the block's last query sees keys < keys_end
  for (int c0 = 0; c0 < keys_end; c0 += kCols) {
    __syncthreads();  // the previous tiles are consumed (and Q is staged)
    stage<HD>(Ks, k, s.kv_at(b, c0, kh), (int64_t)s.KVH * HD, c0, s.T);
    stage<HD>(Vs, v, s.kv_at(b, c0, kh), (int64_t)s.KVH * HD, c0, s.T);
    __syncthreads();
    if (r0 + warp * 16 >= s.T) continue;  // a warp past the end: nothing to compute (warp-uniform)
    scores<HD>(Sw, Qs + warp * 16 * ld<HD>(), Ks);
    __syncwarp();
    // Each row sees key c0 ≤ r0 ≤ t, so m_new is finite; exp(−inf) = 0 masks keys after t.
    float sc[32], mx = -INFINITY;
    const float* srow = Sw + row * kLS + half * 32;
#pragma unroll
    for (int j = 0; j < 32; j++) {
      sc[j] = c0 + half * 32 + j <= t ? srow[j] * s.scale : -INFINITY;
      mx = fmaxf(mx, sc[j]);
    }
    const float m_new = fmaxf(m, fmaxf(mx, __shfl_xor_sync(kFullWarp, mx, 1)));
    const float corr = expf(m - m_new);  // 0 on the first tile (m = −inf)
    float sum = 0.0f;
    __nv_bfloat162* prow = reinterpret_cast<__nv_bfloat162*>(Pw + row * kLP + half * 32);
#pragma unroll
    for (int j = 0; j < 32; j += 2) {
      const float p0 = expf(sc[j] - m_new), p1 = expf(sc[j + 1] - m_new);
      sum += p0 + p1;
      prow[j / 2] = __floats2bfloat162_rn(p0, p1);
    }
    l = l * corr + sum + __shfl_xor_sync(kFullWarp, sum, 1);
    m = m_new;
    float* orow = Ow + row * (HD + 4) + half * (HD / 2);
#pragma unroll
    for (int d = 0; d < HD / 2; d++) orow[d] *= corr;
    __syncwarp();
    FragC acc[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; n++) wmma::load_matrix_sync(acc[n], Ow + n * 16, HD + 4, wmma::mem_row_major);
    accumulate_pv<HD>(acc, Pw, Vs);
#pragma unroll
    for (int n = 0; n < HD / 16; n++) wmma::store_matrix_sync(Ow + n * 16, acc[n], HD + 4, wmma::mem_row_major);
    __syncwarp();
  }
  if (t >= s.T) return;
  const float inv = 1.0f / l;
  const float* orow = Ow + row * (HD + 4) + half * (HD / 2);
  float* o = out + s.q_at(b, t, h) + half * (HD / 2);
#pragma unroll
  for (int d = 0; d < HD / 2; d += 4)
    *reinterpret_cast<float4*>(o + d) = make_float4(orow[d] * inv, orow[d + 1] * inv, orow[d + 2] * inv, orow[d + 3] * inv);
  if (half == 0) lse[s.lse_at(b, h, t)] = m + logf(l);
}

// Shared memory of the dq kernel: Q, dO, K, V tiles, then per warp S and dP [16][kLS] (fp32; the
// result's staging area at the end) and dS [16][kLP] (bf16).
template <int HD>
constexpr size_t dq_smem() {
  return 4 * kRows * ld<HD>() * sizeof(bf16) + kWarps * 2 * 16 * kLS * sizeof(float) +
         kWarps * 16 * kLP * sizeof(bf16);
}

// dS = P ⊙ (dP − D) with P = exp(S·scale − lse); query 0 sees key 0 alone, so its softmax is
// constant and dS is exactly 0 (as on the CPU and in the fp32 kernels). Returns dS for one entry.
__device__ inline float dscore(float score, float dp, float lse, float D, float scale, bool visible, int t) {
  return visible && t != 0 ? expf(score * scale - lse) * (dp - D) : 0.0f;
}

// Grid (query tiles of 64, H, B): dq[t] += scale · Σ_keys dS[t, key] · k[key], key tiles in order.
template <int HD>
__global__ void __launch_bounds__(kWarps * 32) attention_dq_mma_kernel(float* dq, const float* dout, const float* lse,
                                                                     const float* D, const float* q, const float* k,
                                                                     const float* v, AttnShape s) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int b = blockIdx.z, h = blockIdx.y, kh = h / s.rep(), r0 = blockIdx.x * kRows;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, row = lane / 2, half = lane % 2;
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* dOs = Qs + kRows * ld<HD>();
  bf16* Ks = dOs + kRows * ld<HD>();
  bf16* Vs = Ks + kRows * ld<HD>();
  float* Sw = reinterpret_cast<float*>(Vs + kRows * ld<HD>()) + warp * 2 * 16 * kLS;
  float* dPw = Sw + 16 * kLS;
  bf16* dSw = reinterpret_cast<bf16*>(reinterpret_cast<float*>(Vs + kRows * ld<HD>()) + kWarps * 2 * 16 * kLS) +
              warp * 16 * kLP;
  stage<HD>(Qs, q, s.q_at(b, r0, h), (int64_t)s.H * HD, r0, s.T);
  stage<HD>(dOs, dout, s.q_at(b, r0, h), (int64_t)s.H * HD, r0, s.T);
  const int t = r0 + warp * 16 + row;
  const float L = t < s.T ? lse[s.lse_at(b, h, t)] : 0.0f, Dt = t < s.T ? D[s.lse_at(b, h, t)] : 0.0f;

  FragC acc[HD / 16];
#pragma unroll
  for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(acc[n], 0.0f);
  const int keys_end = min(s.T, r0 + kRows);
  for (int c0 = 0; c0 < keys_end; c0 += kCols) {
    __syncthreads();
    stage<HD>(Ks, k, s.kv_at(b, c0, kh), (int64_t)s.KVH * HD, c0, s.T);
    stage<HD>(Vs, v, s.kv_at(b, c0, kh), (int64_t)s.KVH * HD, c0, s.T);
    __syncthreads();
    if (r0 + warp * 16 >= s.T) continue;
    scores<HD>(Sw, Qs + warp * 16 * ld<HD>(), Ks);
    scores<HD>(dPw, dOs + warp * 16 * ld<HD>(), Vs);  // dP = dO · Vᵀ
    __syncwarp();
    __nv_bfloat162* dsrow = reinterpret_cast<__nv_bfloat162*>(dSw + row * kLP + half * 32);
#pragma unroll
    for (int j = 0; j < 32; j += 2) {
      const int key = c0 + half * 32 + j, at = row * kLS + half * 32 + j;
      const float d0 = dscore(Sw[at], dPw[at], L, Dt, s.scale, t < s.T && key <= t, t);
      const float d1 = dscore(Sw[at + 1], dPw[at + 1], L, Dt, s.scale, t < s.T && key + 1 <= t, t);
      dsrow[j / 2] = __floats2bfloat162_rn(d0, d1);
    }
    __syncwarp();
    accumulate_pv<HD>(acc, dSw, Ks);  // dQ += dS · K
    __syncwarp();
  }
  if (r0 + warp * 16 >= s.T) return;
  add_rows<HD>(dq, s.q_at(b, r0 + warp * 16, h), (int64_t)s.H * HD, s.T - (r0 + warp * 16), s.scale, acc, Sw);
}

// Shared memory of the dk/dv kernel: K, V (the block's keys), Q, dO tiles, lse and D of the query
// tile, then per warp Sᵀ and dPᵀ [16][kLS] (fp32; the results' staging area at the end) and Pᵀ and
// dSᵀ [16][kLP] (bf16).
template <int HD>
constexpr size_t dkv_smem() {
  return 4 * kRows * ld<HD>() * sizeof(bf16) + 2 * kCols * sizeof(float) + kWarps * 2 * 16 * kLS * sizeof(float) +
         kWarps * 2 * 16 * kLP * sizeof(bf16);
}

// Grid (key tiles of 64, KVH, B): for the block's keys, over every query head of the kv head and
// every query tile from the block's first key on, dv[key] += Σ_t P[t,key]·dout[t] and
// dk[key] += scale · Σ_t dS[t,key]·q[t] (the transposed products: Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ).
template <int HD>
__global__ void __launch_bounds__(kWarps * 32) attention_dkv_mma_kernel(float* dk, float* dv, const float* dout,
                                                                      const float* lse, const float* D,
                                                                      const float* q, const float* k,
                                                                      const float* v, AttnShape s) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int b = blockIdx.z, kh = blockIdx.y, c0 = blockIdx.x * kRows;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, row = lane / 2, half = lane % 2;
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + kRows * ld<HD>();
  bf16* Qs = Vs + kRows * ld<HD>();
  bf16* dOs = Qs + kRows * ld<HD>();
  float* Ls = reinterpret_cast<float*>(dOs + kRows * ld<HD>());
  float* Ds = Ls + kCols;
  float* Sw = Ds + kCols + warp * 2 * 16 * kLS;
  float* dPw = Sw + 16 * kLS;
  bf16* Pw = reinterpret_cast<bf16*>(Ds + kCols + kWarps * 2 * 16 * kLS) + warp * 2 * 16 * kLP;
  bf16* dSw = Pw + 16 * kLP;
  stage<HD>(Ks, k, s.kv_at(b, c0, kh), (int64_t)s.KVH * HD, c0, s.T);
  stage<HD>(Vs, v, s.kv_at(b, c0, kh), (int64_t)s.KVH * HD, c0, s.T);
  const int key = c0 + warp * 16 + row;  // this lane's key
  const bool warp_live = c0 + warp * 16 < s.T;

  FragC gk[HD / 16], gv[HD / 16];
#pragma unroll
  for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(gk[n], 0.0f), wmma::fill_fragment(gv[n], 0.0f);
  for (int h = kh * s.rep(); h < (kh + 1) * s.rep(); h++)
    for (int r0 = c0; r0 < s.T; r0 += kCols) {  // queries before c0 see none of these keys
      __syncthreads();
      stage<HD>(Qs, q, s.q_at(b, r0, h), (int64_t)s.H * HD, r0, s.T);
      stage<HD>(dOs, dout, s.q_at(b, r0, h), (int64_t)s.H * HD, r0, s.T);
      if (threadIdx.x < kCols) {
        const int t = r0 + threadIdx.x;
        Ls[threadIdx.x] = t < s.T ? lse[s.lse_at(b, h, t)] : 0.0f;
        Ds[threadIdx.x] = t < s.T ? D[s.lse_at(b, h, t)] : 0.0f;
      }
      __syncthreads();
      if (!warp_live) continue;
      scores<HD>(Sw, Ks + warp * 16 * ld<HD>(), Qs);   // Sᵀ = K · Qᵀ
      scores<HD>(dPw, Vs + warp * 16 * ld<HD>(), dOs);  // dPᵀ = V · dOᵀ
      __syncwarp();
      __nv_bfloat162* prow = reinterpret_cast<__nv_bfloat162*>(Pw + row * kLP + half * 32);
      __nv_bfloat162* dsrow = reinterpret_cast<__nv_bfloat162*>(dSw + row * kLP + half * 32);
#pragma unroll
      for (int j = 0; j < 32; j += 2) {
        float p[2], ds[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
          const int i = half * 32 + j + u, t = r0 + i, at = row * kLS + i;
          const bool visible = t < s.T && t >= key && key < s.T;
          p[u] = visible ? expf(Sw[at] * s.scale - Ls[i]) : 0.0f;
          ds[u] = dscore(Sw[at], dPw[at], Ls[i], Ds[i], s.scale, visible, t);
        }
        prow[j / 2] = __floats2bfloat162_rn(p[0], p[1]);
        dsrow[j / 2] = __floats2bfloat162_rn(ds[0], ds[1]);
      }
      __syncwarp();
      accumulate_pv<HD>(gv, Pw, dOs);  // dV += Pᵀ · dO
      accumulate_pv<HD>(gk, dSw, Qs);  // dK += dSᵀ · Q
      __syncwarp();
    }
  if (!warp_live) return;
  const int valid = s.T - (c0 + warp * 16);
  add_rows<HD>(dk, s.kv_at(b, c0 + warp * 16, kh), (int64_t)s.KVH * HD, valid, s.scale, gk, Sw);
  add_rows<HD>(dv, s.kv_at(b, c0 + warp * 16, kh), (int64_t)s.KVH * HD, valid, 1.0f, gv, Sw);
}

unsigned tiles(int T) { return (unsigned)((T + kRows - 1) / kRows); }

// Calls f(std::integral_constant<int, HD>) for hd ∈ {16, 32, 48, …, 128} and returns true; false
// for any other hd (the one list of the head dims these kernels take).
template <class F>
bool with_head_dim(int hd, F f) {
  switch (hd) {
    case 16: return f(std::integral_constant<int, 16>()), true;
    case 32: return f(std::integral_constant<int, 32>()), true;
    case 48: return f(std::integral_constant<int, 48>()), true;
    case 64: return f(std::integral_constant<int, 64>()), true;
    case 80: return f(std::integral_constant<int, 80>()), true;
    case 96: return f(std::integral_constant<int, 96>()), true;
    case 112: return f(std::integral_constant<int, 112>()), true;
    case 128: return f(std::integral_constant<int, 128>()), true;
  }
  return false;
}

// The current device's opt-in shared memory per block, in bytes (read once).
size_t device_smem_limit() {
  static const size_t limit = [] {
    int dev = 0, bytes = 0;
    MOHGE_CUDA_CHECK(cudaGetDevice(&dev));
    MOHGE_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return (size_t)bytes;
  }();
  return limit;
}

}  // namespace

bool attention_mma_supported(int hd, std::initializer_list<const void*> tensors) {
  for (const void* p : tensors)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  size_t smem = SIZE_MAX;
  if (!with_head_dim(hd, [&](auto d) { smem = std::max({forward_smem<d()>(), dq_smem<d()>(), dkv_smem<d()>()}); }))
    return false;
  return smem <= device_smem_limit();
}

void attention_forward_mma(float* out, float* lse, const float* q, const float* k, const float* v,
                           const AttnShape& s, cudaStream_t stream) {
  with_head_dim(s.hd, [&](auto hd) {
    launch_with_smem("attention_forward (tensor cores)", attention_forward_mma_kernel<hd()>,
                     dim3(tiles(s.T), s.H, s.B), kWarps * 32, forward_smem<hd()>(), stream, out, lse, q, k, v, s);
  });
}

void attention_backward_mma(float* dq, float* dk, float* dv, const float* dout, const float* lse, const float* D,
                            const float* q, const float* k, const float* v, const AttnShape& s,
                            cudaStream_t stream) {
  with_head_dim(s.hd, [&](auto hd) {
    launch_with_smem("attention_backward dq (tensor cores)", attention_dq_mma_kernel<hd()>,
                     dim3(tiles(s.T), s.H, s.B), kWarps * 32, dq_smem<hd()>(), stream, dq, dout, lse, D, q, k, v, s);
    launch_with_smem("attention_backward dk, dv (tensor cores)", attention_dkv_mma_kernel<hd()>,
                     dim3(tiles(s.T), s.KVH, s.B), kWarps * 32, dkv_smem<hd()>(), stream, dk, dv, dout, lse, D, q,
                     k, v, s);
  });
}

}  // namespace mohge::cuda
