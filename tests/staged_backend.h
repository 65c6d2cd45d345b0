// defines: StagedCpuBackend — the CPU backend behind a wall: every op runs on the CPU, but it says
// host_accessible() = false, so host code (the MoE router, the loss, checkpoints) must move data
// with upload/download exactly as it would on a GPU. A training step on it must equal one on the
// CPU backend bit for bit: a missing upload or download shows here, without a GPU. It counts the
// host <-> backend traffic (what a GPU would move and wait for), so tests can bound it.
#pragma once
#include "core/error.h"
#include "kernels/backend.h"

namespace mohge::test {

class StagedCpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu-staged"; }
  bool host_accessible() const override { return false; }
  void* alloc(size_t bytes) override { return cpu().alloc(bytes); }
  void free(void* p) noexcept override { cpu().free(p); }
  struct Transfers {
    int64_t uploads = 0, downloads = 0, upload_bytes = 0, download_bytes = 0;
  };
  Transfers transfers;  // since the test last reset it
  void upload(void* dst, const void* src, size_t bytes) override {
    transfers.uploads++, transfers.upload_bytes += (int64_t)bytes;
    cpu().upload(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    transfers.downloads++, transfers.download_bytes += (int64_t)bytes;
    cpu().download(dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override { cpu().copy(dst, src, bytes); }
  void fill(float* x, float value, int64_t n) override { cpu().fill(x, value, n); }
  void zero(void* p, size_t bytes) override { cpu().zero(p, bytes); }
  void synchronize() override { cpu().synchronize(); }
  // Inference weights go to the CPU backend; set_inference_weights call number freeze_fail_at
  // (0-based) throws instead, as an allocation failure would; frozen_now counts declared ranges.
  int freeze_fail_at = -1, freeze_calls = 0, frozen_now = 0;
  void set_inference_weights(const std::vector<WeightRange>& tensors, bool bf16) override {
    MOHGE_CHECK(freeze_calls++ != freeze_fail_at, "out of memory (a test's failure)");
    cpu().set_inference_weights(tensors, bf16);
    frozen_now += (int)tensors.size();
  }
  void clear_inference_weights(const float* w) override {
    cpu().clear_inference_weights(w);
    frozen_now--;
  }
  void matmul_forward(float* out, const float* inp, const float* w, int N, int I, int O, bool acc,
                      Precision p) override {
    cpu().matmul_forward(out, inp, w, N, I, O, acc, p);
  }
  void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int N, int I,
                       int O, Precision p) override {
    cpu().matmul_backward(dinp, dw, dout, inp, w, N, I, O, p);
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) override {
    cpu().embedding_forward(out, tokens, wte, N, C);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C) override {
    cpu().embedding_backward(dwte, dout, tokens, N, C);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) override {
    cpu().rmsnorm_forward(out, rstd, inp, w, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                        const float* rstd, int N, int C) override {
    cpu().rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
  }
  void rope_apply(float* x, int B, int T, int H, int hd, float theta, int pos0, bool inverse) override {
    cpu().rope_apply(x, B, T, H, hd, theta, pos0, inverse);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int T,
                         int H, int KVH, int hd, Precision p) override {
    cpu().attention_forward(out, lse, q, k, v, B, T, H, KVH, hd, p);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                          const float* q, const float* k, const float* v, int B, int T, int H, int KVH,
                          int hd, Precision p) override {
    cpu().attention_backward(dq, dk, dv, dout, out, lse, q, k, v, B, T, H, KVH, hd, p);
  }
  void attention_decode(float* out, const float* q, const float* kc, const float* vc, const int32_t* seq,
                        const int32_t* pos, int N, int max_len, int H, int KVH, int hd) override {
    cpu().attention_decode(out, q, kc, vc, seq, pos, N, max_len, H, KVH, hd);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override {
    cpu().swiglu_forward(out, gate, up, n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       int64_t n) override {
    cpu().swiglu_backward(dgate, dup, dout, gate, up, n);
  }
  void crossentropy_forward(float* losses, float* lse, double* loss_sum, const float* logits,
                            const int32_t* targets, int N, int V) override {
    cpu().crossentropy_forward(losses, lse, loss_sum, logits, targets, N, V);
  }
  void crossentropy_backward(float* dlogits, const float* logits, const float* lse, const int32_t* targets, int N,
                             int V, float dscale) override {
    cpu().crossentropy_backward(dlogits, logits, lse, targets, N, V, dscale);
  }
  void add_inplace(float* y, const float* x, int64_t n) override { cpu().add_inplace(y, x, n); }
  void gather_rows(float* out, const float* inp, const int32_t* src, int P, int d) override {
    cpu().gather_rows(out, inp, src, P, d);
  }
  void gather_rows_backward(float* dinp, const float* dout, const int32_t* offsets, const int32_t* pos, int N,
                            int d) override {
    cpu().gather_rows_backward(dinp, dout, offsets, pos, N, d);
  }
  void combine_rows(float* out, const float* y, const float* weight, const int32_t* offsets, const int32_t* pos,
                    int N, int d) override {
    cpu().combine_rows(out, y, weight, offsets, pos, N, d);
  }
  void combine_rows_backward(float* dy, float* dweight, const float* dout, const float* y, const float* weight,
                             const int32_t* offsets, const int32_t* pos, int N, int d) override {
    cpu().combine_rows_backward(dy, dweight, dout, y, weight, offsets, pos, N, d);
  }
  void router_forward(const RouterSpec& s, const RouterTensors& r, const float* logits, const float* group_logits,
                      int N) override {
    cpu().router_forward(s, r, logits, group_logits, N);
  }
  void router_assign(const RouterSpec& s, const RouteAssignments& a, double* stats, const RouterTensors& r,
                     const int32_t* slot, int N) override {
    cpu().router_assign(s, a, stats, r, slot, N);
  }
  void router_backward(const RouterSpec& s, float* dlogits, float* dgroup_logits, const float* dweight,
                       const RouterTensors& r, const RouteAssignments& a, int N) override {
    cpu().router_backward(s, dlogits, dgroup_logits, dweight, r, a, N);
  }
  void aux_loss_forward(const RouterSpec& s, const AuxLossSpec& l, double* values, const RouterTensors& r,
                        const RouteAssignments& a, const double* stats, int N) override {
    cpu().aux_loss_forward(s, l, values, r, a, stats, N);
  }
  void aux_loss_backward(const RouterSpec& s, const AuxLossSpec& l, float* dweight, float* dlogits,
                         float* dgroup_logits, const RouterTensors& r, const RouteAssignments& a,
                         const double* stats, int N, float grad_scale) override {
    cpu().aux_loss_backward(s, l, dweight, dlogits, dgroup_logits, r, a, stats, N, grad_scale);
  }
  void sum_squares(double* out, const float* x, int64_t n) override { cpu().sum_squares(out, x, n); }
  void adamw_step(float* w, const float* g, float* m, float* v, const std::vector<ParamSegment>& segs,
                  const AdamWStep& s) override {
    cpu().adamw_step(w, g, m, v, segs, s);
  }

 private:
  static Backend& cpu() { return cpu_backend(); }
};

}  // namespace mohge::test
