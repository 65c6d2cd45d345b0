// defines: the fused AdamW step of the CUDA backend — one launch over every parameter tensor of
// the flat buffers: each block finds its tensor by binary search over the segments' first
// blocks, then updates up to kAdamwBlockElems elements of it (m, v, w in one pass).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mohge::cuda {

namespace {

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, const AdamwSegment* segs,
                             int n_segs, AdamwHyper h) {
  const int64_t block = blockIdx.x;
  // the last segment whose block_start ≤ block
  int lo = 0, hi = n_segs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (segs[mid].block_start <= block) lo = mid;
    else hi = mid - 1;
  }
  const AdamwSegment s = segs[lo];
  const float wd = s.decay ? h.lr_wd : 0.0f;
  const int64_t begin = (block - s.block_start) * kAdamwBlockElems;
  const int64_t end = min(begin + kAdamwBlockElems, s.numel);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const int64_t at = s.offset + i;
    const float gi = g[at] * h.grad_mult;
    const float mi = m[at] = h.beta1 * m[at] + (1.0f - h.beta1) * gi;
    const float vi = v[at] = h.beta2 * v[at] + (1.0f - h.beta2) * gi * gi;
    // decoupled decay: w ← w − lr·wd·w, independent of the gradient statistics
    w[at] -= h.lr * (mi * h.c1) / (sqrtf(vi * h.c2) + h.eps) + wd * w[at];
  }
}

}  // namespace

void adamw_step(float* w, const float* g, float* m, float* v, const AdamwSegment* segs, int n_segs,
                int64_t total_blocks, const AdamwHyper& h, cudaStream_t stream) {
  if (n_segs <= 0 || total_blocks <= 0) return;
  adamw_kernel<<<(unsigned)total_blocks, kThreads, 0, stream>>>(w, g, m, v, segs, n_segs, h);
  MOHGE_CUDA_LAUNCHED("adamw_step");
}

}  // namespace mohge::cuda
