#include "model/ffn_moe.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "moe/aux_loss.h"

namespace mohge {

static float out_std(const ModelConfig& c) { return (float)c.init_std / std::sqrt(2.0f * c.num_layers); }

// Registration order (router, group router, experts, shared expert) is the parameter layout.
MoeFfn::MoeFfn(const ModelConfig& c, ParamTable& params, const std::string& prefix, Collective* ep_group,
               Collective* batch_group)
    : params_(params), m_(c.moe), prec_(c.matmul_precision), d_(c.hidden_size), E_(c.moe.num_experts),
      Ng_(c.moe.router == RouterKind::two_level ? c.moe.num_expert_groups : 0),
      gate_id_(params.add(prefix + ".gate.weight", {E_, d_}, ParamInit::normal, (float)c.init_std, true)),
      group_gate_id_(Ng_ > 0 ? params.add(prefix + ".group_gate.weight", {Ng_, d_}, ParamInit::normal,
                                          (float)c.init_std, true)
                             : -1),
      slots_(expert_slots(c.moe, c.expert_parallel)),
      dispatcher_(make_dispatcher(params.backend(), slots_.ranks, c.expert_parallel.rank, slots_.per_rank, d_,
                                  ep_group)),
      experts_(params, prefix, slots_.experts_of(c.expert_parallel.rank), c.moe.expert_widths, d_,
               (float)c.init_std, out_std(c), c.matmul_precision) {
  if (m_.shared_expert_width > 0)
    shared_ = swiglu_register(params, prefix + ".shared_experts", d_, m_.shared_expert_width, (float)c.init_std,
                              out_std(c));
  step_stats_.reset(m_);
  batch_group_ = batch_group;
}

// Router logits in fp32 whatever the matmul precision (SPEC: router math in fp32), then routing.
// The router and its losses run on the host: on a device backend the logits [N,E] come down here
// (the layer's one wait for the device: the token counts depend on them) and the routing goes up
// in plan_send.
void MoeFfn::route(const float* inp, int N) {
  Backend& be = params_.backend();
  logits_.ensure(be, (size_t)N * E_);
  be.matmul_forward(logits_.data(), inp, params_.data(gate_id_), N, d_, E_);
  if (Ng_ > 0) {
    group_logits_.ensure(be, (size_t)N * Ng_);
    be.matmul_forward(group_logits_.data(), inp, params_.data(group_gate_id_), N, d_, Ng_);
  }
  const float* logits = logits_.host_read((size_t)N * E_, host_logits_);
  const float* group_logits = Ng_ > 0 ? group_logits_.host_read((size_t)N * Ng_, host_group_logits_) : nullptr;
  router_forward(m_, logits, group_logits, N, routing_, cache_);
}

// Send layout: counting sort of the assignments by slot (owning rank, then expert), stable in
// token order; then the routing and the layout go to the backend.
void MoeFfn::plan_send(int N) {
  const int E = E_, A = routing_.num_assignments();
  send_rows_.assign(E, 0);
  for (int e = 0; e < E; e++) send_rows_[slots_.slot[e]] = routing_.tokens_per_expert[e];
  std::vector<int> fill(E, 0);
  for (int s = 1; s < E; s++) fill[s] = fill[s - 1] + send_rows_[s - 1];
  pos_.resize(A), send_token_.resize(A);
  for (int t = 0; t < N; t++)
    for (int j = routing_.offsets[t]; j < routing_.offsets[t + 1]; j++) {
      const int p = fill[slots_.slot[routing_.expert[j]]]++;
      pos_[j] = p;
      send_token_[p] = t;
    }
  Backend& be = params_.backend();
  dev_offsets_.ensure(be, N + 1), dev_pos_.ensure(be, A), dev_send_token_.ensure(be, A), dev_weight_.ensure(be, A);
  dev_offsets_.upload(routing_.offsets.data(), N + 1);
  dev_pos_.upload(pos_.data(), A), dev_send_token_.upload(send_token_.data(), A);
  dev_weight_.upload(routing_.weight.data(), A);
}

void MoeFfn::forward(float* out, const float* inp, int N, int64_t step, Mode mode) {
  const int d = d_;
  Backend& be = params_.backend();
  step_ = step;
  route(inp, N);
  const int A = routing_.num_assignments();
  // dispatch: gather rows into the send layout, exchange counts, then rows
  plan_send(N);
  be.gather_rows(xs_.ensure(be, (size_t)A * d), inp, dev_send_token_.data(), A, d);
  dispatcher_->plan(send_rows_);
  xe_ = dispatcher_->dispatch(xs_.data());

  // experts, on the rows they received; outputs go back to the tokens' ranks
  float* ye = ye_.ensure(be, (size_t)dispatcher_->received_rows() * d);
  experts_.forward(ye, xe_, dispatcher_->expert_rows());
  for (size_t i = 0; i < experts_.ids().size(); i++)
    step_expert_load_ += (double)dispatcher_->expert_rows()[i] * m_.expert_widths[experts_.ids()[i]];
  ys_ = dispatcher_->combine(ye);

  // combine: out[t] = Σ_j w_j · ys[pos_j] (+ shared expert)
  be.combine_rows(out, ys_, dev_weight_.data(), dev_offsets_.data(), dev_pos_.data(), N, d);
  if (m_.shared_expert_width > 0) {
    size_t n = (size_t)N * m_.shared_expert_width;
    sg_.ensure(be, n), su_.ensure(be, n), sa_.ensure(be, n);
    swiglu_ffn_forward(be, out, sg_.data(), su_.data(), sa_.data(), inp, shared_.weights(params_), N, d,
                       m_.shared_expert_width, true, prec_);
  }

  // training only: auxiliary losses (values now; their gradients in backward). With
  // global_batch_stats the counts are those of the step so far: every micro-batch routed since
  // begin_step, up to this one (later micro-batches are not routed yet when this one's backward
  // runs), over every rank of the batch group: the whole global micro-batch.
  aux_total_ = 0.0, aux_terms_.clear();
  if (mode != Mode::train) return;
  if (m_.global_batch_stats && batch_group_) {
    BalanceStats mine;
    mine.reset(m_);
    mine.add(routing_, cache_);
    std::vector<double> flat = mine.pack();
    batch_group_->allreduce_sum(flat.data(), (int64_t)flat.size());
    mine.unpack(flat);
    step_stats_.merge(mine);
  } else {
    step_stats_.add(routing_, cache_);
  }
  AuxLossValues v = aux_loss_values(m_, cache_, routing_, step, global_stats());
  aux_total_ = v.total;
  aux_terms_ = v.terms();
}

void MoeFfn::backward(float* dinp, const float* dout, const float* inp, int N, float aux_scale) {
  const int d = d_, A = routing_.num_assignments();
  Backend& be = params_.backend();
  // through the combine: dys[pos_j] = w_j·dout[t], dw_j = <dout[t], ys[pos_j]>
  be.combine_rows_backward(dys_.ensure(be, (size_t)A * d), dweight_.ensure(be, A), dout, ys_, dev_weight_.data(),
                           dev_offsets_.data(), dev_pos_.data(), N, d);
  // experts: output gradients to the experts' ranks, input gradients back
  const float* dye = dispatcher_->combine_backward(dys_.data());
  scratch_.ensure(be, std::max(experts_.scratch_floats(), 3 * (size_t)N * m_.shared_expert_width));
  float* dxe = dxe_.ensure(be, (size_t)dispatcher_->received_rows() * d);
  experts_.backward(dxe, dye, xe_, scratch_.data());
  const float* dxs = dispatcher_->dispatch_backward(dxe);
  be.gather_rows_backward(dinp, dxs, dev_offsets_.data(), dev_pos_.data(), N, d);
  if (m_.shared_expert_width > 0)
    swiglu_ffn_backward(be, dinp, shared_.grads(params_), dout, inp, sg_.data(), su_.data(), sa_.data(),
                        shared_.weights(params_), N, d, m_.shared_expert_width, scratch_.data(), prec_);
  route_backward(dinp, inp, N, aux_scale);
}

// Gate-weight gradients and aux-loss gradients -> logits -> router weights, input.
void MoeFfn::route_backward(float* dinp, const float* inp, int N, float aux_scale) {
  Backend& be = params_.backend();
  const int A = routing_.num_assignments();
  float* dweight = dweight_.host_read(A, host_dweight_);
  float* dlogits = dlogits_.host_zeros(be, (size_t)N * E_, host_dlogits_);
  float* dgl = Ng_ > 0 ? dgroup_logits_.host_zeros(be, (size_t)N * Ng_, host_dgroup_logits_) : nullptr;
  aux_loss_backward(m_, cache_, routing_, step_, aux_scale, dweight, dlogits, dgl, global_stats());
  router_backward(m_, cache_, routing_, dweight, dlogits, dgl);
  dlogits_.host_commit(dlogits, (size_t)N * E_);
  if (Ng_ > 0) dgroup_logits_.host_commit(dgl, (size_t)N * Ng_);
  be.matmul_backward(dinp, params_.grad(gate_id_), dlogits_.data(), inp, params_.data(gate_id_), N, d_, E_);
  if (Ng_ > 0)
    be.matmul_backward(dinp, params_.grad(group_gate_id_), dgroup_logits_.data(), inp, params_.data(group_gate_id_), N, d_, Ng_);
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
