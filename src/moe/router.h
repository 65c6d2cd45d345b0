// defines: mohge::Routing, RouterCache, router_spec, route_tokens, routing_from, router_forward,
//          router_backward
// Token -> expert routing for one MoE layer and one micro-batch (SPEC §3), given the router logits
// (the caller computes expert_logits = x·W_rᵀ and, for two-level, group_logits = x·W_Gᵀ). The
// rules, the tie convention and the gradients are those of the Backend's router ops
// (kernels/router.h); this file turns a MoeConfig into their parameters and keeps the routing's
// tensors on the backend (RouterCache). The host sees the route stats (the per-expert and
// per-group counts: one download per call) and, where asked, the per-token Routing.
#pragma once
#include <vector>

#include "kernels/backend.h"
#include "moe/moe_config.h"

namespace mohge {

// Routing result on the host, CSR over tokens. Token t's assignments are [offsets[t], offsets[t+1]),
// expert ids ascending within a token; A = offsets[T] assignments in all.
struct Routing {
  int T = 0;
  std::vector<int> offsets;            // [T+1]
  std::vector<int> expert;             // [A] expert id per assignment
  std::vector<float> weight;           // [A] gate weight w
  std::vector<int> tokens_per_expert;  // [E] n_e = assignments to expert e
  std::vector<int> tokens_per_group;   // [Ng] n_g = tokens whose selected groups contain g (two-level; else empty)
  int num_assignments() const { return offsets.empty() ? 0 : offsets[T]; }
};

RouterSpec router_spec(const MoeConfig& cfg);

// The router's tensors of one micro-batch on one backend (RouterTensors, RouteAssignments, route
// stats), grown as needed and reused between calls, and the route stats downloaded to the host.
struct RouterCache {
  RouterSpec spec;
  int T = 0;
  Buffer<float> probs, entropy, sel_w, group_sig, group_probs, ingroup, combined, weight;
  Buffer<int32_t> sel, nsel, groups, offsets, expert, pos, send_token;
  Buffer<double> stats;            // [route_stats_size] (kernels/router.h)
  std::vector<double> host_stats;  // its copy on the host
  RouterTensors tensors();
  RouteAssignments assignments();
  int num_assignments() const { return (int)host_stats[spec.E + spec.Ng + 1]; }
  int tokens_of_expert(int e) const { return (int)host_stats[e]; }
};

// Route T tokens on be: logits and group_logits (two_level; else may be null) are backend memory;
// slot[E] (backend memory, or null for slot = expert) orders the send layout. Ends with the one
// download of the route stats into cache.host_stats. Throws mohge::Error on a non-finite logit.
void route_tokens(Backend& be, const RouterSpec& spec, const float* expert_logits, const float* group_logits,
                  int T, const int32_t* slot, RouterCache& cache);

// The host Routing of the cache's last call (downloads the CSR on a device backend).
void routing_from(const RouterCache& cache, Routing& out);

// On the CPU backend, host memory: route_tokens, then routing_from. cfg must be validate()d.
void router_forward(const MoeConfig& cfg, const float* expert_logits, const float* group_logits, int T,
                    Routing& out, RouterCache& cache);

// On the CPU backend: dweight [A] = dL/dw per assignment (the MoE layer's dL/dw plus the
// intra-group loss's, see aux_loss.h) -> dexpert_logits [T,E] +=, dgroup_logits [T,Ng] +=
// (two_level only; may be nullptr otherwise).
void router_backward(const MoeConfig& cfg, RouterCache& cache, const Routing& routing, const float* dweight,
                     float* dexpert_logits, float* dgroup_logits);

}  // namespace mohge
