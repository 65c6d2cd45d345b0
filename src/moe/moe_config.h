// defines: mohge::MoeKind, mohge::RouterKind, mohge::GateNorm, mohge::MoeConfig,
//          moe_kind_from_string / router_kind_from_string / gate_norm_from_string, to_string
// One MoE layer's routing and auxiliary-loss settings (SPEC §2-§4). Plain data; validate() throws
// mohge::Error with a one-line message naming the offending key.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mohge {

enum class MoeKind { moe, hmoe, mohge };                // expert layout (SPEC §2)
enum class RouterKind { top_k, top_p, two_level };      // routing rule (SPEC §3)
enum class GateNorm { softmax, renorm };                // two-level gate normalisation (SPEC §3.5)

// Parse a name; unknown names throw mohge::Error listing the valid ones.
MoeKind moe_kind_from_string(std::string_view s);       // "moe" | "hmoe" | "mohge"
RouterKind router_kind_from_string(std::string_view s); // "top_k" | "top_p" | "two_level"
GateNorm gate_norm_from_string(std::string_view s);     // "softmax" | "renorm"
const char* to_string(MoeKind k);
const char* to_string(RouterKind k);
const char* to_string(GateNorm k);

struct MoeConfig {
  MoeKind kind = MoeKind::moe;
  RouterKind router = RouterKind::top_k;
  int num_experts = 8;                 // E
  std::vector<int> expert_widths;      // [E] SwiGLU hidden width W_e; for mohge W_{g·N+i} = W_g
  int num_expert_groups = 1;           // Ng (two-level only; E = Ng·N)
  int experts_per_group = 0;           // N  (two-level only)
  int num_experts_per_tok = 2;         // K  (top_k, two_level)
  double top_p = 0.6;                  // p  (top_p), in (0, 1]
  int max_experts_per_tok = 8;         // max_k (top_p), in [1, E]
  int topk_group = 1;                  // Kg (two_level), in [1, Ng]
  GateNorm gate_norm = GateNorm::softmax;
  int shared_expert_width = 0;         // ungated shared SwiGLU width; 0 = none (not used by routing)
  // auxiliary-loss coefficients; 0 switches a loss off (SPEC §4)
  double lb_coef = 0.0;                // load balance (Switch)
  double pp_coef = 0.0;                // P-Penalty (HMoE eq. 4)
  double entropy_coef = 0.0;           // router entropy, minimised (HMoE eq. 5)
  double group_coef = 0.0;             // α_G group-wise (MoHGE)
  double group_delta = 1024.0;         // Δ in ω_g = (W_g − W_min + Δ)/Δ
  int64_t group_loss_start_step = 0;   // group loss active when step >= this
  double intra_coef = 0.0;             // α_E intra-group (MoHGE)
  bool global_batch_stats = false;     // balance counts over the global batch (see aux_loss.h)

  // Throws mohge::Error naming the key on any inconsistency (K > E, Kg > Ng, p ∉ (0,1], widths
  // count != E or != Ng·N, non-positive widths, unequal widths inside a group, ...).
  void validate() const;

  // Width of group g (two-level layouts): expert_widths[g·N].
  int group_width(int g) const { return expert_widths[(size_t)g * experts_per_group]; }
};

}  // namespace mohge
