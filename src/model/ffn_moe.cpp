#include "model/ffn_moe.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "moe/aux_loss.h"

namespace mohge {

MoeFfn::MoeFfn(const ModelConfig& c, ParamTable& params, const std::string& prefix)
    : params_(params), m_(c.moe), prec_(c.matmul_precision), d_(c.hidden_size), E_(c.moe.num_experts),
      Ng_(c.moe.router == RouterKind::two_level ? c.moe.num_expert_groups : 0) {
  const float std = (float)c.init_std, out_std = std / std::sqrt(2.0f * c.num_layers);
  gate_id_ = params.add(prefix + ".gate.weight", {E_, d_}, ParamInit::normal, std, true);
  if (Ng_ > 0)
    group_gate_id_ = params.add(prefix + ".group_gate.weight", {Ng_, d_}, ParamInit::normal, std, true);
  for (int e = 0; e < E_; e++)
    experts_.push_back(swiglu_register(params, prefix + ".experts." + std::to_string(e), d_,
                                       m_.expert_widths[e], std, out_std));
  if (m_.shared_expert_width > 0)
    shared_ = swiglu_register(params, prefix + ".shared_experts", d_, m_.shared_expert_width, std, out_std);
  step_stats_.reset(m_);
}

bool MoeFfn::experts_in_parallel() const { return E_ >= 2 * omp_get_max_threads(); }

void MoeFfn::forward(float* out, const float* inp, int N, int64_t step) {
  const int d = d_, E = E_;
  Backend& be = params_.backend();
  step_ = step;
  // 1. router logits in fp32 whatever the matmul precision (SPEC: router math in fp32)
  logits_.ensure(be, (size_t)N * E);
  be.matmul_forward(logits_.data(), inp, params_.data(gate_id_), N, d, E);
  if (Ng_ > 0) {
    group_logits_.ensure(be, (size_t)N * Ng_);
    be.matmul_forward(group_logits_.data(), inp, params_.data(group_gate_id_), N, d, Ng_);
  }
  router_forward(m_, logits_.data(), Ng_ > 0 ? group_logits_.data() : nullptr, N, routing_, cache_);
  const int A = routing_.num_assignments();

  // 2. permutation: counting sort of assignments by expert, stable in token order
  expert_offsets_.assign(E + 1, 0);
  for (int j = 0; j < A; j++) expert_offsets_[routing_.expert[j] + 1]++;
  for (int e = 0; e < E; e++) expert_offsets_[e + 1] += expert_offsets_[e];
  pos_.resize(A), row_token_.resize(A);
  {
    std::vector<int> fill(expert_offsets_.begin(), expert_offsets_.end() - 1);
    for (int t = 0; t < N; t++)
      for (int j = routing_.offsets[t]; j < routing_.offsets[t + 1]; j++) {
        int p = fill[routing_.expert[j]]++;
        pos_[j] = p;
        row_token_[p] = t;
      }
  }
  act_offsets_.assign(E + 1, 0);
  for (int e = 0; e < E; e++)
    act_offsets_[e + 1] = act_offsets_[e] +
                          (size_t)(expert_offsets_[e + 1] - expert_offsets_[e]) * m_.expert_widths[e];
  xe_.ensure(be, (size_t)A * d), ye_.ensure(be, (size_t)A * d);
  g_.ensure(be, act_offsets_[E]), u_.ensure(be, act_offsets_[E]), a_.ensure(be, act_offsets_[E]);
  // the routing (CSR by token) and the permutation, on the backend
  dev_offsets_.ensure(be, N + 1), dev_pos_.ensure(be, A), dev_row_token_.ensure(be, A);
  dev_weight_.ensure(be, A);
  dev_offsets_.upload(routing_.offsets.data(), N + 1);
  dev_pos_.upload(pos_.data(), A), dev_row_token_.upload(row_token_.data(), A);
  dev_weight_.upload(routing_.weight.data(), A);
  be.gather_rows(xe_.data(), inp, dev_row_token_.data(), A, d);

  // 3. each expert: one GEMM chain on all of its rows. With several experts per thread, experts
  // run concurrently, each GEMM single-threaded: small GEMMs scale badly across threads, and
  // their barriers stall when the cores are shared. Otherwise each GEMM uses all threads.
  // Largest work (rows × width) first, so the last expert to start is a small one.
  expert_order_.resize(E);
  for (int e = 0; e < E; e++) expert_order_[e] = e;
  auto work = [&](int e) { return (int64_t)(expert_offsets_[e + 1] - expert_offsets_[e]) * m_.expert_widths[e]; };
  std::stable_sort(expert_order_.begin(), expert_order_.end(), [&](int a, int b) { return work(a) > work(b); });
#pragma omp parallel for schedule(dynamic, 1) if (experts_in_parallel())
  for (int k = 0; k < E; k++) {
    const int e = expert_order_[k];
    int r0 = expert_offsets_[e], n = expert_offsets_[e + 1] - r0;
    if (n == 0) continue;
    size_t ao = act_offsets_[e];
    swiglu_ffn_forward(be, ye_.data() + (size_t)r0 * d, g_.data() + ao, u_.data() + ao, a_.data() + ao,
                       xe_.data() + (size_t)r0 * d, experts_[e].weights(params_), n, d,
                       m_.expert_widths[e], false, prec_);
  }

  // 4. combine: out[t] = Σ_j w_j · ye[pos_j] (+ shared expert)
  be.combine_rows(out, ye_.data(), dev_weight_.data(), dev_offsets_.data(), dev_pos_.data(), N, d);
  if (m_.shared_expert_width > 0) {
    size_t n = (size_t)N * m_.shared_expert_width;
    sg_.ensure(be, n), su_.ensure(be, n), sa_.ensure(be, n);
    swiglu_ffn_forward(be, out, sg_.data(), su_.data(), sa_.data(), inp, shared_.weights(params_), N,
                       d, m_.shared_expert_width, true, prec_);
  }

  // 5. auxiliary losses (values now; their gradients in backward). With global_batch_stats the
  // counts are those of the step so far: every micro-batch routed since begin_step, up to this
  // one (later micro-batches are not routed yet when this one's backward runs).
  step_stats_.add(routing_, cache_);
  AuxLossValues v = aux_loss_values(m_, cache_, routing_, step, global_stats());
  aux_total_ = v.total;
  aux_terms_ = v.terms();
}

void MoeFfn::backward(float* dinp, const float* dout, const float* inp, int N, float aux_scale) {
  const int d = d_, E = E_, A = routing_.num_assignments();
  Backend& be = params_.backend();
  // 1. through the combine: dye[pos_j] = w_j·dout[t], dw_j = <dout[t], ye[pos_j]>
  dye_.ensure(be, (size_t)A * d), dweight_.ensure(be, A);
  dxe_.zeros(be, (size_t)A * d);
  be.combine_rows_backward(dye_.data(), dweight_.data(), dout, ye_.data(), dev_weight_.data(),
                           dev_offsets_.data(), dev_pos_.data(), N, d);
  // 2. experts
  // every expert gets its own scratch (3·n_e·W_e), as experts may run concurrently
  const size_t need = 3 * std::max(act_offsets_[E], (size_t)N * m_.shared_expert_width);
  scratch_.ensure(be, need);
#pragma omp parallel for schedule(dynamic, 1) if (experts_in_parallel())
  for (int k = 0; k < E; k++) {
    const int e = expert_order_[k];  // largest first, as in forward
    int r0 = expert_offsets_[e], n = expert_offsets_[e + 1] - r0;
    if (n == 0) continue;
    size_t ao = act_offsets_[e];
    swiglu_ffn_backward(be, dxe_.data() + (size_t)r0 * d, experts_[e].grads(params_), dye_.data() + (size_t)r0 * d,
                        xe_.data() + (size_t)r0 * d, g_.data() + ao, u_.data() + ao, a_.data() + ao,
                        experts_[e].weights(params_), n, d, m_.expert_widths[e], scratch_.data() + 3 * ao,
                        prec_);
  }
  be.gather_rows_backward(dinp, dxe_.data(), dev_offsets_.data(), dev_pos_.data(), N, d);
  if (m_.shared_expert_width > 0)
    swiglu_ffn_backward(be, dinp, shared_.grads(params_), dout, inp, sg_.data(), su_.data(),
                        sa_.data(), shared_.weights(params_), N, d, m_.shared_expert_width,
                        scratch_.data(), prec_);

  // 3. router: gate-weight gradients and aux-loss gradients -> logits -> router weights, input.
  // The router and its losses run on the host over the backend's memory (host-accessible on CPU).
  dlogits_.zeros(be, (size_t)N * E);
  dgroup_logits_.zeros(be, (size_t)N * Ng_);
  float* dgl = Ng_ > 0 ? dgroup_logits_.data() : nullptr;
  aux_loss_backward(m_, cache_, routing_, step_, aux_scale, dweight_.data(), dlogits_.data(), dgl, global_stats());
  router_backward(m_, cache_, routing_, dweight_.data(), dlogits_.data(), dgl);
  be.matmul_backward(dinp, params_.grad(gate_id_), dlogits_.data(), inp, params_.data(gate_id_), N, d, E);
  if (Ng_ > 0)
    be.matmul_backward(dinp, params_.grad(group_gate_id_), dgl, inp, params_.data(group_gate_id_), N, d, Ng_);
}

void MoeFfn::aux_terms(std::map<std::string, double>& sum) const {
  for (auto& [k, v] : aux_terms_) sum[k] += v;
}

double MoeFfn::active_params_per_token() const {
  // router (+ group router) and shared expert serve every token; each routed expert adds 3·d·W_e
  double p = (double)d_ * (E_ + Ng_) + 3.0 * d_ * m_.shared_expert_width;
  if (routing_.T == 0) return p;
  double routed = 0.0;
  for (int e = 0; e < E_; e++) routed += (double)routing_.tokens_per_expert[e] * m_.expert_widths[e];
  return p + 3.0 * d_ * routed / routing_.T;
}

}  // namespace mohge
