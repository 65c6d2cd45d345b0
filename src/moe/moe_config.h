// defines: mohge::MoeKind, mohge::RouterKind, mohge::GateNorm, mohge::MoeConfig, ExpertLayout,
//          moe_schema, expert_layout_schema, moe_config_read, moe_config_from_json,
//          moe_kind_from_string / router_kind_from_string / gate_norm_from_string, to_string
// One MoE layer's routing and auxiliary-loss settings (SPEC §2-§4), the [moe] section of a run
// config and the MoE keys of config.json. validate() throws mohge::Error with a one-line message
// naming the offending key.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <toml++/toml.h>
#include <vector>

namespace mohge {

template <class S>
class ConfigSchema;  // core/config_schema.h

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
std::span<const MoeKind> enum_values(MoeKind);
std::span<const RouterKind> enum_values(RouterKind);
std::span<const GateNorm> enum_values(GateNorm);

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

  // Throws mohge::Error naming the key for a value outside its range (moe_schema) or any
  // inconsistency (K > E, Kg > Ng, widths count != E or != Ng·N, unequal widths inside a group, ...).
  void validate() const;

  // Width of group g (two-level layouts): expert_widths[g·N].
  int group_width(int g) const { return expert_widths[(size_t)g * experts_per_group]; }
};

// How a run config gives the expert widths when [moe] does not list expert_widths (SPEC §2).
struct ExpertLayout {
  int expert_width = 512;                     // moe: every expert's width
  std::string width_strategy = "arithmetic";  // hmoe: relative sizes (expert_widths.h)
  int total_width = 4096;                     // hmoe: Σ W_e
  int width_multiple = 8;                     // hmoe: every W_e a multiple of this
  std::vector<int> group_widths;              // mohge: W_g; empty: start + g·step
  int group_width_start = 384;
  int group_width_step = 128;
};

const ConfigSchema<MoeConfig>& moe_schema();             // [moe]: routing, losses, widths; config.json
const ConfigSchema<ExpertLayout>& expert_layout_schema(); // [moe]: the width layout (TOML only)

// Reads the [moe] table `t` for an expert layout `kind` (none for a dense model: the keys are only
// checked) and derives num_experts, expert_widths and max_experts_per_tok from what it gives;
// MoeConfig::validate checks the result. Writes the resolved section into `resolved`.
MoeConfig moe_config_read(const toml::table& t, std::optional<MoeKind> kind, const std::string& source,
                          toml::table& resolved);
// The MoE keys of config.json (moe_schema's json names) for a model of expert layout `kind`.
MoeConfig moe_config_from_json(const nlohmann::json& j, MoeKind kind, const std::string& source);

}  // namespace mohge
