// defines: routing_metrics and the to_json functions of metrics.h
#include "moe/metrics.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace mohge {

RoutingMetrics routing_metrics(const MoeConfig& cfg, const std::vector<double>& n_e,
                               const std::vector<double>& n_g, double tokens, int d_model, int devices) {
  const int E = cfg.num_experts;
  const bool two = cfg.router == RouterKind::two_level;
  const int Ng = two ? cfg.num_expert_groups : 0;
  MOHGE_CHECK((int)n_e.size() == E, "routing metrics: {} expert counts for {} experts", n_e.size(), E);
  MOHGE_CHECK(!two || (int)n_g.size() == Ng, "routing metrics: {} group counts for {} groups", n_g.size(), Ng);
  MOHGE_CHECK(d_model >= 1 && devices >= 1, "routing metrics: d_model = {} and devices = {} must be >= 1", d_model,
              devices);
  RoutingMetrics m;
  m.tokens = tokens;
  m.devices = devices;
  const double d = d_model;
  double flops_w = 0.0;  // Σ_e n_e·W_e
  for (int e = 0; e < E; e++) {
    m.assignments += n_e[e];
    flops_w += n_e[e] * cfg.expert_widths[e];
    m.total_expert_params += 3.0 * d * cfg.expert_widths[e];
  }
  if (tokens > 0) {
    m.experts_per_token = m.assignments / tokens;
    m.activated_expert_params = 3.0 * d * flops_w / tokens;
  }
  m.activated_layer_params =
      m.activated_expert_params + 3.0 * d * cfg.shared_expert_width + d * E + (two ? d * Ng : 0.0);
  m.expert_share.assign(E, 0.0);
  if (m.assignments > 0)
    for (int e = 0; e < E; e++) m.expert_share[e] = n_e[e] / m.assignments;
  if (two) {
    const int N = cfg.experts_per_group;
    m.group_share.assign(Ng, 0.0);
    m.group_token_frac.assign(Ng, 0.0);
    for (int g = 0; g < Ng; g++) {
      for (int i = 0; i < N; i++) m.group_share[g] += m.expert_share[g * N + i];
      if (tokens > 0) m.group_token_frac[g] = n_g[g] / tokens;
    }
  }
  m.max_vio = max_vio(n_e);

  const int pNg = two ? Ng : E, pN = two ? cfg.experts_per_group : 1;
  for (PlacementPolicy pol : {PlacementPolicy::contiguous, PlacementPolicy::pairing, PlacementPolicy::all_size}) {
    PlacementLoad pl;
    pl.policy = pol;
    try {
      pl.placement = place_experts(pol, cfg.expert_widths, pNg, pN, devices);
      pl.static_width = device_static_width(pl.placement, cfg.expert_widths, devices);
      pl.report = load_report(pl.placement, n_e, cfg.expert_widths, devices);
      pl.ok = true;
    } catch (const Error& err) {
      pl.error = err.what();
    }
    m.placements.push_back(std::move(pl));
  }
  return m;
}

RoutingMetrics routing_metrics(const MoeConfig& cfg, const Routing& r, int d_model, int devices) {
  return routing_metrics(cfg, std::vector<double>(r.tokens_per_expert.begin(), r.tokens_per_expert.end()),
                         std::vector<double>(r.tokens_per_group.begin(), r.tokens_per_group.end()), r.T, d_model,
                         devices);
}

RoutingMetrics routing_metrics(const MoeConfig& cfg, const BalanceStats& s, int d_model, int devices) {
  return routing_metrics(cfg, s.tokens_per_expert, s.tokens_per_group, s.tokens, d_model, devices);
}

void to_json(nlohmann::json& j, const LoadReport& r) {
  j = nlohmann::json{{"device_load", r.device_load},
                     {"device_token_share", r.device_token_share},
                     {"max_over_mean", r.max_over_mean}};
}

void to_json(nlohmann::json& j, const PlacementLoad& p) {
  j = nlohmann::json{{"policy", to_string(p.policy)}, {"ok", p.ok}};
  if (p.ok) {
    j["placement"] = p.placement;
    j["static_width"] = p.static_width;
    j["load"] = p.report;
  } else {
    j["error"] = p.error;
  }
}

void to_json(nlohmann::json& j, const RoutingMetrics& m) {
  j = nlohmann::json{{"tokens", m.tokens},
                     {"assignments", m.assignments},
                     {"experts_per_token", m.experts_per_token},
                     {"activated_expert_params", m.activated_expert_params},
                     {"activated_layer_params", m.activated_layer_params},
                     {"total_expert_params", m.total_expert_params},
                     {"expert_share", m.expert_share},
                     {"max_vio", m.max_vio},
                     {"devices", m.devices},
                     {"placements", m.placements}};
  if (!m.group_share.empty()) {
    j["group_share"] = m.group_share;
    j["group_token_frac"] = m.group_token_frac;
  }
}

void to_json(nlohmann::json& j, const AuxLossValues& l) {
  j = l.terms();
  j["total"] = l.total;
}

}  // namespace mohge
