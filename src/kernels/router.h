// defines: mohge::RouterSpec, AuxLossSpec, RouterTensors, RouteAssignments — the plain parameters
// of the Backend's router and auxiliary-loss ops (kernels/backend.h), one MoE layer and one
// micro-batch of N tokens (SPEC §3, §4). The MoE layer (moe/) turns its MoeConfig into these.
//
// Rules (probabilities in double, stored fp32):
//   top_k:     P = softmax(z); keep the K largest; w = P_i / Σ_kept P.
//   top_p:     sort P descending; keep the smallest prefix with cumsum ≥ p (the crossing expert is
//              kept), clamped to [1, max_k]; w = P_i / Σ_kept P. p = 1 keeps max_k experts.
//              The cumsum is compared exactly (double, no slack): a prefix that sums to p exactly
//              stops there.
//   two_level: σ = sigmoid(y); keep the top-Kg groups S; s = softmax over each group's E/Ng
//              logits; c_{g,i} = s_{g,i}·σ_g / Σ_{h∈S} σ_h for g ∈ S; keep the global top-K of c
//              over S's entries (no per-group quota); w = softmax(c_kept) (softmax_gate) or
//              c / Σ c_kept (renorm).
// Ties: every selection orders by (score descending, index ascending), so of equal scores the
// lower expert / group index wins. top_k and top_p rank by the logit (same order as P, without
// rounding ties); two_level ranks groups by the group logit and experts by c. Being a strict total
// order, any selection algorithm returns the same set.
//
// Gradients: the kept set is discrete (no gradient). For top_k / top_p, w is the softmax over the
// kept logits, so only kept logits get gradient. For two_level, gradient flows from w through c into
// the in-group softmax (all logits of each group holding a kept expert) and through σ_g / Σσ into
// the group logits of all Kg selected groups.
//
// Auxiliary losses (coefficient-1 values; P̄_e = mean_t P_{t,e}; counts n carry no gradient):
//   load_balance   E · Σ_e f_e · P̄_e,               f_e = n_e / Σ n
//   p_penalty      E · Σ_e f_e · (W_e / W̄) · P̄_e,   W̄ = mean expert width
//   router_entropy mean_t ( −Σ_e P_{t,e} log P_{t,e} )
//   group          Ng · Σ_g ω_g · Q̄_g · f_g,        Q = softmax(group logits), f_g = n_g / (T·Kg)
//   intra_group    (Kg·N) · Σ_e w̄_e · f_e,           w̄_e = mean_t of the sparse gate w, f_e = n_e / (T·K)
// The counts come from a route-stats array (below): this micro-batch's (router_assign's) or
// global ones summed over a step on the host and uploaded.
#pragma once
#include <cstdint>

namespace mohge {

enum class RouterRule { top_k, top_p, two_level };

struct RouterSpec {
  RouterRule rule = RouterRule::top_k;
  int E = 0;                  // experts
  int K = 0;                  // experts kept per token (top_k, two_level)
  double p = 1.0;             // top_p threshold, in (0, 1]
  int max_k = 0;              // top_p: most experts kept
  int Ng = 0, Kg = 0;         // two_level: groups (E = Ng · E/Ng), groups kept; 0 otherwise
  bool softmax_gate = true;   // two_level gate normalisation: softmax, else renorm
  constexpr bool two_level() const { return rule == RouterRule::two_level; }
  constexpr int max_sel() const { return rule == RouterRule::top_p ? max_k : K; }  // S: selections per token, at most
  constexpr int group_size() const { return E / Ng; }
};

// Route stats, doubles [E + Ng + 3]: n_e (assignments per expert) [E], n_g (tokens whose selected
// groups hold g) [Ng], tokens, assignments, and the first token with a non-finite logit (−1 if
// none). The aux-loss ops read the first E + Ng + 2.
constexpr int route_stats_size(int E, int Ng) { return E + Ng + 3; }

// Coefficients of the auxiliary losses; a term is active when its coefficient is > 0, the group
// term when group_active (two-level, coefficient > 0, step >= its start step).
struct AuxLossSpec {
  double lb = 0, pp = 0, entropy = 0, group = 0, intra = 0;
  bool group_active = false;
  const double* widths = nullptr;       // backend memory [E]: W_e
  double mean_width = 1;                // W̄
  const double* group_omega = nullptr;  // backend memory [Ng]: ω_g = (W_g − W_min + Δ)/Δ (two_level)
};

// Per-token router outputs, backend memory; the two-level ones only for two_level (else unused).
struct RouterTensors {
  float* probs = nullptr;        // [N,E] full softmax of the expert logits
  float* entropy = nullptr;      // [N]   −Σ_e P log P
  int32_t* sel = nullptr;        // [N,S] selected experts, ascending (S = max_sel)
  float* sel_w = nullptr;        // [N,S] their gate weights
  int32_t* nsel = nullptr;       // [N]   selections; −1 for a token with a non-finite logit
  float* group_sig = nullptr;    // [N,Ng] sigmoid(group logits)
  float* group_probs = nullptr;  // [N,Ng] softmax(group logits)
  float* ingroup = nullptr;      // [N,E] in-group softmax s, 0 outside selected groups
  float* combined = nullptr;     // [N,E] combined score c, 0 outside selected groups
  int32_t* groups = nullptr;     // [N,Kg] selected groups, ascending
};

// The assignments in CSR over tokens and their send layout, backend memory sized for N·S: token
// t's assignments are j ∈ [offsets[t], offsets[t+1]), experts ascending; A = offsets[N]. The send
// layout sorts them by slot (slot[expert]: owning rank, then expert), stable in token order:
// assignment j goes to send row pos[j], which holds token send_token[pos[j]].
struct RouteAssignments {
  int32_t* offsets = nullptr;     // [N+1]
  int32_t* expert = nullptr;      // [A]
  float* weight = nullptr;        // [A] gate weight w
  int32_t* pos = nullptr;         // [A]
  int32_t* send_token = nullptr;  // [A]
};

// Values written by aux_loss_forward, doubles [kAuxValues]; total = Σ coef · value over the
// active terms (the intra-group term for two_level only).
enum AuxValue { kAuxLoadBalance, kAuxPPenalty, kAuxRouterEntropy, kAuxGroup, kAuxIntraGroup, kAuxTotal, kAuxValues };

}  // namespace mohge
