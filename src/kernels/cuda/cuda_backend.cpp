// defines: CudaBackend — the Backend (kernels/backend.h) on one NVIDIA GPU: device memory, one
// stream on which every op is enqueued in order, matrix products through cuBLAS (cuda_matmul.h),
// every other op a kernel of cuda_kernels.h — and cuda_backend(), the registry's entry.
// fp32 weights, gradients, activations and optimizer state; matmul inputs rounded to bf16 when
// the precision is bf16 (fp32 sums). The CPU backend is the truth: tests/test_ops.cpp runs every
// op of both against the float64 reference.
// One host thread at a time: the cuBLAS handle and the scratch buffers are shared by all ops
// (MoeExperts' OpenMP loop over experts must run serially on this backend once MoE runs here).
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_matmul.h"

namespace mohge {

namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    MOHGE_CUDA_CHECK(cudaSetDevice(0));
    MOHGE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    matmul_ = std::make_unique<CublasMatmul>(stream_);
  }
  const char* name() const override { return "cuda"; }
  bool host_accessible() const override { return false; }

  // ---- memory ----
  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);  // 256-byte aligned
    if (e != cudaSuccess) {
      cudaGetLastError();  // an allocation failure is not sticky: clear it
      fail("out of memory: cannot allocate {:.1f} MiB on the cuda backend (cudaMalloc: {})", bytes / 1048576.0,
           cudaGetErrorString(e));
    }
    return p;
  }
  void free(void* p) noexcept override {
    if (p) cudaFree(p);  // waits for the device; at exit the runtime may already be gone
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    // from pageable memory the source is staged before the call returns: the caller may reuse it
    if (bytes) MOHGE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes) MOHGE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) MOHGE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void fill(float* x, float value, int64_t n) override { cuda::fill(x, value, n, stream_); }
  void zero(void* p, size_t bytes) override {
    if (bytes) MOHGE_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
  }
  void synchronize() override { MOHGE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // ---- dense ops ----
  void matmul_forward(float* out, const float* inp, const float* w, int N, int I, int O, bool accumulate,
                      Precision p) override {
    matmul_->forward(out, inp, w, N, I, O, accumulate, p);
  }
  void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int N,
                       int I, int O, Precision p) override {
    matmul_->backward(dinp, dw, dout, inp, w, N, I, O, p);
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) override {
    cuda::embedding_forward(out, tokens, wte, N, C, stream_);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C) override {
    cuda::embedding_backward(dwte, dout, tokens, N, C, stream_);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                       float eps) override {
    cuda::rmsnorm_forward(out, rstd, inp, w, N, C, eps, stream_);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                        const float* rstd, int N, int C) override {
    cuda::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C, stream_);
  }
  void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse) override {
    cuda::rope_apply(x, B, T, H, hd, theta, pos0, inverse, stream_);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B,
                         int T, int H, int KVH, int hd, Precision p) override {
    check_attention(H, KVH, hd);
    cuda::attention_forward(out, lse, q, k, v, B, T, H, KVH, hd, p == Precision::bf16, stream_);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                          const float* lse, const float* q, const float* k, const float* v, int B, int T,
                          int H, int KVH, int hd, Precision p) override {
    check_attention(H, KVH, hd);
    float* D = static_cast<float*>(scratch((size_t)B * H * T * sizeof(float)));
    cuda::attention_backward(dq, dk, dv, dout, out, lse, q, k, v, B, T, H, KVH, hd, p == Precision::bf16, D,
                             stream_);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override {
    cuda::swiglu_forward(out, gate, up, n, stream_);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       int64_t n) override {
    cuda::swiglu_backward(dgate, dup, dout, gate, up, n, stream_);
  }
  void crossentropy_forward(float* losses, float* lse, double* loss_sum, const float* logits,
                            const int32_t* targets, int N, int V) override {
    float* rows = losses ? nullptr : static_cast<float*>(scratch((size_t)N * sizeof(float)));
    cuda::crossentropy_forward(losses, lse, loss_sum, logits, targets, N, V, rows, stream_);
  }
  void crossentropy_backward(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                             int N, int V, float dscale) override {
    cuda::crossentropy_backward(dlogits, logits, lse, targets, N, V, dscale, stream_);
  }
  void add_inplace(float* y, const float* x, int64_t n) override { cuda::add_inplace(y, x, n, stream_); }

  // ---- mixture-of-experts row movement ----
  void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d) override {
    cuda::gather_rows(out, inp, src, P, d, stream_);
  }
  void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets, const int32_t* pos, int N,
                            int d) override {
    cuda::gather_rows_backward(dinp, dout, offsets, pos, N, d, stream_);
  }
  void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets,
                    const int32_t* pos, int N, int d) override {
    cuda::combine_rows(out, y, weight, offsets, pos, N, d, stream_);
  }
  void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y, const float* weight,
                             const int32_t* offsets, const int32_t* pos, int N, int d) override {
    cuda::combine_rows_backward(dy, dweight, dout, y, weight, offsets, pos, N, d, stream_);
  }

  // ---- optimizer ----
  void router_forward(const RouterSpec& s, const RouterTensors& r, const float* logits, const float* group_logits,
                      int N) override {
    double* score = static_cast<double*>(scratch((size_t)N * s.E * sizeof(double)));
    cuda::router_forward(s, r, logits, group_logits, N, score, stream_);
  }
  void router_assign(const RouterSpec& s, const RouteAssignments& a, double* stats, const RouterTensors& r,
                     const int32_t* slot, int N) override {
    int32_t* work = static_cast<int32_t*>(scratch(3 * (size_t)s.E * sizeof(int32_t)));
    cuda::router_assign(s, a, stats, r, slot, N, work, stream_);
  }
  void router_backward(const RouterSpec& s, float* dlogits, float* dgroup_logits, const float* dweight,
                       const RouterTensors& r, const RouteAssignments& a, int N) override {
    cuda::router_backward(s, dlogits, dgroup_logits, dweight, r, a, N, stream_);
  }
  void aux_loss_forward(const RouterSpec& s, const AuxLossSpec& l, double* values, const RouterTensors& r,
                        const RouteAssignments& a, const double* stats, int N) override {
    double* sums = static_cast<double*>(scratch(cuda::aux_loss_scratch_doubles(s) * sizeof(double)));
    cuda::aux_loss_forward(s, l, values, r, a, stats, N, sums, stream_);
  }
  void aux_loss_backward(const RouterSpec& s, const AuxLossSpec& l, float* dweight, float* dlogits,
                         float* dgroup_logits, const RouterTensors& r, const RouteAssignments& a,
                         const double* stats, int N, float grad_scale) override {
    cuda::aux_loss_backward(s, l, dweight, dlogits, dgroup_logits, r, a, stats, N, grad_scale, stream_);
  }

  void sum_squares(double* out, const float* x, int64_t n) override {
    double* part = static_cast<double*>(scratch(cuda::sum_squares_scratch_doubles() * sizeof(double)));
    cuda::sum_squares(out, x, n, part, stream_);
  }
  void adamw_step(float* w, const float* g, float* m, float* v, const std::vector<ParamSegment>& segs,
                  const AdamWStep& s) override {
    upload_segments(segs);
    const cuda::AdamwHyper h{(float)s.lr,
                             (float)s.beta1,
                             (float)s.beta2,
                             (float)s.eps,
                             (float)(s.lr * s.weight_decay),
                             1.0f / (1.0f - (float)std::pow(s.beta1, (double)s.t)),
                             1.0f / (1.0f - (float)std::pow(s.beta2, (double)s.t)),
                             s.grad_mult};
    cuda::adamw_step(w, g, m, v, dev_segs_, (int)host_segs_.size(), total_blocks_, h, stream_);
  }

 private:
  void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int32_t* seq,
                        const int32_t* pos, int N, int max_len, int H, int KVH, int hd) override {
    check_attention(H, KVH, hd);
    cuda::attention_decode(out, q, kcache, vcache, seq, pos, N, max_len, H, KVH, hd, stream_);
  }
  static void check_attention(int H, int KVH, int hd) {
    MOHGE_CHECK(KVH > 0 && H % KVH == 0, "attention: {} heads are not a multiple of {} kv heads", H, KVH);
    MOHGE_CHECK(hd > 0 && hd <= cuda::kAttentionMaxHeadDim,
                "attention on the cuda backend supports head dims up to {}, got {}", cuda::kAttentionMaxHeadDim, hd);
  }

  // Device scratch of at least `bytes`, for the op being enqueued (grow-only; ops run in stream
  // order, so one op's scratch is free again when the next one runs).
  void* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      free(scratch_);  // cudaFree waits for the device: no queued op still uses it
      scratch_ = nullptr, scratch_bytes_ = 0;
      scratch_ = alloc(bytes + bytes / 4);
      scratch_bytes_ = bytes + bytes / 4;
    }
    return scratch_;
  }

  // The optimizer's segment table on the device; re-uploaded only when the segments change (a
  // model's tensors are the same every step).
  void upload_segments(const std::vector<ParamSegment>& segs) {
    std::vector<cuda::AdamwSegment> t;
    int64_t blocks = 0;
    for (const ParamSegment& p : segs) {
      if (p.numel <= 0) continue;
      t.push_back({(int64_t)p.offset, p.numel, blocks, p.decay ? 1 : 0});
      blocks += (p.numel + cuda::kAdamwBlockElems - 1) / cuda::kAdamwBlockElems;
    }
    const bool same = t.size() == host_segs_.size() &&
                      std::equal(t.begin(), t.end(), host_segs_.begin(), [](const auto& a, const auto& b) {
                        return a.offset == b.offset && a.numel == b.numel && a.decay == b.decay;
                      });
    if (same) return;
    free(dev_segs_);
    dev_segs_ = nullptr;
    dev_segs_ = static_cast<cuda::AdamwSegment*>(alloc(t.size() * sizeof(cuda::AdamwSegment)));
    host_segs_ = std::move(t);
    total_blocks_ = blocks;
    upload(dev_segs_, host_segs_.data(), host_segs_.size() * sizeof(cuda::AdamwSegment));
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CublasMatmul> matmul_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::vector<cuda::AdamwSegment> host_segs_;
  cuda::AdamwSegment* dev_segs_ = nullptr;
  int64_t total_blocks_ = 0;
};

}  // namespace

extern "C" Backend* mohge_cuda_backend(std::string* why_not) {
  std::string why;
  if (cuda_device_count(&why) == 0) {
    if (why_not) *why_not = "no CUDA device: " + why;
    return nullptr;
  }
  // Created on first use and never destroyed: Buffers held by static objects may free memory at
  // exit, after any destructor of ours would have run (the driver reclaims everything at exit).
  static std::mutex mu;
  static CudaBackend* be = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (!be) {
    try {
      be = new CudaBackend();
    } catch (const Error& e) {
      if (why_not) *why_not = std::string("the CUDA device cannot be used: ") + e.what();
      return nullptr;
    }
  }
  return be;
}

}  // namespace mohge
