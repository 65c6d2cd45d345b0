// defines: MoeConfig::validate and the string <-> enum helpers of moe_config.h
#include "moe/moe_config.h"

#include <cmath>

#include "core/error.h"

namespace mohge {

MoeKind moe_kind_from_string(std::string_view s) {
  if (s == "moe") return MoeKind::moe;
  if (s == "hmoe") return MoeKind::hmoe;
  if (s == "mohge") return MoeKind::mohge;
  fail("unknown moe kind '{}' (valid: moe, hmoe, mohge)", s);
}

RouterKind router_kind_from_string(std::string_view s) {
  if (s == "top_k") return RouterKind::top_k;
  if (s == "top_p") return RouterKind::top_p;
  if (s == "two_level") return RouterKind::two_level;
  fail("unknown router '{}' (valid: top_k, top_p, two_level)", s);
}

GateNorm gate_norm_from_string(std::string_view s) {
  if (s == "softmax") return GateNorm::softmax;
  if (s == "renorm") return GateNorm::renorm;
  fail("unknown gate_norm '{}' (valid: softmax, renorm)", s);
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

static void check_coef(const char* key, double v) {
  MOHGE_CHECK(std::isfinite(v) && v >= 0.0, "moe.{} = {} must be a finite value >= 0", key, v);
}

void MoeConfig::validate() const {
  const int E = num_experts;
  MOHGE_CHECK(E >= 1, "moe.num_experts = {} must be >= 1", E);
  MOHGE_CHECK((int)expert_widths.size() == E,
              "moe.expert_widths has {} entries but num_experts = {}", expert_widths.size(), E);
  for (int e = 0; e < E; e++)
    MOHGE_CHECK(expert_widths[e] > 0, "moe.expert_widths[{}] = {} must be > 0", e, expert_widths[e]);
  MOHGE_CHECK(shared_expert_width >= 0, "moe.shared_expert_width = {} must be >= 0",
              shared_expert_width);

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
      MOHGE_CHECK(std::isfinite(top_p) && top_p > 0.0 && top_p <= 1.0,
                  "moe.top_p = {} must be in (0, 1]", top_p);
      MOHGE_CHECK(max_experts_per_tok >= 1 && max_experts_per_tok <= E,
                  "moe.max_experts_per_tok (max_k) = {} must be in [1, num_experts = {}]",
                  max_experts_per_tok, E);
      break;
    case RouterKind::two_level: {
      const int Ng = num_expert_groups, N = experts_per_group;
      MOHGE_CHECK(Ng >= 1, "moe.num_expert_groups (Ng) = {} must be >= 1", Ng);
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

  check_coef("load_balance_coef", lb_coef);
  check_coef("p_penalty_coef", pp_coef);
  check_coef("entropy_coef", entropy_coef);
  check_coef("group_coef", group_coef);
  check_coef("intra_group_coef", intra_coef);
  MOHGE_CHECK(std::isfinite(group_delta) && group_delta > 0.0, "moe.group_delta = {} must be > 0",
              group_delta);
  MOHGE_CHECK(group_loss_start_step >= 0, "moe.group_loss_start_step = {} must be >= 0",
              group_loss_start_step);
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
