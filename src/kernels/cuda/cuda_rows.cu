// defines: the row-movement kernels of the CUDA backend — embedding lookup and its scatter-add,
// the MoE permutation (gather_rows) and unpermutation (combine_rows) with their backward.
// Every sum is taken in the CPU's order (tokens, or a token's assignments, in index order) by one
// thread, never with atomics: results are the same on every run.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mohge::cuda {

namespace {

// out[n, c] = table[index[n], c] for rows n < rows: element-wise copy of whole rows.
__global__ void copy_rows_kernel(float* out, const float* table, const int32_t* index, int64_t rows, int d) {
  const int64_t total = rows * d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / d;
    out[e] = table[(int64_t)index[n] * d + e % d];
  }
}

// dwte[tokens[n], c] += dout[n, c], for every n in order. Thread (c, slice) owns the entries of
// column c whose row (token id) is ≡ slice mod kEmbedSlices, so no two threads write one entry
// and each entry sums its tokens in index order, like the CPU.
constexpr int kEmbedSlices = 32;
__global__ void embedding_backward_kernel(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, slice = blockIdx.y;
  if (c >= C) return;
  for (int n = 0; n < N; n++) {
    const int tok = tokens[n];
    if (tok % kEmbedSlices == slice) dwte[(int64_t)tok * C + c] += dout[(int64_t)n * C + c];
  }
}

// dinp[t, i] += Σ_{j ∈ [offsets[t], offsets[t+1])} dout[pos[j], i]
__global__ void gather_rows_backward_kernel(float* dinp, const float* dout, const int32_t* offsets,
                                            const int32_t* pos, int N, int d) {
  const int64_t total = (int64_t)N * d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int t = (int)(e / d), i = (int)(e % d);
    float acc = dinp[e];
    for (int j = offsets[t]; j < offsets[t + 1]; j++) acc += dout[(int64_t)pos[j] * d + i];
    dinp[e] = acc;
  }
}

// out[t, i] = Σ_j weight[j] · y[pos[j], i] (written)
__global__ void combine_rows_kernel(float* out, const float* y, const float* weight, const int32_t* offsets,
                                    const int32_t* pos, int N, int d) {
  const int64_t total = (int64_t)N * d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int t = (int)(e / d), i = (int)(e % d);
    float acc = 0.0f;
    for (int j = offsets[t]; j < offsets[t + 1]; j++) acc += weight[j] * y[(int64_t)pos[j] * d + i];
    out[e] = acc;
  }
}

// One block per token t: for each of its assignments j, dy[pos[j], :] = weight[j] · dout[t, :]
// and dweight[j] = <dout[t, :], y[pos[j], :]> (a block sum in a fixed order).
__global__ void combine_rows_backward_kernel(float* dy, float* dweight, const float* dout, const float* y,
                                             const float* weight, const int32_t* offsets,
                                             const int32_t* pos, int d) {
  const int t = blockIdx.x;
  const float* g = dout + (int64_t)t * d;
  for (int j = offsets[t]; j < offsets[t + 1]; j++) {
    const float w = weight[j];
    const float* yj = y + (int64_t)pos[j] * d;
    float* dyj = dy + (int64_t)pos[j] * d;
    float dot = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
      dyj[i] = w * g[i];
      dot += g[i] * yj[i];
    }
    dot = block_sum(dot);
    if (threadIdx.x == 0) dweight[j] = dot;
  }
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C, cudaStream_t stream) {
  if ((int64_t)N * C <= 0) return;
  copy_rows_kernel<<<grid_for((int64_t)N * C), kThreads, 0, stream>>>(out, wte, tokens, N, C);
  MOHGE_CUDA_LAUNCHED("embedding_forward");
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C, cudaStream_t stream) {
  if ((int64_t)N * C <= 0) return;
  const dim3 grid((C + 127) / 128, kEmbedSlices);
  embedding_backward_kernel<<<grid, 128, 0, stream>>>(dwte, dout, tokens, N, C);
  MOHGE_CUDA_LAUNCHED("embedding_backward");
}

void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d, cudaStream_t stream) {
  if ((int64_t)P * d <= 0) return;
  copy_rows_kernel<<<grid_for((int64_t)P * d), kThreads, 0, stream>>>(out, inp, src, P, d);
  MOHGE_CUDA_LAUNCHED("gather_rows");
}

void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets, const int32_t* pos,
                          int N, int d, cudaStream_t stream) {
  if ((int64_t)N * d <= 0) return;
  gather_rows_backward_kernel<<<grid_for((int64_t)N * d), kThreads, 0, stream>>>(dinp, dout, offsets, pos, N, d);
  MOHGE_CUDA_LAUNCHED("gather_rows_backward");
}

void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets,
                  const int32_t* pos, int N, int d, cudaStream_t stream) {
  if ((int64_t)N * d <= 0) return;
  combine_rows_kernel<<<grid_for((int64_t)N * d), kThreads, 0, stream>>>(out, y, weight, offsets, pos, N, d);
  MOHGE_CUDA_LAUNCHED("combine_rows");
}

void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y,
                           const float* weight, const int32_t* offsets, const int32_t* pos, int N,
                           int d, cudaStream_t stream) {
  if (N <= 0) return;
  combine_rows_backward_kernel<<<N, kThreads, 0, stream>>>(dy, dweight, dout, y, weight, offsets, pos, d);
  MOHGE_CUDA_LAUNCHED("combine_rows_backward");
}

}  // namespace mohge::cuda
