// defines: MoeExperts (see moe_experts.h)
#include "model/moe_experts.h"

#include <omp.h>

#include <algorithm>

#include "kernels/parallel.h"

namespace mohge {

// Whether experts run concurrently, one per thread, each GEMM single-threaded: with several experts
// per thread on the CPU (small GEMMs scale badly across threads, and their barriers stall when the
// cores are shared; otherwise each GEMM uses all threads). Never on a device backend: it takes
// calls from one host thread, in its stream's order.
static bool concurrent_experts(const Backend& be, int L) {
  return be.host_accessible() && L >= 2 * omp_get_max_threads();
}

MoeExperts::MoeExperts(ParamTable& params, const std::string& prefix, std::vector<int> ids,
                       const std::vector<int>& widths, int d, float std, float out_std, Precision p)
    : params_(params), d_(d), prec_(p), ids_(std::move(ids)), act_offsets_(1, 0) {
  for (int e : ids_) {
    widths_.push_back(widths[e]);
    weights_.push_back(swiglu_register(params, prefix + ".experts." + std::to_string(e), d, widths[e], std, out_std));
  }
}

void MoeExperts::forward(float* y, const float* x, const std::vector<int>& rows) {
  const int L = (int)ids_.size();
  const size_t d = d_;
  row_offsets_.assign(L + 1, 0);
  act_offsets_.assign(L + 1, 0);
  for (int i = 0; i < L; i++) {
    row_offsets_[i + 1] = row_offsets_[i] + rows[i];
    act_offsets_[i + 1] = act_offsets_[i] + (size_t)rows[i] * widths_[i];
  }
  Backend& be = params_.backend();
  g_.ensure(be, act_offsets_[L]), u_.ensure(be, act_offsets_[L]), a_.ensure(be, act_offsets_[L]);
  // Largest work (rows × width) first, so the last expert to start is a small one.
  order_.resize(L);
  for (int i = 0; i < L; i++) order_[i] = i;
  auto work = [&](int i) { return (int64_t)rows[i] * widths_[i]; };
  std::stable_sort(order_.begin(), order_.end(), [&](int a, int b) { return work(a) > work(b); });
  // With several experts per thread (concurrent_experts), each GEMM single-threaded.
  parallel_tasks(L, concurrent_experts(be, L), [&](int64_t k) {
    const int i = order_[k];
    const int r0 = row_offsets_[i], n = row_offsets_[i + 1] - r0;
    if (n == 0) return;
    const size_t ao = act_offsets_[i];
    swiglu_ffn_forward(be, y + r0 * d, g_.data() + ao, u_.data() + ao, a_.data() + ao, x + r0 * d,
                       weights_[i].weights(params_), n, d_, widths_[i], false, prec_);
  });
}

void MoeExperts::backward(float* dx, const float* dy, const float* x, float* scratch) {
  const int L = (int)ids_.size();
  const size_t d = d_;
  Backend& be = params_.backend();
  be.zero(dx, row_offsets_[L] * d * sizeof(float));
  // every expert gets its own scratch (3·n_i·W_i), as experts may run concurrently
  parallel_tasks(L, concurrent_experts(be, L), [&](int64_t k) {
    const int i = order_[k];  // largest first, as in forward
    const int r0 = row_offsets_[i], n = row_offsets_[i + 1] - r0;
    if (n == 0) return;
    const size_t ao = act_offsets_[i];
    swiglu_ffn_backward(be, dx + r0 * d, weights_[i].grads(params_), dy + r0 * d, x + r0 * d, g_.data() + ao,
                        u_.data() + ao, a_.data() + ao, weights_[i].weights(params_), n, d_, widths_[i],
                        scratch + 3 * ao, prec_);
  });
}

}  // namespace mohge
