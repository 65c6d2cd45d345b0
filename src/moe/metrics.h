// defines: mohge::PlacementLoad, mohge::RoutingMetrics, routing_metrics, to_json (RoutingMetrics,
//          LoadReport, PlacementLoad, AuxLossValues)
// Per-step routing metrics of one MoE layer (SPEC §5-§6), computed from expert / group counts, so
// they work for one micro-batch (Routing) or for a whole step (BalanceStats).
//
// Activated parameters per token (a SwiGLU expert of width W holds 3·d·W weights):
//   activated_expert_params = mean_t Σ_{e kept for t} 3·d·W_e = Σ_e n_e·3·d·W_e / T   (experts only)
//   activated_layer_params  = activated_expert_params + 3·d·shared_expert_width
//                             + d·E (+ d·Ng for two-level): the router weights, which every token
//                             uses in full. Attention / norms are the model's business, not counted.
// Shares: expert_share_e = n_e / Σn (share of assignments); group_share_g = Σ_i n_{g,i} / Σn;
// group_token_frac_g = n_g / T (tokens whose selected groups include g; two-level only).
// Placements: the three policies of placement.h for `devices` devices; an ungrouped layout uses
// all_size with Ng = E, N = 1. A policy that refuses that D is reported with ok = false and its error.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "moe/aux_loss.h"
#include "moe/moe_config.h"
#include "moe/placement.h"
#include "moe/router.h"

namespace mohge {

struct PlacementLoad {
  PlacementPolicy policy = PlacementPolicy::contiguous;
  bool ok = false;
  std::string error;           // why the policy refused D (ok == false)
  std::vector<int> placement;  // [E] device per expert
  std::vector<long> static_width;  // [D] Σ W_e per device
  LoadReport report;
};

struct RoutingMetrics {
  double tokens = 0.0;                       // T
  double assignments = 0.0;                  // Σn
  double experts_per_token = 0.0;            // Σn / T
  double activated_expert_params = 0.0;      // per token, experts only
  double activated_layer_params = 0.0;       // per token, experts + shared expert + router
  double total_expert_params = 0.0;          // Σ_e 3·d·W_e
  std::vector<double> expert_share;          // [E]
  std::vector<double> group_share;           // [Ng] two-level only
  std::vector<double> group_token_frac;      // [Ng] two-level only
  double max_vio = 0.0;
  int devices = 0;
  std::vector<PlacementLoad> placements;     // contiguous, pairing, all_size
};

// From raw counts: tokens_per_expert [E], tokens_per_group [Ng] (two-level; else may be empty), T.
RoutingMetrics routing_metrics(const MoeConfig& cfg, const std::vector<double>& tokens_per_expert,
                               const std::vector<double>& tokens_per_group, double tokens, int d_model,
                               int devices);
RoutingMetrics routing_metrics(const MoeConfig& cfg, const Routing& routing, int d_model, int devices);
RoutingMetrics routing_metrics(const MoeConfig& cfg, const BalanceStats& stats, int d_model, int devices);

void to_json(nlohmann::json& j, const LoadReport& r);
void to_json(nlohmann::json& j, const PlacementLoad& p);
void to_json(nlohmann::json& j, const RoutingMetrics& m);
void to_json(nlohmann::json& j, const AuxLossValues& l);

}  // namespace mohge
