// defines: the row-reduction kernels of the CUDA backend — RMSNorm, softmax cross-entropy over the
// vocabulary, the sum of squares of the gradient norm. One block per row; sums in a fixed order
// (block_sum trees, columns summed down in row order), so results are the same on every run.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mohge::cuda {

namespace {

// One block per row n: out = x · r · w with r = 1/√(mean(x²) + eps); rstd[n] = r.
__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* w, int C, float eps) {
  const int64_t n = blockIdx.x;
  const float* x = inp + n * C;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  ss = block_sum(ss);
  const float r = 1.0f / sqrtf(ss / C + eps);
  float* y = out + n * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] * r * w[c];
  if (threadIdx.x == 0) rstd[n] = r;
}

// One block per row n: dx += r·(g⊙w) − x·r³·mean(g⊙w⊙x).
__global__ void rmsnorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp, const float* w,
                                             const float* rstd, int C) {
  const int64_t n = blockIdx.x;
  const float *x = inp + n * C, *g = dout + n * C;
  const float r = rstd[n];
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += g[c] * w[c] * x[c];
  dot = block_sum(dot);
  const float k = r * r * r * dot / C;
  float* dx = dinp + n * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] += r * g[c] * w[c] - k * x[c];
}

// dw[c] += Σ_n g[n,c]·x[n,c]·r[n]. Block (32 columns × kRowLanes): lane (cx, ry) sums rows
// ry, ry + kRowLanes, … of column c in order; the kRowLanes partial sums are then added in ry order.
constexpr int kRowLanes = 32;
__global__ void rmsnorm_backward_dw_kernel(float* dw, const float* dout, const float* inp, const float* rstd,
                                           int N, int C) {
  __shared__ float part[kRowLanes][33];
  const int cx = threadIdx.x, ry = threadIdx.y, c = blockIdx.x * 32 + cx;
  float s = 0.0f;
  if (c < C)
    for (int n = ry; n < N; n += kRowLanes) s += dout[(int64_t)n * C + c] * inp[(int64_t)n * C + c] * rstd[n];
  part[ry][cx] = s;
  __syncthreads();
  if (ry == 0 && c < C) {
    float total = 0.0f;
    for (int i = 0; i < kRowLanes; i++) total += part[i][cx];
    dw[c] += total;
  }
}

// One block per row n: lse[n] = max + log Σ exp(x − max); row_loss[n] = lse[n] − x[target].
__global__ void crossentropy_forward_kernel(float* row_loss, float* lse, const float* logits,
                                            const int32_t* targets, int V) {
  const int64_t n = blockIdx.x;
  const float* x = logits + n * V;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, x[j]);
  mx = block_max(mx);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) sum += expf(x[j] - mx);
  sum = block_sum(sum);
  if (threadIdx.x == 0) {
    const float l = mx + logf(sum);
    lse[n] = l;
    row_loss[n] = l - x[targets[n]];
  }
}

// One block: *loss_sum += Σ_n row_loss[n], in double, in a fixed order.
__global__ void sum_rows_kernel(double* loss_sum, const float* row_loss, int N) {
  double s = 0.0;
  for (int n = threadIdx.x; n < N; n += blockDim.x) s += row_loss[n];
  s = block_sum(s);
  if (threadIdx.x == 0) *loss_sum += s;
}

// d[n, j] = exp(x[n, j] − lse[n])·dscale − [j = target]·dscale. Element-wise, so d may alias x.
__global__ void crossentropy_backward_kernel(float* dlogits, const float* logits, const float* lse,
                                             const int32_t* targets, int64_t total, int V, float dscale) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = e / V;
    const int j = (int)(e % V);
    float d = expf(logits[e] - lse[n]) * dscale;
    if (j == targets[n]) d -= dscale;
    dlogits[e] = d;
  }
}

// Σ x² in double over a fixed partition: kSumBlocks blocks of kThreads threads, thread i summing
// elements i, i + stride, …; then the block sums in block order. No dependence on the device.
constexpr int kSumBlocks = 264;  // 2 per SM of an H200
__global__ void sum_squares_partial_kernel(double* partial, const float* x, int64_t n) {
  const int64_t stride = (int64_t)kSumBlocks * kThreads;
  double s = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)kThreads + threadIdx.x; i < n; i += stride) s += (double)x[i] * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_squares_final_kernel(double* out, const double* partial) {
  double s = 0.0;
  for (int i = threadIdx.x; i < kSumBlocks; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps,
                     cudaStream_t stream) {
  if (N <= 0) return;
  rmsnorm_forward_kernel<<<N, kThreads, 0, stream>>>(out, rstd, inp, w, C, eps);
  MOHGE_CUDA_LAUNCHED("rmsnorm_forward");
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  rmsnorm_backward_dinp_kernel<<<N, kThreads, 0, stream>>>(dinp, dout, inp, w, rstd, C);
  MOHGE_CUDA_LAUNCHED("rmsnorm_backward (dinp)");
  rmsnorm_backward_dw_kernel<<<(C + 31) / 32, dim3(32, kRowLanes), 0, stream>>>(dw, dout, inp, rstd, N, C);
  MOHGE_CUDA_LAUNCHED("rmsnorm_backward (dw)");
}

void crossentropy_forward(float* losses, float* lse, double* loss_sum, const float* logits,
                          const int32_t* targets, int N, int V, float* scratch, cudaStream_t stream) {
  if (N <= 0) return;
  float* row_loss = losses ? losses : scratch;
  crossentropy_forward_kernel<<<N, kThreads, 0, stream>>>(row_loss, lse, logits, targets, V);
  MOHGE_CUDA_LAUNCHED("crossentropy_forward");
  sum_rows_kernel<<<1, 1024, 0, stream>>>(loss_sum, row_loss, N);
  MOHGE_CUDA_LAUNCHED("crossentropy_forward (loss sum)");
}

void crossentropy_backward(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                           int N, int V, float dscale, cudaStream_t stream) {
  const int64_t total = (int64_t)N * V;
  if (total <= 0) return;
  crossentropy_backward_kernel<<<grid_for(total), kThreads, 0, stream>>>(dlogits, logits, lse, targets, total, V, dscale);
  MOHGE_CUDA_LAUNCHED("crossentropy_backward");
}

size_t sum_squares_scratch_doubles() { return kSumBlocks; }

void sum_squares(double* out, const float* x, int64_t n, double* scratch, cudaStream_t stream) {
  sum_squares_partial_kernel<<<kSumBlocks, kThreads, 0, stream>>>(scratch, x, n);
  MOHGE_CUDA_LAUNCHED("sum_squares (partial)");
  sum_squares_final_kernel<<<1, kThreads, 0, stream>>>(out, scratch);
  MOHGE_CUDA_LAUNCHED("sum_squares (final)");
}

}  // namespace mohge::cuda
