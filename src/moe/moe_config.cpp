// defines: the [moe] schemas, MoeConfig::validate, moe_config_read / moe_config_from_json and the
//          enum helpers of moe_config.h
#include "moe/moe_config.h"

#include "core/config_schema.h"
#include "core/error.h"
#include "moe/expert_widths.h"

namespace mohge {

MoeKind moe_kind_from_string(std::string_view s) { return enum_from_string<MoeKind>(s, "moe kind"); }
RouterKind router_kind_from_string(std::string_view s) { return enum_from_string<RouterKind>(s, "router"); }
GateNorm gate_norm_from_string(std::string_view s) { return enum_from_string<GateNorm>(s, "gate_norm"); }

std::span<const MoeKind> enum_values(MoeKind) {
  static constexpr MoeKind v[] = {MoeKind::moe, MoeKind::hmoe, MoeKind::mohge};
  return v;
}
std::span<const RouterKind> enum_values(RouterKind) {
  static constexpr RouterKind v[] = {RouterKind::top_k, RouterKind::top_p, RouterKind::two_level};
  return v;
}
std::span<const GateNorm> enum_values(GateNorm) {
  static constexpr GateNorm v[] = {GateNorm::softmax, GateNorm::renorm};
  return v;
}

const char* to_string(MoeKind k) {
  switch (k) {
    case MoeKind::moe: return "moe";
    case MoeKind::hmoe: return "hmoe";
    case MoeKind::mohge: return "mohge";
  }
  return "?";
}

const char* to_string(RouterKind k) {
  switch (k) {
    case RouterKind::top_k: return "top_k";
    case RouterKind::top_p: return "top_p";
    case RouterKind::two_level: return "two_level";
  }
  return "?";
}

const char* to_string(GateNorm k) {
  switch (k) {
    case GateNorm::softmax: return "softmax";
    case GateNorm::renorm: return "renorm";
  }
  return "?";
}

// Upper bounds: far above any published MoE (DeepSeek-V3: 256 experts of width 2048), low enough
// that no layer's tensors or buffers can exhaust memory by themselves.
constexpr int kMaxExperts = 1024, kMaxExpertWidth = 1 << 20;

const ConfigSchema<MoeConfig>& moe_schema() {
  using M = MoeConfig;
  static const ConfigSchema<M> schema{
      "moe",
      "The mixture-of-experts layers (when `model.ffn_kind` is not dense): layout, routing (SPEC §3) "
      "and auxiliary losses (SPEC §4; a coefficient of 0 switches a loss off). Written to config.json.",
      {
          {"num_experts", &M::num_experts, closed(1, kMaxExperts),
           "E; mohge: num_expert_groups × experts_per_group; with expert_widths: its length"},
          {"expert_widths", &M::expert_widths, closed(1, kMaxExpertWidth).at_most_items(kMaxExperts),
           "SwiGLU width of every expert; [] = from the width layout below", {.json_required = true}},
          {"num_expert_groups", &M::num_expert_groups, closed(1, kMaxExperts),
           "Ng, groups of equal-width experts (mohge)"},
          {"experts_per_group", &M::experts_per_group, closed(0, kMaxExperts),
           "N, experts per group (mohge: E = Ng·N, N ≥ 1)"},
          {"router", &M::router, {}, "routing rule: top_k (moe, hmoe), top_p (hmoe), two_level (mohge)",
           {.json_required = true, .default_text = "\"top_k\"; mohge: \"two_level\""}},
          {"num_experts_per_tok", &M::num_experts_per_tok, closed(1, kMaxExperts),
           "K, experts per token (top_k: ≤ E; two_level: ≤ topk_group × experts_per_group)"},
          {"top_p", &M::top_p, open_closed(0, 1), "p, the probability mass top_p routing covers"},
          {"max_experts_per_tok", &M::max_experts_per_tok, closed(1, kMaxExperts),
           "max_k, the most experts top_p routing picks (≤ E)", {.default_text = "num_experts"}},
          {"topk_group", &M::topk_group, closed(1, kMaxExperts), "Kg, groups per token (two_level; ≤ Ng)"},
          {"gate_norm", &M::gate_norm, {},
           "two_level gate weights: softmax over the chosen experts' logits, or renormalised probabilities"},
          {"shared_expert_width", &M::shared_expert_width, closed(0, kMaxExpertWidth),
           "width of a shared SwiGLU expert every token uses, ungated; 0 = none"},
          {"load_balance_coef", &M::lb_coef, at_least(0), "Switch load-balance loss (top_k, top_p)",
           {.json = "aux_loss_coefs.load_balance"}},
          {"p_penalty_coef", &M::pp_coef, at_least(0), "P-Penalty loss, HMoE eq. 4 (top_k, top_p)",
           {.json = "aux_loss_coefs.p_penalty"}},
          {"entropy_coef", &M::entropy_coef, at_least(0), "router entropy, minimised, HMoE eq. 5 (top_k, top_p)",
           {.json = "aux_loss_coefs.router_entropy"}},
          {"group_coef", &M::group_coef, at_least(0), "α_G, group-wise balance loss (two_level)",
           {.json = "aux_loss_coefs.group"}},
          {"group_delta", &M::group_delta, greater(0), "Δ of the group weights ω_g = (W_g − W_min + Δ)/Δ",
           {.json = "group_loss_delta"}},
          {"group_loss_start_step", &M::group_loss_start_step, at_least(0),
           "the group-wise loss is on from this step"},
          {"intra_group_coef", &M::intra_coef, at_least(0), "α_E, intra-group balance loss (two_level)",
           {.json = "aux_loss_coefs.intra_group"}},
          {"global_batch_stats", &M::global_batch_stats, {},
           "balance counts over the micro-batches of the step so far instead of the micro-batch"},
      },
      {.in_json = true}};
  return schema;
}

const ConfigSchema<ExpertLayout>& expert_layout_schema() {
  using L = ExpertLayout;
  static const ConfigSchema<L> schema{
      "moe",
      "The width layout, used when `moe.expert_widths` is empty (SPEC §2; not in config.json, which "
      "stores the resulting expert_widths).",
      {
          {"expert_width", &L::expert_width, closed(1, kMaxExpertWidth), "moe: the width of every expert"},
          {"width_strategy", &L::width_strategy, one_of({"arithmetic", "geometric", "hybrid"}),
           "hmoe: relative expert sizes (9 + 2i; 2^i; half 1, a quarter 2, a quarter 4)"},
          {"total_width", &L::total_width, closed(1, kMaxExpertWidth), "hmoe: the sum of the expert widths"},
          {"width_multiple", &L::width_multiple, closed(1, 4096), "hmoe: every width a multiple of this"},
          {"group_widths", &L::group_widths, closed(1, kMaxExpertWidth).at_most_items(kMaxExperts),
           "mohge: the width of each group; [] = group_width_start + g × group_width_step"},
          {"group_width_start", &L::group_width_start, closed(1, kMaxExpertWidth), "mohge: the first group's width"},
          {"group_width_step", &L::group_width_step, closed(0, kMaxExpertWidth),
           "mohge: the width added per group"},
      }};
  return schema;
}

// Derives what [moe] leaves to the layout: num_experts and expert_widths (from the width layout
// unless listed), then max_experts_per_tok (E unless given).
static void derive_widths(MoeConfig& m, const ExpertLayout& lay, const KeySet& given) {
  const bool explicit_e = given.count("num_experts"), explicit_w = !m.expert_widths.empty();
  if (m.kind == MoeKind::mohge) {
    MOHGE_CHECK(m.experts_per_group > 0, "moe.experts_per_group must be > 0 for mohge");
    const long E = (long)m.num_expert_groups * m.experts_per_group;
    MOHGE_CHECK(E <= kMaxExperts, "moe.num_expert_groups × experts_per_group = {} × {} = {} exceeds the {} experts "
                "a layer may have", m.num_expert_groups, m.experts_per_group, E, kMaxExperts);
    MOHGE_CHECK(!explicit_e || m.num_experts == E, "moe.num_experts = {} but num_expert_groups × experts_per_group = {}",
                m.num_experts, E);
    m.num_experts = (int)E;
    auto gw = lay.group_widths.empty()
                  ? mohge_group_widths(m.num_expert_groups, lay.group_width_start, lay.group_width_step)
                  : mohge_group_widths(lay.group_widths);
    MOHGE_CHECK((int)gw.size() == m.num_expert_groups, "moe.group_widths has {} entries but num_expert_groups = {}",
                gw.size(), m.num_expert_groups);
    if (!explicit_w) m.expert_widths = mohge_expert_widths(gw, m.experts_per_group);
  } else if (explicit_w) {
    MOHGE_CHECK(!explicit_e || m.num_experts == (int)m.expert_widths.size(),
                "moe.expert_widths has {} entries but moe.num_experts = {}", m.expert_widths.size(), m.num_experts);
    m.num_experts = (int)m.expert_widths.size();
  } else if (m.kind == MoeKind::moe) {
    m.expert_widths.assign(m.num_experts, lay.expert_width);
  } else {
    m.expert_widths = hmoe_widths(lay.width_strategy, m.num_experts, lay.total_width, lay.width_multiple);
  }
  if (!given.count("max_experts_per_tok")) m.max_experts_per_tok = m.num_experts;
}

MoeConfig moe_config_read(const toml::table& t, std::optional<MoeKind> kind, const std::string& source,
                          toml::table& resolved) {
  reject_unknown_keys(t, source, {&moe_schema(), &expert_layout_schema()});
  MoeConfig m;
  ExpertLayout layout;
  if (kind == MoeKind::mohge) m.router = RouterKind::two_level;  // the grouped layout's default router
  const KeySet given = moe_schema().read_toml(t, m, source);
  expert_layout_schema().read_toml(t, layout, source);
  if (kind) {
    m.kind = *kind;
    derive_widths(m, layout, given);
  }
  resolved = moe_schema().to_toml(m);
  for (auto&& [k, v] : expert_layout_schema().to_toml(layout)) resolved.insert_or_assign(k, v);
  return m;
}

MoeConfig moe_config_from_json(const nlohmann::json& j, MoeKind kind, const std::string& source) {
  MoeConfig m;
  m.kind = kind;
  const KeySet given = moe_schema().read_json(j, m, source);
  if (!given.count("num_experts")) m.num_experts = (int)m.expert_widths.size();
  if (!given.count("max_experts_per_tok")) m.max_experts_per_tok = m.num_experts;
  return m;
}

void MoeConfig::validate() const {
  moe_schema().check(*this);
  const int E = num_experts;
  MOHGE_CHECK((int)expert_widths.size() == E,
              "moe.expert_widths has {} entries but num_experts = {}", expert_widths.size(), E);

  // layout <-> router consistency: two-level routing needs the grouped layout and vice versa
  if (kind == MoeKind::mohge)
    MOHGE_CHECK(router == RouterKind::two_level,
                "moe.kind 'mohge' needs router 'two_level' (got '{}')", to_string(router));
  if (router == RouterKind::two_level)
    MOHGE_CHECK(kind == MoeKind::mohge, "moe.router 'two_level' needs kind 'mohge' (got '{}')",
                to_string(kind));
  if (kind == MoeKind::moe)
    for (int e = 1; e < E; e++)
      MOHGE_CHECK(expert_widths[e] == expert_widths[0],
                  "moe.kind 'moe' needs equal expert_widths (expert_widths[{}] = {} != {}); "
                  "use kind 'hmoe' for heterogeneous widths",
                  e, expert_widths[e], expert_widths[0]);

  switch (router) {
    case RouterKind::top_k:
      MOHGE_CHECK(num_experts_per_tok >= 1 && num_experts_per_tok <= E,
                  "moe.num_experts_per_tok (K) = {} must be in [1, num_experts = {}]",
                  num_experts_per_tok, E);
      break;
    case RouterKind::top_p:
      MOHGE_CHECK(max_experts_per_tok >= 1 && max_experts_per_tok <= E,
                  "moe.max_experts_per_tok (max_k) = {} must be in [1, num_experts = {}]",
                  max_experts_per_tok, E);
      break;
    case RouterKind::two_level: {
      const int Ng = num_expert_groups, N = experts_per_group;
      MOHGE_CHECK(N >= 1, "moe.experts_per_group (N) = {} must be >= 1", N);
      MOHGE_CHECK((long)Ng * N == E,
                  "moe.num_expert_groups × experts_per_group = {} × {} = {} must equal num_experts = {}",
                  Ng, N, (long)Ng * N, E);
      for (int g = 0; g < Ng; g++)
        for (int i = 1; i < N; i++)
          MOHGE_CHECK(expert_widths[g * N + i] == expert_widths[g * N],
                      "moe.expert_widths must be constant inside a group: group {} has widths {} and {}",
                      g, expert_widths[g * N], expert_widths[g * N + i]);
      MOHGE_CHECK(topk_group >= 1 && topk_group <= Ng,
                  "moe.topk_group (Kg) = {} must be in [1, num_expert_groups = {}]", topk_group, Ng);
      MOHGE_CHECK(num_experts_per_tok >= 1 && num_experts_per_tok <= topk_group * N,
                  "moe.num_experts_per_tok (K) = {} must be in [1, topk_group × experts_per_group = {}]",
                  num_experts_per_tok, topk_group * N);
      break;
    }
  }

  if (router != RouterKind::two_level) {
    MOHGE_CHECK(group_coef == 0.0, "moe.group_coef = {} needs router 'two_level' (got '{}')", group_coef,
                to_string(router));
    MOHGE_CHECK(intra_coef == 0.0, "moe.intra_group_coef = {} needs router 'two_level' (got '{}')", intra_coef,
                to_string(router));
  } else {
    // SPEC §4 defines these over the router's full softmax over E, which the two-level router
    // does not have; its balance terms are the group-wise and intra-group losses.
    MOHGE_CHECK(lb_coef == 0.0 && pp_coef == 0.0 && entropy_coef == 0.0,
                "moe.load_balance_coef, p_penalty_coef and entropy_coef apply to the top_k and top_p "
                "routers; the two_level router uses group_coef and intra_group_coef");
  }
}

}  // namespace mohge
