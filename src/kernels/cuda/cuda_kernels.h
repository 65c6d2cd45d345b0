// defines: the launchers of the CUDA backend's kernels (kernels/cuda/*.cu), one per Backend op
// that is not a cuBLAS call. Each enqueues its kernels on `stream` and returns; the contracts
// (shapes, accumulate or write) are those of Backend (kernels/backend.h) and the CPU kernels
// (kernels/ops.h), which the op table (tests/test_ops.cpp) checks both against.
// Pointers are device memory. `scratch` arguments are device memory of the stated size that the
// launcher may overwrite; the backend owns it (CudaBackend::scratch).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/router.h"

namespace mohge::cuda {

// ---- pointwise (cuda_pointwise.cu) ----
void fill(float* x, float value, int64_t n, cudaStream_t stream);
void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n, cudaStream_t stream);
void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse,
                cudaStream_t stream);
// dst[i] = bfloat16(src[i]), round to nearest even (the inputs of a bf16 matmul); dst holds bf16 bits
void round_to_bf16(uint16_t* dst, const float* src, int64_t n, cudaStream_t stream);

// ---- row movement (cuda_rows.cu) ----
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C,
                       cudaStream_t stream);
void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C,
                        cudaStream_t stream);
void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d, cudaStream_t stream);
void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets, const int32_t* pos,
                          int N, int d, cudaStream_t stream);
void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets,
                  const int32_t* pos, int N, int d, cudaStream_t stream);
void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y,
                           const float* weight, const int32_t* offsets, const int32_t* pos, int N,
                           int d, cudaStream_t stream);

// ---- row reductions (cuda_reduce.cu) ----
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                     float eps, cudaStream_t stream);
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C, cudaStream_t stream);
// scratch: N floats (the per-row losses when `losses` is null)
void crossentropy_forward(float* losses, float* lse, double* loss_sum, const float* logits,
                          const int32_t* targets, int N, int V, float* scratch, cudaStream_t stream);
void crossentropy_backward(float* dlogits, const float* logits, const float* lse,
                           const int32_t* targets, int N, int V, float dscale, cudaStream_t stream);
// scratch: sum_squares_scratch_doubles() doubles
size_t sum_squares_scratch_doubles();
void sum_squares(double* out, const float* x, int64_t n, double* scratch, cudaStream_t stream);

// ---- MoE router and auxiliary losses (cuda_router.cu) ----
// scratch: N·E doubles
void router_forward(const RouterSpec& s, const RouterTensors& r, const float* logits, const float* group_logits, int N,
                    double* scratch, cudaStream_t stream);
// scratch: 3·E int32
void router_assign(const RouterSpec& s, const RouteAssignments& a, double* stats, const RouterTensors& r,
                   const int32_t* slot, int N, int32_t* scratch, cudaStream_t stream);
void router_backward(const RouterSpec& s, float* dlogits, float* dgroup_logits, const float* dweight,
                     const RouterTensors& r, const RouteAssignments& a, int N, cudaStream_t stream);
// scratch: aux_loss_scratch_doubles(s) doubles
size_t aux_loss_scratch_doubles(const RouterSpec& s);
void aux_loss_forward(const RouterSpec& s, const AuxLossSpec& l, double* values, const RouterTensors& r,
                      const RouteAssignments& a, const double* stats, int N, double* scratch, cudaStream_t stream);
void aux_loss_backward(const RouterSpec& s, const AuxLossSpec& l, float* dweight, float* dlogits, float* dgroup_logits,
                       const RouterTensors& r, const RouteAssignments& a, const double* stats, int N, float grad_scale,
                       cudaStream_t stream);

// ---- optimizer (cuda_adamw.cu) ----
// One tensor of the flat parameter buffer, as the device sees it; block_start: the first block of
// the launch that works on it (blocks are handed out tensor by tensor, kAdamwBlockElems each).
struct AdamwSegment {
  int64_t offset, numel, block_start;
  int decay;
};
constexpr int kAdamwBlockElems = 4096;
struct AdamwHyper {
  float lr, beta1, beta2, eps, lr_wd, c1, c2, grad_mult;  // c1, c2: the bias corrections 1/(1 − βᵗ)
};
// segs: n_segs segments in device memory, ordered by block_start; total_blocks: the sum of
// ceil(numel / kAdamwBlockElems) over them.
void adamw_step(float* w, const float* g, float* m, float* v, const AdamwSegment* segs, int n_segs,
                int64_t total_blocks, const AdamwHyper& h, cudaStream_t stream);

// ---- attention (cuda_attention.cu) ----
constexpr int kAttentionMaxHeadDim = 128;  // hd ≤ this; H a multiple of KVH (the backend checks)
// bf16: q, k, v, P, dout and dS rounded to bfloat16 on the tensor cores (cuda_attention_mma.cu)
// where hd is a multiple of 16; else, and for fp32, fp32 on the CUDA cores.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int B, int T, int H, int KVH, int hd, bool bf16, cudaStream_t stream);
// scratch: B·H·T floats (D = rowsum(dout ⊙ out))
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, int B,
                        int T, int H, int KVH, int hd, bool bf16, float* scratch, cudaStream_t stream);
// q[N,H,hd] over kcache/vcache[S,max_len,KVH,hd] -> out[N,H,hd]; seq, pos: device int32[N]
void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int32_t* seq,
                      const int32_t* pos, int N, int max_len, int H, int KVH, int hd, cudaStream_t stream);

}  // namespace mohge::cuda
