// defines: router_spec, RouterCache, route_tokens, routing_from, router_forward, router_backward
#include "moe/router.h"

#include "core/error.h"

namespace mohge {

RouterSpec router_spec(const MoeConfig& cfg) {
  RouterSpec s;
  s.rule = cfg.router == RouterKind::top_k ? RouterRule::top_k
           : cfg.router == RouterKind::top_p ? RouterRule::top_p
                                             : RouterRule::two_level;
  s.E = cfg.num_experts;
  s.K = cfg.num_experts_per_tok;
  s.p = cfg.top_p;
  s.max_k = cfg.max_experts_per_tok;
  if (s.two_level()) s.Ng = cfg.num_expert_groups, s.Kg = cfg.topk_group;
  s.softmax_gate = cfg.gate_norm == GateNorm::softmax;
  return s;
}

RouterTensors RouterCache::tensors() {
  return {probs.data(),     entropy.data(),     sel.data(),     sel_w.data(),    nsel.data(),
          group_sig.data(), group_probs.data(), ingroup.data(), combined.data(), groups.data()};
}

RouteAssignments RouterCache::assignments() {
  return {offsets.data(), expert.data(), weight.data(), pos.data(), send_token.data()};
}

void route_tokens(Backend& be, const RouterSpec& spec, const float* expert_logits, const float* group_logits,
                  int T, const int32_t* slot, RouterCache& c) {
  MOHGE_CHECK(T >= 0, "router: T = {} must be >= 0", T);
  const bool two = spec.two_level();
  const int E = spec.E, Ng = spec.Ng, Kg = spec.Kg, S = spec.max_sel();
  MOHGE_CHECK(T == 0 || expert_logits != nullptr, "router: expert_logits is null");
  MOHGE_CHECK(!two || T == 0 || group_logits != nullptr, "router: two_level routing needs group_logits");
  c.spec = spec, c.T = T;
  const size_t TE = (size_t)T * E, TS = (size_t)T * S;
  c.probs.ensure(be, TE), c.entropy.ensure(be, T), c.sel.ensure(be, TS), c.sel_w.ensure(be, TS);
  c.nsel.ensure(be, T), c.group_sig.ensure(be, (size_t)T * Ng), c.group_probs.ensure(be, (size_t)T * Ng);
  c.ingroup.ensure(be, two ? TE : 0), c.combined.ensure(be, two ? TE : 0), c.groups.ensure(be, (size_t)T * Kg);
  c.offsets.ensure(be, T + 1), c.expert.ensure(be, TS), c.weight.ensure(be, TS), c.pos.ensure(be, TS);
  c.send_token.ensure(be, TS);
  const int n_stats = route_stats_size(E, Ng);
  c.stats.ensure(be, n_stats);
  be.router_forward(spec, c.tensors(), expert_logits, group_logits, T);
  be.router_assign(spec, c.assignments(), c.stats.data(), c.tensors(), slot, T);
  c.host_stats.resize(n_stats);
  c.stats.download(c.host_stats.data(), n_stats);
  const int bad_token = (int)c.host_stats[E + Ng + 2];
  MOHGE_CHECK(bad_token < 0, "router: non-finite router logit at token {}", bad_token);
}

void routing_from(const RouterCache& c, Routing& out) {
  const int T = c.T, E = c.spec.E, Ng = c.spec.Ng, A = c.num_assignments();
  out.T = T;
  out.offsets.resize(T + 1), out.expert.resize(A), out.weight.resize(A);
  static_assert(sizeof(int) == sizeof(int32_t));
  c.offsets.download(out.offsets.data(), T + 1);
  if (A) c.expert.download(out.expert.data(), A), c.weight.download(out.weight.data(), A);
  out.tokens_per_expert.resize(E), out.tokens_per_group.resize(Ng);
  for (int e = 0; e < E; e++) out.tokens_per_expert[e] = (int)c.host_stats[e];
  for (int g = 0; g < Ng; g++) out.tokens_per_group[g] = (int)c.host_stats[E + g];
}

void router_forward(const MoeConfig& cfg, const float* expert_logits, const float* group_logits, int T,
                    Routing& out, RouterCache& cache) {
  route_tokens(cpu_backend(), router_spec(cfg), expert_logits, group_logits, T, nullptr, cache);
  routing_from(cache, out);
}

void router_backward(const MoeConfig& cfg, RouterCache& cache, const Routing& routing, const float* dweight,
                     float* dexpert_logits, float* dgroup_logits) {
  const int T = routing.T, E = cfg.num_experts;
  MOHGE_CHECK(cache.T == T && cache.spec.E == E,
              "router_backward: cache is for T={}, E={} but routing has T={}, E={}", cache.T, cache.spec.E, T, E);
  MOHGE_CHECK(T == 0 || !cache.spec.two_level() || dgroup_logits != nullptr,
              "router_backward: two_level routing needs dgroup_logits");
  cpu_backend().router_backward(cache.spec, dexpert_logits, dgroup_logits, dweight, cache.tensors(),
                                cache.assignments(), T);
}

}  // namespace mohge
