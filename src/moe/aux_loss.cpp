// defines: AuxLossValues, BalanceStats, AuxLossParams, aux_loss_values, aux_loss_backward (see
// aux_loss.h for the formulas; the math is the Backend's aux_loss ops)
#include "moe/aux_loss.h"

#include <algorithm>

#include "core/error.h"

namespace mohge {

namespace {

// the route-stats array the aux_loss ops read: the micro-batch's, or the step's global counts
const double* loss_stats(const MoeConfig& cfg, RouterCache& cache, const Routing& r, const BalanceStats* global,
                         std::vector<double>& packed) {
  MOHGE_CHECK(cache.T == r.T && cache.spec.E == cfg.num_experts,
              "aux loss: cache is for T={}, E={} but routing has T={}, config E={}", cache.T, cache.spec.E, r.T,
              cfg.num_experts);
  MOHGE_CHECK(!cfg.global_batch_stats || global != nullptr,
              "aux loss: global_batch_stats is on but no global BalanceStats was given");
  if (!global) return cache.stats.data();
  const int Ng = cache.spec.Ng;
  MOHGE_CHECK((int)global->tokens_per_expert.size() == cfg.num_experts && (int)global->tokens_per_group.size() == Ng,
              "aux loss: BalanceStats sized for E={}, Ng={} but the layer has E={}, Ng={}",
              global->tokens_per_expert.size(), global->tokens_per_group.size(), cfg.num_experts, Ng);
  packed = global->pack();
  return packed.data();
}

}  // namespace

AuxLossValues AuxLossValues::from(const double* v, bool two_level) {
  AuxLossValues L;
  L.load_balance = v[kAuxLoadBalance], L.p_penalty = v[kAuxPPenalty], L.router_entropy = v[kAuxRouterEntropy];
  L.group = v[kAuxGroup], L.intra_group = v[kAuxIntraGroup], L.total = v[kAuxTotal];
  L.two_level = two_level;
  return L;
}

std::map<std::string, double> AuxLossValues::terms() const {
  std::map<std::string, double> m{
      {"load_balance", load_balance}, {"p_penalty", p_penalty}, {"router_entropy", router_entropy}};
  if (two_level) m["group"] = group, m["intra_group"] = intra_group;
  return m;
}

AuxLossParams::AuxLossParams(Backend& be, const MoeConfig& cfg) : cfg_(cfg) {
  const int E = cfg.num_experts;
  std::vector<double> w(cfg.expert_widths.begin(), cfg.expert_widths.end());
  double s = 0.0;
  for (int x : cfg.expert_widths) s += x;
  mean_width_ = s / E;
  widths_.ensure(be, E), widths_.upload(w.data(), E);
  if (cfg.router == RouterKind::two_level) {
    // ω_g = (W_g − W_min + Δ) / Δ
    const int Ng = cfg.num_expert_groups;
    int wmin = cfg.group_width(0);
    for (int g = 1; g < Ng; g++) wmin = std::min(wmin, cfg.group_width(g));
    std::vector<double> om(Ng);
    for (int g = 0; g < Ng; g++) om[g] = ((double)cfg.group_width(g) - wmin + cfg.group_delta) / cfg.group_delta;
    omega_.ensure(be, Ng), omega_.upload(om.data(), Ng);
  }
}

AuxLossSpec AuxLossParams::spec(int64_t step) const {
  AuxLossSpec l;
  l.lb = cfg_.lb_coef, l.pp = cfg_.pp_coef, l.entropy = cfg_.entropy_coef;
  l.group = cfg_.group_coef, l.intra = cfg_.intra_coef;
  l.group_active = cfg_.router == RouterKind::two_level && cfg_.group_coef > 0.0 && step >= cfg_.group_loss_start_step;
  l.widths = widths_.data(), l.mean_width = mean_width_, l.group_omega = omega_.data();
  return l;
}

AuxLossValues aux_loss_values(const MoeConfig& cfg, RouterCache& cache, const Routing& r, int64_t step,
                              const BalanceStats* global) {
  std::vector<double> packed;
  const double* stats = loss_stats(cfg, cache, r, global, packed);
  const AuxLossParams params(cpu_backend(), cfg);
  double v[kAuxValues];
  cpu_backend().aux_loss_forward(cache.spec, params.spec(step), v, cache.tensors(), cache.assignments(), stats, r.T);
  return AuxLossValues::from(v, cache.spec.two_level());
}

void aux_loss_backward(const MoeConfig& cfg, RouterCache& cache, const Routing& r, int64_t step, float grad_scale,
                       float* dweight, float* dexpert_logits, float* dgroup_logits, const BalanceStats* global) {
  std::vector<double> packed;
  const double* stats = loss_stats(cfg, cache, r, global, packed);
  const AuxLossParams params(cpu_backend(), cfg);
  cpu_backend().aux_loss_backward(cache.spec, params.spec(step), dweight, dexpert_logits, dgroup_logits,
                                  cache.tensors(), cache.assignments(), stats, r.T, grad_scale);
}

void BalanceStats::reset(const MoeConfig& cfg) {
  const bool two = cfg.router == RouterKind::two_level;
  tokens_per_expert.assign(cfg.num_experts, 0.0);
  tokens_per_group.assign(two ? cfg.num_expert_groups : 0, 0.0);
  tokens = 0.0;
  assignments = 0.0;
}

void BalanceStats::add(const std::vector<double>& s) {
  const size_t E = tokens_per_expert.size(), Ng = tokens_per_group.size();
  MOHGE_CHECK(E > 0 && s.size() == E + Ng + 3,
              "BalanceStats::add: stats sized for E={}, Ng={} (reset() first) but got {} route stats", E, Ng,
              s.size());
  for (size_t e = 0; e < E; e++) tokens_per_expert[e] += s[e];
  for (size_t g = 0; g < Ng; g++) tokens_per_group[g] += s[E + g];
  tokens += s[E + Ng];
  assignments += s[E + Ng + 1];
}

void BalanceStats::merge(const BalanceStats& o) {
  MOHGE_CHECK(o.tokens_per_expert.size() == tokens_per_expert.size() &&
                  o.tokens_per_group.size() == tokens_per_group.size(),
              "BalanceStats::merge: sizes differ (E {} vs {}, Ng {} vs {})", tokens_per_expert.size(),
              o.tokens_per_expert.size(), tokens_per_group.size(), o.tokens_per_group.size());
  for (size_t e = 0; e < tokens_per_expert.size(); e++) tokens_per_expert[e] += o.tokens_per_expert[e];
  for (size_t g = 0; g < tokens_per_group.size(); g++) tokens_per_group[g] += o.tokens_per_group[g];
  tokens += o.tokens;
  assignments += o.assignments;
}

std::vector<double> BalanceStats::pack() const {
  std::vector<double> v;
  v.reserve(tokens_per_expert.size() + tokens_per_group.size() + 2);
  v.insert(v.end(), tokens_per_expert.begin(), tokens_per_expert.end());
  v.insert(v.end(), tokens_per_group.begin(), tokens_per_group.end());
  v.push_back(tokens);
  v.push_back(assignments);
  return v;
}

void BalanceStats::unpack(const std::vector<double>& v) {
  const size_t E = tokens_per_expert.size(), Ng = tokens_per_group.size();
  MOHGE_CHECK(v.size() == E + Ng + 2, "BalanceStats::unpack: got {} values, expected {} (E={}, Ng={})", v.size(),
              E + Ng + 2, E, Ng);
  std::copy(v.begin(), v.begin() + E, tokens_per_expert.begin());
  std::copy(v.begin() + E, v.begin() + E + Ng, tokens_per_group.begin());
  tokens = v[E + Ng];
  assignments = v[E + Ng + 1];
}

}  // namespace mohge
