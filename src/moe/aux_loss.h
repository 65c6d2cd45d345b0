// defines: mohge::AuxLossValues, mohge::BalanceStats, AuxLossParams, aux_loss_values, aux_loss_backward
// Auxiliary router losses of one MoE layer (SPEC §4), values and gradients wrt the router logits:
// the Backend's aux_loss ops (kernels/router.h) with the parameters of a MoeConfig.
//
// Notation: T tokens in the micro-batch, P = full softmax of the expert logits (RouterCache::probs,
// for every router kind), P̄_e = mean_t P_{t,e}; counts n carry no gradient.
//   load_balance   E · Σ_e f_e · P̄_e,               f_e = n_e / Σ n (realised assignments; = n_e/(T·K) for top-k)
//   p_penalty      E · Σ_e f_e · (W_e / W̄) · P̄_e,   W̄ = mean expert width (= load_balance for equal widths)
//   router_entropy mean_t ( −Σ_e P_{t,e} log P_{t,e} ) (minimised)
//   group          Ng · Σ_g ω_g · Q̄_g · f_g,        Q = softmax(group logits), f_g = n_g / (T·Kg),
//                                                    ω_g = (W_g − W_min + Δ)/Δ; two-level only
//   intra_group    (Kg·N) · Σ_e w̄_e · f_e,           w̄_e = mean_t of the sparse final gate w (0 if not kept),
//                                                    f_e = n_e / (T·K); two-level only
// Values are reported with coefficient 1 whenever they are defined (so they can be logged even when
// switched off); AuxLossValues::total = Σ coef·value over the active terms, which is what enters the
// training loss. A term is active when its coefficient is > 0; the group term additionally needs
// step >= group_loss_start_step.
//
// Call order in the MoE layer's backward:
//   dweight[a] = dL_lm/dw_a (from the expert outputs)
//   aux_loss_backward(..., dweight, dexpert_logits, dgroup_logits)  // adds the intra-group dL/dw into
//                                                                   // dweight, the P̄ losses into the logits
//   router_backward(..., dweight, dexpert_logits, dgroup_logits)    // w -> logits, incl. the intra-group part
//
// Global-batch statistics (global_batch_stats = true): the counts (n_e, n_g, T, Σn) that make up the
// f's come from a BalanceStats gathered over the whole step (all micro-batches, all data-parallel
// ranks) instead of the micro-batch; P̄ and w̄ stay micro-batch means (gradients are local), as in
// the "global-batch load balancing" recipe. Two phases:
//   1. stats.reset(cfg); for each micro-batch: stats.add(cache.host_stats); across ranks all-reduce
//      (sum) stats.pack() and unpack() the result;
//   2. per micro-batch: aux_loss_values / aux_loss_backward(..., &stats).
// How the engine gets the counts before backward (all forwards first, or last step's counts) is the
// engine's choice; these functions only need the finished counts.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moe/moe_config.h"
#include "moe/router.h"

namespace mohge {

struct AuxLossValues {
  // coefficient-1 values (0 where not defined for the router kind)
  double load_balance = 0.0;
  double p_penalty = 0.0;
  double router_entropy = 0.0;
  double group = 0.0;        // two-level only
  double intra_group = 0.0;  // two-level only
  double total = 0.0;        // Σ coef × value over active terms
  bool two_level = false;    // whether group / intra_group are defined
  // from the aux_loss_forward op's values [kAuxValues]
  static AuxLossValues from(const double* values, bool two_level);
  // coefficient-1 values by name, for logging: load_balance, p_penalty, router_entropy
  // (+ group, intra_group for two-level)
  std::map<std::string, double> terms() const;
};

// Sum of balance counts over many micro-batches / ranks. Plain sums, so merging is addition.
struct BalanceStats {
  std::vector<double> tokens_per_expert;  // [E] Σ n_e
  std::vector<double> tokens_per_group;   // [Ng] Σ n_g (two-level; else empty)
  double tokens = 0.0;                    // Σ T
  double assignments = 0.0;               // Σ A = Σ_e n_e

  void reset(const MoeConfig& cfg);
  // route_stats: one micro-batch's route stats (RouterCache::host_stats, kernels/router.h)
  void add(const std::vector<double>& route_stats);
  void merge(const BalanceStats& other);
  // flat [E | Ng | 2] view: an all-reduce (sum) across ranks, and the route-stats layout the
  // aux_loss ops read
  std::vector<double> pack() const;
  void unpack(const std::vector<double>& flat);
};

// The aux_loss ops' parameters for cfg at optimizer step `step` on one backend: the coefficients,
// and the expert widths and group weights ω_g in backend memory (uploaded once).
class AuxLossParams {
 public:
  AuxLossParams(Backend& be, const MoeConfig& cfg);
  AuxLossSpec spec(int64_t step) const;

 private:
  MoeConfig cfg_;
  Buffer<double> widths_, omega_;
  double mean_width_ = 1.0;
};

// Loss values for one micro-batch on the CPU backend. global: the step's counts (required when
// cfg.global_batch_stats), else nullptr (counts of this micro-batch).
AuxLossValues aux_loss_values(const MoeConfig& cfg, RouterCache& cache, const Routing& routing, int64_t step,
                              const BalanceStats* global = nullptr);

// Gradients of grad_scale × AuxLossValues::total on the CPU backend: dweight [A] += (intra-group),
// dexpert_logits [T,E] += (load balance, P-Penalty, entropy), dgroup_logits [T,Ng] += (group; may be
// nullptr unless the group term is active). grad_scale is dL_train/dL_aux (e.g. 1/grad_accum_steps).
void aux_loss_backward(const MoeConfig& cfg, RouterCache& cache, const Routing& routing, int64_t step,
                       float grad_scale, float* dweight, float* dexpert_logits, float* dgroup_logits,
                       const BalanceStats* global = nullptr);

}  // namespace mohge
