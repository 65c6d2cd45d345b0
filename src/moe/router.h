// defines: mohge::Routing, mohge::RouterCache, router_forward, router_backward
// Token -> expert routing for one MoE layer and one micro-batch (SPEC §3), given the router logits
// (the caller computes expert_logits = x·W_rᵀ and, for two-level, group_logits = x·W_Gᵀ).
//
// Rules (probabilities in double, stored fp32):
//   top_k:     P = softmax(z); keep the K largest; w = P_i / Σ_kept P.
//   top_p:     sort P descending; keep the smallest prefix with cumsum ≥ p (the crossing expert is
//              kept), clamped to [1, max_k]; w = P_i / Σ_kept P. p = 1 keeps max_k experts.
//              The cumsum is compared exactly (double, no slack): a prefix that sums to p exactly
//              stops there.
//   two_level: σ = sigmoid(y); keep the top-Kg groups S; s = softmax over each group's N logits;
//              c_{g,i} = s_{g,i}·σ_g / Σ_{h∈S} σ_h for g ∈ S; keep the global top-K of c over S's
//              entries (no per-group quota); w = softmax(c_kept) (gate_norm softmax) or
//              c / Σ c_kept (renorm).
// Ties: every selection orders by (score descending, index ascending), so of equal scores the
// lower expert / group index wins. top_k and top_p rank by the logit (same order as P, without
// rounding ties); two_level ranks groups by the group logit and experts by c.
//
// Gradients: the kept set is discrete (no gradient). For top_k / top_p, w is the softmax over the
// kept logits, so only kept logits get gradient. For two_level, gradient flows from w through c into
// the in-group softmax (all N logits of each group holding a kept expert) and through σ_g / Σσ into
// the group logits of all Kg selected groups.
#pragma once
#include <vector>

#include "moe/moe_config.h"

namespace mohge {

// Routing result, CSR over tokens. Token t's assignments are [offsets[t], offsets[t+1]), expert ids
// ascending within a token; A = offsets[T] assignments in all.
struct Routing {
  int T = 0;
  std::vector<int> offsets;            // [T+1]
  std::vector<int> expert;             // [A] expert id per assignment
  std::vector<float> weight;           // [A] gate weight w
  std::vector<int> tokens_per_expert;  // [E] n_e = assignments to expert e
  std::vector<int> tokens_per_group;   // [Ng] n_g = tokens whose selected groups contain g (two-level; else empty)
  int num_assignments() const { return offsets.empty() ? 0 : offsets[T]; }
};

// What backward and the auxiliary losses need, stored by router_forward. Buffers are reused
// between calls (resize only), so steady-state routing does not allocate.
struct RouterCache {
  int T = 0, E = 0, Ng = 0, Kg = 0;
  std::vector<float> probs;        // [T,E] full softmax of the expert logits (all routers; P̄ losses)
  std::vector<float> entropy;      // [T] −Σ_e P log P of that softmax (router-entropy loss)
  std::vector<float> group_sig;    // [T,Ng] sigmoid(group logits)                   (two-level)
  std::vector<float> group_probs;  // [T,Ng] softmax(group logits), group-wise loss   (two-level)
  std::vector<float> ingroup;      // [T,E] in-group softmax s, 0 outside selected groups (two-level)
  std::vector<float> combined;     // [T,E] combined score c, 0 outside selected groups   (two-level)
  std::vector<int> groups;         // [T,Kg] selected groups, ascending                   (two-level)
  // scratch for packing the variable-length selection into CSR
  std::vector<int> sel;            // [T,max_sel] selected experts, ascending
  std::vector<float> sel_w;        // [T,max_sel] their gate weights
  std::vector<int> nsel;           // [T]
};

// Route T tokens. expert_logits [T,E]; group_logits [T,Ng] for two_level, else ignored (may be
// nullptr). Throws mohge::Error on a non-finite logit. cfg must be validate()d.
void router_forward(const MoeConfig& cfg, const float* expert_logits, const float* group_logits, int T,
                    Routing& out, RouterCache& cache);

// dweight [A] = dL/dw per assignment (the MoE layer's dL/dw plus the intra-group loss's, see
// aux_loss.h) -> dexpert_logits [T,E] +=, dgroup_logits [T,Ng] += (two_level only; may be nullptr
// otherwise).
void router_backward(const MoeConfig& cfg, const RouterCache& cache, const Routing& routing, const float* dweight,
                     float* dexpert_logits, float* dgroup_logits);

}  // namespace mohge
