// defines: the CPU router kernels behind CpuBackend — router_forward, router_assign,
// router_backward (kernels/router.h: the rules and the tie convention; backend.h: the contracts).
// Per token in double, stored fp32; tokens in parallel (OpenMP), each token's arithmetic in a fixed
// order, so the results are the same bits for any thread count.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "kernels/ops.h"

namespace mohge {

namespace {

// tokens per parallel region below which threading costs more than it saves
constexpr int kParallelMinTokens = 64;

inline bool all_finite(const float* z, int n) {
  for (int i = 0; i < n; i++)
    if (!std::isfinite(z[i])) return false;
  return true;
}

// Sort `idx` (first `count` kept) by key descending, index ascending on ties.
template <class Key>
inline void select_top(int* idx, int n, int count, const Key& key) {
  auto before = [&](int a, int b) { return key(a) > key(b) || (key(a) == key(b) && a < b); };
  if (count < n)
    std::partial_sort(idx, idx + count, idx + n, before);
  else
    std::sort(idx, idx + n, before);
}

// per-thread scratch, allocated once per call (not per token)
struct Scratch {
  std::vector<int> idx, gidx;          // [E], [Ng]
  std::vector<double> pd, ex, gd;      // [E] full softmax, [E] exponentials / combined scores, [Ng]
  std::vector<double> gmax, gsum;      // [G] per-group max logit and Σ exp
  Scratch(int E, int Ng) : idx(E), gidx(std::max(Ng, 1)), pd(E), ex(E), gd(std::max(Ng, 1)),
                           gmax(std::max(Ng, 1)), gsum(std::max(Ng, 1)) {}
};

// Per-token routing into cache.sel / sel_w / nsel (and the two-level cache rows).
void route_token(const RouterSpec& spec, int t, const float* z, const float* y, const RouterTensors& c, Scratch& s) {
  const int E = spec.E, S = spec.max_sel();
  const bool two = spec.two_level();
  int32_t* sel = c.sel + (size_t)t * S;
  float* sel_w = c.sel_w + (size_t)t * S;
  int* idx = s.idx.data();
  double *pd = s.pd.data(), *ex = s.ex.data();

  // Full softmax P over E (every router; the P̄ losses) and its entropy. The exponentials are taken
  // against each group's own max (ungrouped routers: one group of E), so the two-level in-group
  // softmax below reuses them exactly, even for a group far below the global max.
  const int G = two ? spec.Ng : 1, NG = two ? spec.group_size() : E;
  double M = -INFINITY;
  for (int g = 0; g < G; g++) {
    float m = z[g * NG];
    for (int i = 1; i < NG; i++) m = std::max(m, z[g * NG + i]);
    s.gmax[g] = m;
    M = std::max(M, (double)m);
  }
  double Z = 0.0;
  for (int g = 0; g < G; g++) {
    double sg = 0.0;
    for (int i = 0; i < NG; i++) sg += ex[g * NG + i] = std::exp((double)z[g * NG + i] - s.gmax[g]);
    s.gsum[g] = sg;
    Z += sg * (G == 1 ? 1.0 : std::exp(s.gmax[g] - M));
  }
  // H = −Σ P log P with log P_e = z_e − M − log Z: no per-expert log
  double zp = 0.0;
  float* prow = c.probs + (size_t)t * E;
  for (int g = 0; g < G; g++) {
    const double scale = (G == 1 ? 1.0 : std::exp(s.gmax[g] - M)) / Z;
    for (int i = 0; i < NG; i++) {
      const int e = g * NG + i;
      pd[e] = ex[e] * scale;
      prow[e] = (float)pd[e];
      zp += pd[e] * ((double)z[e] - M);
    }
  }
  c.entropy[t] = (float)(std::log(Z) - zp);

  int k = 0;
  if (!two) {
    std::iota(idx, idx + E, 0);
    auto logit = [&](int e) { return z[e]; };
    if (spec.rule == RouterRule::top_k) {
      k = spec.K;
      select_top(idx, E, k, logit);
    } else {
      const int max_k = spec.max_k;
      select_top(idx, E, E, logit);
      if (spec.p >= 1.0) {
        k = max_k;  // cumsum ≥ 1 is reached only at the end, or not at all by rounding: keep all allowed
      } else {
        double cum = 0.0;
        k = 0;
        while (k < E) {
          cum += pd[idx[k]];
          k++;
          if (cum >= spec.p) break;
        }
        k = std::clamp(k, 1, max_k);
      }
    }
    std::sort(idx, idx + k);
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += pd[idx[j]];
    for (int j = 0; j < k; j++) {
      sel[j] = idx[j];
      sel_w[j] = (float)(pd[idx[j]] / sum);
    }
  } else {
    const int Ng = spec.Ng, N = spec.group_size(), Kg = spec.Kg;
    int* gidx = s.gidx.data();
    double* gd = s.gd.data();
    double* cd = ex;  // the combined scores overwrite the exponentials of the selected groups
    // 1. group scores and the top-Kg groups (ranked by logit = ranked by sigmoid)
    float* sig = c.group_sig + (size_t)t * Ng;
    float* gp = c.group_probs + (size_t)t * Ng;
    float ym = y[0];
    for (int g = 1; g < Ng; g++) ym = std::max(ym, y[g]);
    double ysum = 0.0;
    for (int g = 0; g < Ng; g++) ysum += gd[g] = std::exp((double)y[g] - ym);
    for (int g = 0; g < Ng; g++) gp[g] = (float)(gd[g] / ysum);
    for (int g = 0; g < Ng; g++) {
      gd[g] = 1.0 / (1.0 + std::exp(-(double)y[g]));
      sig[g] = (float)gd[g];
    }
    std::iota(gidx, gidx + Ng, 0);
    select_top(gidx, Ng, Kg, [&](int g) { return y[g]; });
    std::sort(gidx, gidx + Kg);
    int32_t* grow = c.groups + (size_t)t * Kg;
    double sig_sum = 0.0;
    for (int j = 0; j < Kg; j++) {
      grow[j] = gidx[j];
      sig_sum += gd[gidx[j]];
    }
    // 2-3. in-group softmax s = exp / group sum and combined score c = s·σ_g/Σσ, selected groups only
    float* srow = c.ingroup + (size_t)t * E;
    float* crow = c.combined + (size_t)t * E;
    std::fill(srow, srow + E, 0.0f);
    std::fill(crow, crow + E, 0.0f);
    int ncand = 0;
    for (int j = 0; j < Kg; j++) {
      const int g = gidx[j];
      const double inv = 1.0 / s.gsum[g], q = gd[g] / sig_sum;
      for (int i = 0; i < N; i++) {
        const int e = g * N + i;
        const double sv = ex[e] * inv;
        srow[e] = (float)sv;
        cd[e] = sv * q;
        crow[e] = (float)cd[e];
        idx[ncand++] = e;
      }
    }
    // 4. global top-K of c over the selected groups' entries
    k = spec.K;
    select_top(idx, ncand, k, [&](int e) { return cd[e]; });
    std::sort(idx, idx + k);
    // 5. gate normalisation over the kept c values
    if (spec.softmax_gate) {
      double m = cd[idx[0]];
      for (int j = 1; j < k; j++) m = std::max(m, cd[idx[j]]);
      double sum = 0.0;
      for (int j = 0; j < k; j++) sum += std::exp(cd[idx[j]] - m);
      for (int j = 0; j < k; j++) {
        sel[j] = idx[j];
        sel_w[j] = (float)(std::exp(cd[idx[j]] - m) / sum);
      }
    } else {
      double sum = 0.0;
      for (int j = 0; j < k; j++) sum += cd[idx[j]];
      for (int j = 0; j < k; j++) {
        sel[j] = idx[j];
        sel_w[j] = (float)(cd[idx[j]] / sum);
      }
    }
  }
  c.nsel[t] = k;
}

}  // namespace

void router_forward(const RouterSpec& spec, const RouterTensors& r, const float* expert_logits,
                    const float* group_logits, int T) {
  const bool two = spec.two_level();
  const int E = spec.E, Ng = two ? spec.Ng : 0;
#pragma omp parallel if (T >= kParallelMinTokens)
  {
    Scratch scratch(E, Ng);
#pragma omp for schedule(static)
    for (int t = 0; t < T; t++) {
      const float* z = expert_logits + (size_t)t * E;
      const float* y = two ? group_logits + (size_t)t * Ng : nullptr;
      if (!all_finite(z, E) || (two && !all_finite(y, Ng))) {
        r.nsel[t] = -1;
        continue;
      }
      route_token(spec, t, z, y, r, scratch);
    }
  }
}

void router_assign(const RouterSpec& spec, const RouteAssignments& out, double* stats, const RouterTensors& r,
                   const int32_t* slot, int T) {
  const int E = spec.E, S = spec.max_sel();
  const int Ng = spec.two_level() ? spec.Ng : 0, Kg = spec.two_level() ? spec.Kg : 0;
  // CSR: a token with non-finite logits (nsel −1) has no assignment
  int bad = -1;
  out.offsets[0] = 0;
  for (int t = 0; t < T; t++) {
    if (r.nsel[t] < 0 && bad < 0) bad = t;
    out.offsets[t + 1] = out.offsets[t] + std::max(r.nsel[t], 0);
  }
  const int A = out.offsets[T];
#pragma omp parallel for schedule(static) if (T >= kParallelMinTokens)
  for (int t = 0; t < T; t++) {
    const int o = out.offsets[t], k = out.offsets[t + 1] - o;
    for (int j = 0; j < k; j++) {
      out.expert[o + j] = r.sel[(size_t)t * S + j];
      out.weight[o + j] = r.sel_w[(size_t)t * S + j];
    }
  }
  std::vector<int> n_e(E, 0), n_g(Ng, 0);
  for (int a = 0; a < A; a++) n_e[out.expert[a]]++;
  for (int t = 0; t < T; t++)
    if (r.nsel[t] >= 0)
      for (int j = 0; j < Kg; j++) n_g[r.groups[(size_t)t * Kg + j]]++;
  for (int e = 0; e < E; e++) stats[e] = n_e[e];
  for (int g = 0; g < Ng; g++) stats[E + g] = n_g[g];
  stats[E + Ng] = T, stats[E + Ng + 1] = A, stats[E + Ng + 2] = bad;
  // send layout: counting sort by slot, stable in token order
  std::vector<int> fill(E, 0), rows(E, 0);
  for (int e = 0; e < E; e++) rows[slot ? slot[e] : e] = n_e[e];
  for (int s = 1; s < E; s++) fill[s] = fill[s - 1] + rows[s - 1];
  for (int t = 0; t < T; t++)
    for (int j = out.offsets[t]; j < out.offsets[t + 1]; j++) {
      const int e = out.expert[j];
      const int p = fill[slot ? slot[e] : e]++;
      out.pos[j] = p;
      out.send_token[p] = t;
    }
}

void router_backward(const RouterSpec& spec, float* dexpert_logits, float* dgroup_logits, const float* dweight,
                     const RouterTensors& cache, const RouteAssignments& routing, int T) {
  const int E = spec.E;
  if (T == 0) return;
  if (!spec.two_level()) {
    // w = softmax over the kept logits: dz_j = w_j (dw_j − Σ_i w_i dw_i) for kept j
#pragma omp parallel for schedule(static) if (T >= kParallelMinTokens)
    for (int t = 0; t < T; t++) {
      const int a0 = routing.offsets[t], a1 = routing.offsets[t + 1];
      double dot = 0.0;
      for (int a = a0; a < a1; a++) dot += (double)routing.weight[a] * dweight[a];
      float* dz = dexpert_logits + (size_t)t * E;
      for (int a = a0; a < a1; a++)
        dz[routing.expert[a]] += (float)((double)routing.weight[a] * ((double)dweight[a] - dot));
    }
    return;
  }

  MOHGE_CHECK(dgroup_logits != nullptr, "router_backward: two_level routing needs dgroup_logits");
  const int Ng = spec.Ng, N = spec.group_size(), Kg = spec.Kg;
  const bool softmax_norm = spec.softmax_gate;
#pragma omp parallel if (T >= kParallelMinTokens)
  {
    std::vector<double> ds(E, 0.0), dq(Ng, 0.0);
#pragma omp for schedule(static)
    for (int t = 0; t < T; t++) {
      const int a0 = routing.offsets[t], a1 = routing.offsets[t + 1];
      const float* s = cache.ingroup + (size_t)t * E;
      const float* c = cache.combined + (size_t)t * E;
      const float* sig = cache.group_sig + (size_t)t * Ng;
      const int32_t* grp = cache.groups + (size_t)t * Kg;
      float* dz = dexpert_logits + (size_t)t * E;
      float* dy = dgroup_logits + (size_t)t * Ng;

      double sig_sum = 0.0;
      for (int j = 0; j < Kg; j++) sig_sum += sig[grp[j]];
      double dot = 0.0, csum = 0.0;
      for (int a = a0; a < a1; a++) {
        dot += (double)routing.weight[a] * dweight[a];
        csum += c[routing.expert[a]];
      }
      // w -> c -> (s, q_g = σ_g / Σσ)
      for (int a = a0; a < a1; a++) {
        const int e = routing.expert[a], g = e / N;
        const double dc = softmax_norm ? (double)routing.weight[a] * ((double)dweight[a] - dot)
                                       : ((double)dweight[a] - dot) / csum;
        ds[e] = dc * (double)sig[g] / sig_sum;
        dq[g] += dc * (double)s[e];
      }
      // in-group softmax: dz_j = s_j (ds_j − Σ_i ds_i s_i) over the group's N logits
      double qdot = 0.0;
      for (int j = 0; j < Kg; j++) {
        const int g = grp[j];
        double sdot = 0.0;
        bool any = false;
        for (int i = 0; i < N; i++) {
          sdot += ds[g * N + i] * (double)s[g * N + i];
          any = any || ds[g * N + i] != 0.0;
        }
        if (any)
          for (int i = 0; i < N; i++) {
            const int e = g * N + i;
            dz[e] += (float)((double)s[e] * (ds[e] - sdot));
            ds[e] = 0.0;
          }
        qdot += dq[g] * (double)sig[g] / sig_sum;
      }
      // q_g = σ_g / Σ_{h∈S} σ_h: dσ_h = (dq_h − Σ_g dq_g q_g) / Σσ; σ' = σ(1 − σ)
      for (int j = 0; j < Kg; j++) {
        const int g = grp[j];
        const double dsig = (dq[g] - qdot) / sig_sum;
        dy[g] += (float)(dsig * (double)sig[g] * (1.0 - (double)sig[g]));
        dq[g] = 0.0;
      }
    }
  }
}

}  // namespace mohge
