// defines: aux_loss_values, aux_loss_backward, AuxLossValues::terms, BalanceStats (see aux_loss.h for the formulas)
#include "moe/aux_loss.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mohge {

namespace {

constexpr int kParallelMinTokens = 64;

// The count-derived fractions (no gradient), from the micro-batch or from global stats.
struct Fractions {
  std::vector<double> f_assign;  // [E]  n_e / Σn            (load balance, P-Penalty)
  std::vector<double> f_group;   // [Ng] n_g / (T·Kg)        (group)
  std::vector<double> f_tok;     // [E]  n_e / (T·K)         (intra-group)
};

Fractions fractions(const MoeConfig& cfg, const Routing& r, const BalanceStats* global) {
  MOHGE_CHECK(!cfg.global_batch_stats || global != nullptr,
              "aux loss: global_batch_stats is on but no global BalanceStats was given");
  const int E = cfg.num_experts;
  const bool two = cfg.router == RouterKind::two_level;
  const int Ng = two ? cfg.num_expert_groups : 0;
  Fractions f;
  f.f_assign.assign(E, 0.0);
  f.f_group.assign(Ng, 0.0);
  f.f_tok.assign(E, 0.0);
  double tokens, assigned;
  if (global) {
    MOHGE_CHECK((int)global->tokens_per_expert.size() == E && (int)global->tokens_per_group.size() == Ng,
                "aux loss: BalanceStats sized for E={}, Ng={} but the layer has E={}, Ng={}",
                global->tokens_per_expert.size(), global->tokens_per_group.size(), E, Ng);
    tokens = global->tokens, assigned = global->assignments;
  } else {
    tokens = r.T, assigned = r.num_assignments();
  }
  auto n_e = [&](int e) { return global ? global->tokens_per_expert[e] : (double)r.tokens_per_expert[e]; };
  auto n_g = [&](int g) { return global ? global->tokens_per_group[g] : (double)r.tokens_per_group[g]; };
  if (assigned > 0)
    for (int e = 0; e < E; e++) f.f_assign[e] = n_e(e) / assigned;
  if (two && tokens > 0) {
    for (int g = 0; g < Ng; g++) f.f_group[g] = n_g(g) / (tokens * cfg.topk_group);
    for (int e = 0; e < E; e++) f.f_tok[e] = n_e(e) / (tokens * cfg.num_experts_per_tok);
  }
  return f;
}

double mean_width(const MoeConfig& cfg) {
  double s = 0.0;
  for (int w : cfg.expert_widths) s += w;
  return s / cfg.num_experts;
}

// ω_g = (W_g − W_min + Δ) / Δ
std::vector<double> group_omega(const MoeConfig& cfg) {
  const int Ng = cfg.num_expert_groups;
  int wmin = cfg.group_width(0);
  for (int g = 1; g < Ng; g++) wmin = std::min(wmin, cfg.group_width(g));
  std::vector<double> om(Ng);
  for (int g = 0; g < Ng; g++) om[g] = ((double)cfg.group_width(g) - wmin + cfg.group_delta) / cfg.group_delta;
  return om;
}

bool group_active(const MoeConfig& cfg, int64_t step) {
  return cfg.router == RouterKind::two_level && cfg.group_coef > 0.0 && step >= cfg.group_loss_start_step;
}

void check_cache(const MoeConfig& cfg, const RouterCache& cache, const Routing& r) {
  MOHGE_CHECK(cache.T == r.T && cache.E == cfg.num_experts,
              "aux loss: cache is for T={}, E={} but routing has T={}, config E={}", cache.T, cache.E, r.T,
              cfg.num_experts);
}

}  // namespace

std::map<std::string, double> AuxLossValues::terms() const {
  std::map<std::string, double> m{
      {"load_balance", load_balance}, {"p_penalty", p_penalty}, {"router_entropy", router_entropy}};
  if (two_level) m["group"] = group, m["intra_group"] = intra_group;
  return m;
}

AuxLossValues aux_loss_values(const MoeConfig& cfg, const RouterCache& cache, const Routing& r, int64_t step,
                              const BalanceStats* global) {
  check_cache(cfg, cache, r);
  AuxLossValues L;
  L.two_level = cfg.router == RouterKind::two_level;
  const int T = r.T, E = cfg.num_experts;
  if (T == 0) return L;
  const Fractions f = fractions(cfg, r, global);

  std::vector<double> pbar(E, 0.0);
  for (int t = 0; t < T; t++)
    for (int e = 0; e < E; e++) pbar[e] += cache.probs[(size_t)t * E + e];
  for (double& v : pbar) v /= T;
  const double wbar = mean_width(cfg);
  for (int e = 0; e < E; e++) {
    L.load_balance += E * f.f_assign[e] * pbar[e];
    L.p_penalty += E * f.f_assign[e] * (cfg.expert_widths[e] / wbar) * pbar[e];
  }
  double ent = 0.0;
  for (int t = 0; t < T; t++) ent += cache.entropy[t];
  L.router_entropy = ent / T;

  if (cfg.router == RouterKind::two_level) {
    const int Ng = cfg.num_expert_groups, N = cfg.experts_per_group, Kg = cfg.topk_group;
    std::vector<double> qbar(Ng, 0.0), wsum(E, 0.0);
    for (int t = 0; t < T; t++)
      for (int g = 0; g < Ng; g++) qbar[g] += cache.group_probs[(size_t)t * Ng + g];
    const std::vector<double> om = group_omega(cfg);
    for (int g = 0; g < Ng; g++) L.group += Ng * om[g] * (qbar[g] / T) * f.f_group[g];
    for (int a = 0; a < r.num_assignments(); a++) wsum[r.expert[a]] += r.weight[a];
    for (int e = 0; e < E; e++) L.intra_group += (double)Kg * N * (wsum[e] / T) * f.f_tok[e];
  }

  L.total = cfg.lb_coef * L.load_balance + cfg.pp_coef * L.p_penalty + cfg.entropy_coef * L.router_entropy +
            (group_active(cfg, step) ? cfg.group_coef * L.group : 0.0) +
            (cfg.router == RouterKind::two_level ? cfg.intra_coef * L.intra_group : 0.0);
  return L;
}

void aux_loss_backward(const MoeConfig& cfg, const RouterCache& cache, const Routing& r, int64_t step,
                       float grad_scale, float* dweight, float* dexpert_logits, float* dgroup_logits,
                       const BalanceStats* global) {
  check_cache(cfg, cache, r);
  const int T = r.T, E = cfg.num_experts;
  if (T == 0) return;
  const Fractions f = fractions(cfg, r, global);
  const double inv_T = (double)grad_scale / T;

  // load balance + P-Penalty: L = Σ_e a_e P̄_e with a_e constant, so
  // dL/dz_{t,k} = (1/T) P_{t,k} (a_k − Σ_e a_e P_{t,e}); entropy: dH_t/dz_k = −P_k (log P_k + H_t)
  const bool lin = cfg.lb_coef > 0.0 || cfg.pp_coef > 0.0;
  const bool ent = cfg.entropy_coef > 0.0;
  if (lin || ent) {
    std::vector<double> a(E, 0.0);
    const double wbar = mean_width(cfg);
    for (int e = 0; e < E; e++)
      a[e] = inv_T * E * f.f_assign[e] * (cfg.lb_coef + cfg.pp_coef * cfg.expert_widths[e] / wbar);
    const double s_ent = inv_T * cfg.entropy_coef;
#pragma omp parallel for schedule(static) if (T >= kParallelMinTokens)
    for (int t = 0; t < T; t++) {
      const float* p = cache.probs.data() + (size_t)t * E;
      float* dz = dexpert_logits + (size_t)t * E;
      double dot = 0.0;
      for (int e = 0; e < E; e++) dot += a[e] * p[e];
      const double h = cache.entropy[t];
      for (int e = 0; e < E; e++) {
        double g = (double)p[e] * (a[e] - dot);
        if (ent && p[e] > 0.0f) g -= s_ent * (double)p[e] * (std::log((double)p[e]) + h);
        dz[e] += (float)g;
      }
    }
  }

  if (cfg.router != RouterKind::two_level) return;
  const int Ng = cfg.num_expert_groups, N = cfg.experts_per_group, Kg = cfg.topk_group;

  // group: L = Σ_g b_g Q̄_g; dL/dy_{t,g} = (1/T) Q_{t,g} (b_g − Σ_h b_h Q_{t,h})
  if (group_active(cfg, step)) {
    MOHGE_CHECK(dgroup_logits != nullptr, "aux loss: the group loss needs dgroup_logits");
    const std::vector<double> om = group_omega(cfg);
    std::vector<double> b(Ng);
    for (int g = 0; g < Ng; g++) b[g] = inv_T * cfg.group_coef * Ng * om[g] * f.f_group[g];
#pragma omp parallel for schedule(static) if (T >= kParallelMinTokens)
    for (int t = 0; t < T; t++) {
      const float* q = cache.group_probs.data() + (size_t)t * Ng;
      float* dy = dgroup_logits + (size_t)t * Ng;
      double dot = 0.0;
      for (int g = 0; g < Ng; g++) dot += b[g] * q[g];
      for (int g = 0; g < Ng; g++) dy[g] += (float)((double)q[g] * (b[g] - dot));
    }
  }

  // intra-group: L = (Kg·N) Σ_e f_e (1/T) Σ_{a→e} w_a, so dL/dw_a = (Kg·N) f_{e_a} / T; the router's
  // backward carries it on to the logits
  if (cfg.intra_coef > 0.0) {
    MOHGE_CHECK(dweight != nullptr, "aux loss: the intra-group loss needs dweight");
    const int A = r.num_assignments();
    const double s = inv_T * cfg.intra_coef * Kg * N;
    for (int a = 0; a < A; a++) dweight[a] += (float)(s * f.f_tok[r.expert[a]]);
  }
}

void BalanceStats::reset(const MoeConfig& cfg) {
  const bool two = cfg.router == RouterKind::two_level;
  tokens_per_expert.assign(cfg.num_experts, 0.0);
  tokens_per_group.assign(two ? cfg.num_expert_groups : 0, 0.0);
  prob_sum.assign(cfg.num_experts, 0.0);
  tokens = 0.0;
  assignments = 0.0;
}

void BalanceStats::add(const Routing& r, const RouterCache& cache) {
  const int E = (int)tokens_per_expert.size();
  MOHGE_CHECK(E > 0 && (int)r.tokens_per_expert.size() == E &&
                  r.tokens_per_group.size() == tokens_per_group.size() && cache.E == E && cache.T == r.T,
              "BalanceStats::add: stats sized for E={}, Ng={} (reset() first) but routing has E={}, Ng={}", E,
              tokens_per_group.size(), r.tokens_per_expert.size(), r.tokens_per_group.size());
  for (int e = 0; e < E; e++) tokens_per_expert[e] += r.tokens_per_expert[e];
  for (size_t g = 0; g < tokens_per_group.size(); g++) tokens_per_group[g] += r.tokens_per_group[g];
  for (int t = 0; t < r.T; t++)
    for (int e = 0; e < E; e++) prob_sum[e] += cache.probs[(size_t)t * E + e];
  tokens += r.T;
  assignments += r.num_assignments();
}

void BalanceStats::merge(const BalanceStats& o) {
  MOHGE_CHECK(o.tokens_per_expert.size() == tokens_per_expert.size() &&
                  o.tokens_per_group.size() == tokens_per_group.size(),
              "BalanceStats::merge: sizes differ (E {} vs {}, Ng {} vs {})", tokens_per_expert.size(),
              o.tokens_per_expert.size(), tokens_per_group.size(), o.tokens_per_group.size());
  for (size_t e = 0; e < tokens_per_expert.size(); e++) {
    tokens_per_expert[e] += o.tokens_per_expert[e];
    prob_sum[e] += o.prob_sum[e];
  }
  for (size_t g = 0; g < tokens_per_group.size(); g++) tokens_per_group[g] += o.tokens_per_group[g];
  tokens += o.tokens;
  assignments += o.assignments;
}

std::vector<double> BalanceStats::pack() const {
  std::vector<double> v;
  v.reserve(2 * tokens_per_expert.size() + tokens_per_group.size() + 2);
  v.insert(v.end(), tokens_per_expert.begin(), tokens_per_expert.end());
  v.insert(v.end(), tokens_per_group.begin(), tokens_per_group.end());
  v.insert(v.end(), prob_sum.begin(), prob_sum.end());
  v.push_back(tokens);
  v.push_back(assignments);
  return v;
}

void BalanceStats::unpack(const std::vector<double>& v) {
  const size_t E = tokens_per_expert.size(), Ng = tokens_per_group.size();
  MOHGE_CHECK(v.size() == 2 * E + Ng + 2, "BalanceStats::unpack: got {} values, expected {} (E={}, Ng={})",
              v.size(), 2 * E + Ng + 2, E, Ng);
  std::copy(v.begin(), v.begin() + E, tokens_per_expert.begin());
  std::copy(v.begin() + E, v.begin() + E + Ng, tokens_per_group.begin());
  std::copy(v.begin() + E + Ng, v.begin() + 2 * E + Ng, prob_sum.begin());
  tokens = v[2 * E + Ng];
  assignments = v[2 * E + Ng + 1];
}

}  // namespace mohge
