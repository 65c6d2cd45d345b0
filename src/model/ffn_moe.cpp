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
      spec_(router_spec(c.moe)), aux_params_(params.backend(), c.moe),
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
  slot_.ensure(params.backend(), E_);
  slot_.upload(slots_.slot.data(), E_);
}

// Router logits in fp32 whatever the matmul precision (SPEC: router math in fp32), then routing
// and the send layout on the backend; route_tokens ends with the layer's one wait for the backend:
// the counts, which size the dispatch.
void MoeFfn::route(const float* inp, int N) {
  Backend& be = params_.backend();
  logits_.ensure(be, (size_t)N * E_);
  be.matmul_forward(logits_.data(), inp, params_.data(gate_id_), N, d_, E_);
  if (Ng_ > 0) {
    group_logits_.ensure(be, (size_t)N * Ng_);
    be.matmul_forward(group_logits_.data(), inp, params_.data(group_gate_id_), N, d_, Ng_);
  }
  route_tokens(be, spec_, logits_.data(), Ng_ > 0 ? group_logits_.data() : nullptr, N, slot_.data(), cache_);
  routing_current_ = false;
  tokens_per_expert_.resize(E_), tokens_per_group_.resize(Ng_);
  for (int e = 0; e < E_; e++) tokens_per_expert_[e] = cache_.tokens_of_expert(e);
  for (int g = 0; g < Ng_; g++) tokens_per_group_[g] = (int)cache_.host_stats[E_ + g];
}

void MoeFfn::forward(float* out, const float* inp, int N, int64_t step, Mode mode) {
  const int d = d_;
  Backend& be = params_.backend();
  step_ = step;
  route(inp, N);
  const int A = cache_.num_assignments();
  // dispatch: gather rows into the send layout, exchange counts, then rows
  send_rows_.assign(E_, 0);
  for (int e = 0; e < E_; e++) send_rows_[slots_.slot[e]] = tokens_per_expert_[e];
  be.gather_rows(xs_.ensure(be, (size_t)A * d), inp, cache_.send_token.data(), A, d);
  dispatcher_->plan(send_rows_);
  xe_ = dispatcher_->dispatch(xs_.data());

  // experts, on the rows they received; outputs go back to the tokens' ranks
  float* ye = ye_.ensure(be, (size_t)dispatcher_->received_rows() * d);
  experts_.forward(ye, xe_, dispatcher_->expert_rows());
  for (size_t i = 0; i < experts_.ids().size(); i++)
    step_expert_load_ += (double)dispatcher_->expert_rows()[i] * m_.expert_widths[experts_.ids()[i]];
  ys_ = dispatcher_->combine(ye);

  // combine: out[t] = Σ_j w_j · ys[pos_j] (+ shared expert)
  be.combine_rows(out, ys_, cache_.weight.data(), cache_.offsets.data(), cache_.pos.data(), N, d);
  if (m_.shared_expert_width > 0) {
    size_t n = (size_t)N * m_.shared_expert_width;
    sg_.ensure(be, n), su_.ensure(be, n), sa_.ensure(be, n);
    swiglu_ffn_forward(be, out, sg_.data(), su_.data(), sa_.data(), inp, shared_.weights(params_), N, d,
                       m_.shared_expert_width, true, prec_);
  }

  // training only: auxiliary losses (values now, on the backend; their gradients in backward). With
  // global_batch_stats the counts are those of the step so far: every micro-batch routed since
  // begin_step, up to this one (later micro-batches are not routed yet when this one's backward
  // runs), over every rank of the batch group: the whole global micro-batch.
  aux_.reset();
  aux_pending_ = mode == Mode::train;
  if (mode != Mode::train) return;
  if (m_.global_batch_stats && batch_group_) {
    BalanceStats mine;
    mine.reset(m_);
    mine.add(cache_.host_stats);
    std::vector<double> flat = mine.pack();
    batch_group_->allreduce_sum(flat.data(), (int64_t)flat.size());
    mine.unpack(flat);
    step_stats_.merge(mine);
  } else {
    step_stats_.add(cache_.host_stats);
  }
  be.aux_loss_forward(spec_, aux_params_.spec(step), aux_values_.ensure(be, kAuxValues), cache_.tensors(),
                      cache_.assignments(), loss_stats(), N);
}

// The counts the aux losses use: the step's (uploaded) with global_batch_stats, else the micro-batch's.
const double* MoeFfn::loss_stats() {
  if (!m_.global_batch_stats) return cache_.stats.data();
  const std::vector<double> packed = step_stats_.pack();
  loss_stats_.ensure(params_.backend(), packed.size());
  loss_stats_.upload(packed.data(), packed.size());
  return loss_stats_.data();
}

void MoeFfn::backward(float* dinp, const float* dout, const float* inp, int N, float aux_scale) {
  const int d = d_, A = cache_.num_assignments();
  Backend& be = params_.backend();
  // through the combine: dys[pos_j] = w_j·dout[t], dw_j = <dout[t], ys[pos_j]>
  be.combine_rows_backward(dys_.ensure(be, (size_t)A * d), dweight_.ensure(be, A), dout, ys_, cache_.weight.data(),
                           cache_.offsets.data(), cache_.pos.data(), N, d);
  // experts: output gradients to the experts' ranks, input gradients back
  const float* dye = dispatcher_->combine_backward(dys_.data());
  scratch_.ensure(be, std::max(experts_.scratch_floats(), 3 * (size_t)N * m_.shared_expert_width));
  float* dxe = dxe_.ensure(be, (size_t)dispatcher_->received_rows() * d);
  experts_.backward(dxe, dye, xe_, scratch_.data());
  const float* dxs = dispatcher_->dispatch_backward(dxe);
  be.gather_rows_backward(dinp, dxs, cache_.offsets.data(), cache_.pos.data(), N, d);
  if (m_.shared_expert_width > 0)
    swiglu_ffn_backward(be, dinp, shared_.grads(params_), dout, inp, sg_.data(), su_.data(), sa_.data(),
                        shared_.weights(params_), N, d, m_.shared_expert_width, scratch_.data(), prec_);
  route_backward(dinp, inp, N, aux_scale);
}

// Gate-weight gradients and aux-loss gradients -> logits -> router weights, input; all on the backend.
void MoeFfn::route_backward(float* dinp, const float* inp, int N, float aux_scale) {
  Backend& be = params_.backend();
  float* dlogits = dlogits_.zeros(be, (size_t)N * E_);
  float* dgl = Ng_ > 0 ? dgroup_logits_.zeros(be, (size_t)N * Ng_) : nullptr;
  const double* stats = m_.global_batch_stats ? loss_stats_.data() : cache_.stats.data();
  be.aux_loss_backward(spec_, aux_params_.spec(step_), dweight_.data(), dlogits, dgl, cache_.tensors(),
                       cache_.assignments(), stats, N, aux_scale);
  be.router_backward(spec_, dlogits, dgl, dweight_.data(), cache_.tensors(), cache_.assignments(), N);
  be.matmul_backward(dinp, params_.grad(gate_id_), dlogits, inp, params_.data(gate_id_), N, d_, E_);
  if (Ng_ > 0)
    be.matmul_backward(dinp, params_.grad(group_gate_id_), dgl, inp, params_.data(group_gate_id_), N, d_, Ng_);
}

const AuxLossValues* MoeFfn::aux_values() const {
  if (!aux_pending_) return nullptr;
  if (!aux_) {
    double v[kAuxValues];
    aux_values_.download(v, kAuxValues);
    aux_ = AuxLossValues::from(v, Ng_ > 0);
  }
  return &*aux_;
}

double MoeFfn::aux_loss() const {
  const AuxLossValues* v = aux_values();
  return v ? v->total : 0.0;
}

void MoeFfn::aux_terms(std::map<std::string, double>& sum) const {
  if (const AuxLossValues* v = aux_values())
    for (auto& [k, x] : v->terms()) sum[k] += x;
}

const Routing& MoeFfn::last_routing() const {
  if (!routing_current_ && !cache_.host_stats.empty()) routing_from(cache_, routing_);
  routing_current_ = true;
  return routing_;
}

std::optional<FfnRouting> MoeFfn::routing() const {
  return FfnRouting{m_, [this]() -> const Routing& { return last_routing(); }, tokens_per_expert_, tokens_per_group_,
                    step_stats_, step_expert_load_};
}

double MoeFfn::active_params_per_token() const {
  // router (+ group router) and shared expert serve every token; each routed expert adds 3·d·W_e
  double p = (double)d_ * (E_ + Ng_) + 3.0 * d_ * m_.shared_expert_width;
  if (cache_.T == 0) return p;
  double routed = 0.0;
  for (int e = 0; e < E_; e++) routed += (double)tokens_per_expert_[e] * m_.expert_widths[e];
  return p + 3.0 * d_ * routed / cache_.T;
}

}  // namespace mohge
