// defines: AttnShape, the shape of a causal GQA attention call shared by the fp32 kernels
// (cuda_attention.cu) and the bf16 tensor-core kernels (cuda_attention_mma.cu), and the entries of
// the latter, which cuda_attention.cu's attention_forward / attention_backward dispatch to.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/cuda_check.h"

namespace mohge::cuda {

// q[B,T,H,hd], k/v[B,T,KVH,hd], lse and D [B,H,T]
struct AttnShape {
  int B, T, H, KVH, hd;
  float scale;  // 1/√hd
  __host__ __device__ int rep() const { return H / KVH; }
  __device__ int64_t q_at(int b, int t, int h) const { return (((int64_t)b * T + t) * H + h) * hd; }
  __device__ int64_t kv_at(int b, int t, int kh) const { return (((int64_t)b * T + t) * KVH + kh) * hd; }
  __device__ int64_t lse_at(int b, int h, int t) const { return ((int64_t)b * H + h) * T + t; }
};

// Launches kernel with `bytes` of dynamic shared memory, raising the kernel's limit when it needs
// more than the default 48 KiB (H100/H200 allow up to 227 KiB per block).
template <class Kernel, class... Args>
void launch_with_smem(const char* name, Kernel kernel, dim3 grid, int threads, size_t bytes, cudaStream_t stream,
                      Args... args) {
  if (bytes > 48 * 1024)
    MOHGE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  kernel<<<grid, threads, bytes, stream>>>(args...);
  MOHGE_CUDA_LAUNCHED(name);
}

// Whether the tensor-core kernels take this call: hd a multiple of 16 up to 128 whose kernels'
// shared memory fits this device's per-block limit (hd 96 and up need over 99 KiB: not on
// sm_86/89), and every tensor 16-byte aligned (they read and write float4).
bool attention_mma_supported(int hd, std::initializer_list<const void*> tensors);
// Forward and backward with q, k, v, P, dout and dS rounded to bfloat16 and every product summed in
// fp32 on the tensor cores (FlashAttention-2's precision). D: rowsum(dout ⊙ out), [B,H,T].
void attention_forward_mma(float* out, float* lse, const float* q, const float* k, const float* v,
                           const AttnShape& s, cudaStream_t stream);
void attention_backward_mma(float* dq, float* dk, float* dv, const float* dout, const float* lse, const float* D,
                            const float* q, const float* k, const float* v, const AttnShape& s,
                            cudaStream_t stream);

}  // namespace mohge::cuda
