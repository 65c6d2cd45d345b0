// defines: the CPU auxiliary-loss kernels behind CpuBackend — aux_loss_forward, aux_loss_backward
// (kernels/router.h: the formulas; backend.h: the contracts). Sums in double in a fixed order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/ops.h"

namespace mohge {

namespace {

constexpr int kParallelMinTokens = 64;

// The count-derived fractions (no gradient), from route stats [E | Ng | tokens | assignments].
struct Fractions {
  std::vector<double> f_assign;  // [E]  n_e / Σn            (load balance, P-Penalty)
  std::vector<double> f_group;   // [Ng] n_g / (T·Kg)        (group)
  std::vector<double> f_tok;     // [E]  n_e / (T·K)         (intra-group)
};

Fractions fractions(const RouterSpec& spec, const double* stats) {
  const int E = spec.E;
  const bool two = spec.two_level();
  const int Ng = two ? spec.Ng : 0;
  Fractions f;
  f.f_assign.assign(E, 0.0);
  f.f_group.assign(Ng, 0.0);
  f.f_tok.assign(E, 0.0);
  const double tokens = stats[E + Ng], assigned = stats[E + Ng + 1];
  if (assigned > 0)
    for (int e = 0; e < E; e++) f.f_assign[e] = stats[e] / assigned;
  if (two && tokens > 0) {
    for (int g = 0; g < Ng; g++) f.f_group[g] = stats[E + g] / (tokens * spec.Kg);
    for (int e = 0; e < E; e++) f.f_tok[e] = stats[e] / (tokens * spec.K);
  }
  return f;
}

}  // namespace

void aux_loss_forward(const RouterSpec& spec, const AuxLossSpec& l, double* values, const RouterTensors& cache,
                      const RouteAssignments& r, const double* stats, int T) {
  const int E = spec.E;
  std::fill(values, values + kAuxValues, 0.0);
  if (T == 0) return;
  const Fractions f = fractions(spec, stats);
  double& load_balance = values[kAuxLoadBalance];
  double& p_penalty = values[kAuxPPenalty];
  double& group = values[kAuxGroup];
  double& intra_group = values[kAuxIntraGroup];

  std::vector<double> pbar(E, 0.0);
  for (int t = 0; t < T; t++)
    for (int e = 0; e < E; e++) pbar[e] += cache.probs[(size_t)t * E + e];
  for (double& v : pbar) v /= T;
  const double wbar = l.mean_width;
  for (int e = 0; e < E; e++) {
    load_balance += E * f.f_assign[e] * pbar[e];
    p_penalty += E * f.f_assign[e] * (l.widths[e] / wbar) * pbar[e];
  }
  double ent = 0.0;
  for (int t = 0; t < T; t++) ent += cache.entropy[t];
  values[kAuxRouterEntropy] = ent / T;

  if (spec.two_level()) {
    const int Ng = spec.Ng, N = spec.group_size(), Kg = spec.Kg;
    std::vector<double> qbar(Ng, 0.0), wsum(E, 0.0);
    for (int t = 0; t < T; t++)
      for (int g = 0; g < Ng; g++) qbar[g] += cache.group_probs[(size_t)t * Ng + g];
    for (int g = 0; g < Ng; g++) group += Ng * l.group_omega[g] * (qbar[g] / T) * f.f_group[g];
    for (int a = 0; a < r.offsets[T]; a++) wsum[r.expert[a]] += r.weight[a];
    for (int e = 0; e < E; e++) intra_group += (double)Kg * N * (wsum[e] / T) * f.f_tok[e];
  }

  values[kAuxTotal] = l.lb * load_balance + l.pp * p_penalty + l.entropy * values[kAuxRouterEntropy] +
                      (l.group_active ? l.group * group : 0.0) + (spec.two_level() ? l.intra * intra_group : 0.0);
}

void aux_loss_backward(const RouterSpec& spec, const AuxLossSpec& l, float* dweight, float* dexpert_logits,
                       float* dgroup_logits, const RouterTensors& cache, const RouteAssignments& r,
                       const double* stats, int T, float grad_scale) {
  const int E = spec.E;
  if (T == 0) return;
  const Fractions f = fractions(spec, stats);
  const double inv_T = (double)grad_scale / T;

  // load balance + P-Penalty: L = Σ_e a_e P̄_e with a_e constant, so
  // dL/dz_{t,k} = (1/T) P_{t,k} (a_k − Σ_e a_e P_{t,e}); entropy: dH_t/dz_k = −P_k (log P_k + H_t)
  const bool lin = l.lb > 0.0 || l.pp > 0.0;
  const bool ent = l.entropy > 0.0;
  if (lin || ent) {
    std::vector<double> a(E, 0.0);
    const double wbar = l.mean_width;
    for (int e = 0; e < E; e++) a[e] = inv_T * E * f.f_assign[e] * (l.lb + l.pp * l.widths[e] / wbar);
    const double s_ent = inv_T * l.entropy;
#pragma omp parallel for schedule(static) if (T >= kParallelMinTokens)
    for (int t = 0; t < T; t++) {
      const float* p = cache.probs + (size_t)t * E;
      float* dz = dexpert_logits + (size_t)t * E;
      double dot = 0.0;
      for (int e = 0; e < E; e++) dot += a[e] * p[e];
      const double h = cache.entropy[t];
      for (int e = 0; e < E; e++) {
        double g = (double)p[e] * (a[e] - dot);
        if (ent && p[e] > 0.0f) g -= s_ent * (double)p[e] * (std::log((double)p[e]) + h);
        dz[e] += (float)g;
      }
    }
  }

  if (!spec.two_level()) return;
  const int Ng = spec.Ng, N = spec.group_size(), Kg = spec.Kg;

  // group: L = Σ_g b_g Q̄_g; dL/dy_{t,g} = (1/T) Q_{t,g} (b_g − Σ_h b_h Q_{t,h})
  if (l.group_active) {
    MOHGE_CHECK(dgroup_logits != nullptr, "aux loss: the group loss needs dgroup_logits");
    std::vector<double> b(Ng);
    for (int g = 0; g < Ng; g++) b[g] = inv_T * l.group * Ng * l.group_omega[g] * f.f_group[g];
#pragma omp parallel for schedule(static) if (T >= kParallelMinTokens)
    for (int t = 0; t < T; t++) {
      const float* q = cache.group_probs + (size_t)t * Ng;
      float* dy = dgroup_logits + (size_t)t * Ng;
      double dot = 0.0;
      for (int g = 0; g < Ng; g++) dot += b[g] * q[g];
      for (int g = 0; g < Ng; g++) dy[g] += (float)((double)q[g] * (b[g] - dot));
    }
  }

  // intra-group: L = (Kg·N) Σ_e f_e (1/T) Σ_{a→e} w_a, so dL/dw_a = (Kg·N) f_{e_a} / T; the router's
  // backward carries it on to the logits
  if (l.intra > 0.0) {
    MOHGE_CHECK(dweight != nullptr, "aux loss: the intra-group loss needs dweight");
    const int A = r.offsets[T];
    const double s = inv_T * l.intra * Kg * N;
    for (int a = 0; a < A; a++) dweight[a] += (float)(s * f.f_tok[r.expert[a]]);
  }
}

}  // namespace mohge
