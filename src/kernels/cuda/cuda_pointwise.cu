// defines: the elementwise kernels of the CUDA backend — fill, add, SwiGLU, RoPE, bf16 rounding —
// each a grid-stride loop with one element (or one rotated pair) per thread iteration.
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mohge::cuda {

namespace {

__global__ void fill_kernel(float* x, float value, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = value;
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] += x[i];
}

// silu(g) = g·σ(g); expf(−g) overflows to inf for g < −88.7, giving σ = 0 and silu = −0: the limit.
__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// d silu/dg = σ(g)·(1 + g·(1 − σ(g)))
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = gate[i], s = 1.0f / (1.0f + expf(-g));
    dup[i] += dout[i] * (g * s);
    dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
  }
}

// One thread per rotated pair (v[i], v[i + hd/2]) of one row (b, t, h) of x[B,T,H,hd]. The angle
// (pos0 + t)·θ^(−2i/hd) is formed in double, as on the CPU: a float angle loses ~pos·2⁻²⁴ rad.
__global__ void rope_kernel(float* x, int64_t pairs, int T, int H, int hd, double theta, int pos0,
                            float sign) {
  const int half = hd / 2;
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < pairs; p += (int64_t)gridDim.x * blockDim.x) {
    const int i = (int)(p % half);
    const int64_t row = p / half;  // (b·T + t)·H + h
    const int t = (int)((row / H) % T);
    const double a = (double)(pos0 + t) * pow(theta, -2.0 * i / hd);
    double s, c;
    sincos(a, &s, &c);
    const float cs = (float)c, sn = sign * (float)s;
    float* v = x + row * hd;
    const float x1 = v[i], x2 = v[i + half];
    v[i] = x1 * cs - x2 * sn;
    v[i + half] = x2 * cs + x1 * sn;
  }
}

__global__ void round_to_bf16_kernel(__nv_bfloat16* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

}  // namespace

void fill(float* x, float value, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, value, n);
  MOHGE_CUDA_LAUNCHED("fill");
}

void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, x, n);
  MOHGE_CUDA_LAUNCHED("add_inplace");
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  swiglu_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, gate, up, n);
  MOHGE_CUDA_LAUNCHED("swiglu_forward");
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  swiglu_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(dgate, dup, dout, gate, up, n);
  MOHGE_CUDA_LAUNCHED("swiglu_backward");
}

void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse,
                cudaStream_t stream) {
  const int64_t pairs = (int64_t)B * T * H * (hd / 2);
  if (pairs <= 0) return;
  rope_kernel<<<grid_for(pairs), kThreads, 0, stream>>>(x, pairs, T, H, hd, (double)theta, pos0,
                                                        inverse ? -1.0f : 1.0f);
  MOHGE_CUDA_LAUNCHED("rope_apply");
}

void round_to_bf16(uint16_t* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  round_to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(reinterpret_cast<__nv_bfloat16*>(dst), src, n);
  MOHGE_CUDA_LAUNCHED("round_to_bf16");
}

}  // namespace mohge::cuda
