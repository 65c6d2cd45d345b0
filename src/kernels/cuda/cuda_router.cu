// defines: the MoE router and auxiliary-loss kernels of the CUDA backend (kernels/router.h: the
// rules; backend.h: the contracts). One thread per token for the routing and its backward (the
// arithmetic of ops' CPU code, in double; selections by repeated arg-max under the strict order
// (score descending, index ascending), so no per-thread arrays), block reductions in a fixed order
// for every sum over tokens or assignments, and a stable send layout from per-expert block scans:
// no atomics, the same bits on every run.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mohge::cuda {

namespace {

// Whether (v, i) comes after (pv, pi) in the order (value descending, index ascending).
__device__ inline bool after(double v, int i, double pv, int pi) { return v < pv || (v == pv && i > pi); }

// The best entry of key[0..n) (key(i); −inf = not a candidate) that comes after (pv, pi); −1 if none.
template <class Key>
__device__ inline int next_best(int n, const Key& key, double pv, int pi) {
  int best = -1;
  double bv = 0;
  for (int i = 0; i < n; i++) {
    const double v = key(i);
    if (v == -INFINITY || (pi >= 0 && !after(v, i, pv, pi))) continue;
    if (best < 0 || v > bv) best = i, bv = v;  // ascending scan: of equal values the lower index stays
  }
  return best;
}

__device__ inline void sort_ascending(int32_t* x, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && x[j - 1] > x[j]; j--) {
      const int32_t t = x[j];
      x[j] = x[j - 1], x[j - 1] = t;
    }
}

__device__ inline bool finite_row(const float* x, int n) {
  for (int i = 0; i < n; i++)
    if (!isfinite(x[i])) return false;
  return true;
}

// score: [N,E] doubles of scratch: P (top_k, top_p) or the combined score c (two_level, −inf
// outside the selected groups)
__global__ void router_forward_kernel(RouterSpec s, RouterTensors r, const float* logits, const float* group_logits,
                                      int N, double* score) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= N) return;
  const int E = s.E, S = s.max_sel();
  const bool two = s.two_level();
  const float* z = logits + (size_t)t * E;
  const float* y = two ? group_logits + (size_t)t * s.Ng : nullptr;
  if (!finite_row(z, E) || (two && !finite_row(y, s.Ng))) {
    r.nsel[t] = -1;
    return;
  }
  double* sc = score + (size_t)t * E;
  int32_t* sel = r.sel + (size_t)t * S;
  float* sel_w = r.sel_w + (size_t)t * S;
  // full softmax P and its entropy H = log Z − Σ P (z − M)
  double M = -INFINITY, Z = 0.0, zp = 0.0;
  for (int e = 0; e < E; e++) M = fmax(M, (double)z[e]);
  for (int e = 0; e < E; e++) Z += exp((double)z[e] - M);
  for (int e = 0; e < E; e++) {
    const double p = exp((double)z[e] - M) / Z;
    r.probs[(size_t)t * E + e] = (float)p;
    zp += p * ((double)z[e] - M);
    if (!two) sc[e] = p;
  }
  r.entropy[t] = (float)(log(Z) - zp);

  int k = 0;
  if (!two) {
    const int kmax = s.rule == RouterRule::top_k ? s.K : s.max_k;
    auto logit = [&](int e) { return (double)z[e]; };
    double cum = 0.0, pv = 0.0;
    int pi = -1;
    while (k < kmax) {
      const int e = next_best(E, logit, pv, pi);
      sel[k++] = e, pv = z[e], pi = e;
      cum += sc[e];
      if (s.rule == RouterRule::top_p && s.p < 1.0 && cum >= s.p) break;
    }
    sort_ascending(sel, k);
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += sc[sel[j]];
    for (int j = 0; j < k; j++) sel_w[j] = (float)(sc[sel[j]] / sum);
  } else {
    const int Ng = s.Ng, Ne = s.group_size(), Kg = s.Kg;
    // group softmax, sigmoid, the top-Kg groups by logit
    double ym = -INFINITY, ysum = 0.0;
    for (int g = 0; g < Ng; g++) ym = fmax(ym, (double)y[g]);
    for (int g = 0; g < Ng; g++) ysum += exp((double)y[g] - ym);
    for (int g = 0; g < Ng; g++) {
      r.group_probs[(size_t)t * Ng + g] = (float)(exp((double)y[g] - ym) / ysum);
      r.group_sig[(size_t)t * Ng + g] = (float)(1.0 / (1.0 + exp(-(double)y[g])));
    }
    int32_t* grp = r.groups + (size_t)t * Kg;
    auto glogit = [&](int g) { return (double)y[g]; };
    double pv = 0.0;
    int pi = -1;
    for (int j = 0; j < Kg; j++) grp[j] = pi = next_best(Ng, glogit, pv, pi), pv = y[pi];
    sort_ascending(grp, Kg);
    double sig_sum = 0.0;
    for (int j = 0; j < Kg; j++) sig_sum += 1.0 / (1.0 + exp(-(double)y[grp[j]]));
    // in-group softmax s and combined score c over the selected groups
    for (int e = 0; e < E; e++) {
      sc[e] = -INFINITY;
      r.ingroup[(size_t)t * E + e] = 0.0f, r.combined[(size_t)t * E + e] = 0.0f;
    }
    for (int j = 0; j < Kg; j++) {
      const int g = grp[j];
      const double q = 1.0 / (1.0 + exp(-(double)y[g])) / sig_sum;
      double gm = -INFINITY, gs = 0.0;
      for (int i = 0; i < Ne; i++) gm = fmax(gm, (double)z[g * Ne + i]);
      for (int i = 0; i < Ne; i++) gs += exp((double)z[g * Ne + i] - gm);
      for (int i = 0; i < Ne; i++) {
        const int e = g * Ne + i;
        const double sv = exp((double)z[e] - gm) / gs;
        r.ingroup[(size_t)t * E + e] = (float)sv;
        sc[e] = sv * q;
        r.combined[(size_t)t * E + e] = (float)sc[e];
      }
    }
    // the global top-K of c, then the gate normalisation over the kept c
    auto comb = [&](int e) { return sc[e]; };
    pv = 0.0, pi = -1;
    for (k = 0; k < s.K; k++) sel[k] = pi = next_best(E, comb, pv, pi), pv = sc[pi];
    sort_ascending(sel, k);
    double m = -INFINITY, sum = 0.0;
    for (int j = 0; j < k; j++) m = fmax(m, sc[sel[j]]);
    for (int j = 0; j < k; j++) sum += s.softmax_gate ? exp(sc[sel[j]] - m) : sc[sel[j]];
    for (int j = 0; j < k; j++) sel_w[j] = (float)((s.softmax_gate ? exp(sc[sel[j]] - m) : sc[sel[j]]) / sum);
  }
  r.nsel[t] = k;
}

// offsets[N+1] = exclusive scan of max(nsel, 0) and the first token with nsel < 0, in one block:
// thread i owns tokens [i·chunk, (i+1)·chunk), the chunk sums are scanned in shared memory.
__global__ void router_offsets_kernel(int32_t* offsets, double* stats_tail, const int32_t* nsel, int N) {
  __shared__ int sums[kThreads];
  __shared__ int bads[kThreads];
  const int i = threadIdx.x, chunk = (N + kThreads - 1) / kThreads;
  const int lo = min(N, i * chunk), hi = min(N, lo + chunk);
  int sum = 0, bad = N;
  for (int t = lo; t < hi; t++) {
    sum += max(nsel[t], 0);
    if (nsel[t] < 0 && bad == N) bad = t;
  }
  sums[i] = sum, bads[i] = bad;
  __syncthreads();
  if (i == 0) {
    int run = 0, first = N;
    for (int j = 0; j < kThreads; j++) {
      const int v = sums[j];
      sums[j] = run, run += v;
      first = min(first, bads[j]);
    }
    offsets[0] = 0;
    stats_tail[0] = N, stats_tail[1] = run, stats_tail[2] = first < N ? first : -1;
  }
  __syncthreads();
  int run = sums[i];
  for (int t = lo; t < hi; t++) offsets[t + 1] = run += max(nsel[t], 0);
}

// expert[j], weight[j] of token t's CSR rows, one thread per token
__global__ void router_csr_kernel(RouteAssignments a, RouterTensors r, int S, int N) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= N) return;
  const int o = a.offsets[t], k = a.offsets[t + 1] - o;
  for (int j = 0; j < k; j++) a.expert[o + j] = r.sel[(size_t)t * S + j], a.weight[o + j] = r.sel_w[(size_t)t * S + j];
}

// Block b < E counts the assignments of expert b (counts[b], stats[b]); block E + g counts the
// tokens that selected group g (stats[E + g]).
__global__ void router_count_kernel(double* stats, int32_t* counts, RouteAssignments a, RouterTensors r, int E, int Ng,
                                    int Kg, int N) {
  const int b = blockIdx.x;
  int n = 0;
  if (b < E) {
    const int A = a.offsets[N];
    for (int j = threadIdx.x; j < A; j += blockDim.x) n += a.expert[j] == b;
  } else {
    for (int j = threadIdx.x; j < N * Kg; j += blockDim.x) n += r.nsel[j / Kg] >= 0 && r.groups[j] == b - E;
  }
  n = block_sum(n);
  if (threadIdx.x == 0) {
    stats[b] = n;
    if (b < E) counts[b] = n;
  }
}

// start[e] = first send row of expert e: rows of the slots before slot[e] (one thread; E small)
__global__ void router_slot_start_kernel(int32_t* start, const int32_t* counts, const int32_t* slot, int E) {
  int32_t* rows = start + E;  // [E] rows per slot, then the start of each
  for (int e = 0; e < E; e++) rows[slot ? slot[e] : e] = counts[e];
  int run = 0;
  for (int sl = 0; sl < E; sl++) {
    const int v = rows[sl];
    rows[sl] = run, run += v;
  }
  for (int e = 0; e < E; e++) start[e] = rows[slot ? slot[e] : e];
}

// Block e walks the assignments in CSR (token) order in tiles of blockDim; an exclusive scan of
// "is expert e" over each tile gives each of its assignments its rank: pos = start[e] + rank.
__global__ void router_send_kernel(RouteAssignments a, const int32_t* start, int N) {
  __shared__ int scan[kThreads];
  const int e = blockIdx.x, A = a.offsets[N];
  int base = start[e];
  for (int j0 = 0; j0 < A; j0 += blockDim.x) {
    const int j = j0 + threadIdx.x;
    const int flag = j < A && a.expert[j] == e;
    scan[threadIdx.x] = flag;
    __syncthreads();
    for (int o = 1; o < blockDim.x; o <<= 1) {  // Hillis–Steele inclusive scan
      const int v = threadIdx.x >= o ? scan[threadIdx.x - o] : 0;
      __syncthreads();
      scan[threadIdx.x] += v;
      __syncthreads();
    }
    if (flag) {
      const int p = base + scan[threadIdx.x] - 1;
      a.pos[j] = p;
      int t = 0;  // the token of assignment j: the last t with offsets[t] <= j (binary search)
      for (int lo = 0, hi = N - 1; lo <= hi;) {
        const int mid = (lo + hi) / 2;
        if (a.offsets[mid] <= j) t = mid, lo = mid + 1;
        else hi = mid - 1;
      }
      a.send_token[p] = t;
    }
    base += scan[blockDim.x - 1];
    __syncthreads();
  }
}

__global__ void router_backward_kernel(RouterSpec s, float* dlogits, float* dgroup_logits, const float* dweight,
                                       RouterTensors r, RouteAssignments a, int N) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= N) return;
  const int E = s.E, a0 = a.offsets[t], a1 = a.offsets[t + 1];
  float* dz = dlogits + (size_t)t * E;
  if (!s.two_level()) {
    // w = softmax over the kept logits: dz_j = w_j (dw_j − Σ_i w_i dw_i)
    double dot = 0.0;
    for (int j = a0; j < a1; j++) dot += (double)a.weight[j] * dweight[j];
    for (int j = a0; j < a1; j++) dz[a.expert[j]] += (float)((double)a.weight[j] * ((double)dweight[j] - dot));
    return;
  }
  const int Ng = s.Ng, Ne = s.group_size(), Kg = s.Kg;
  const float* sv = r.ingroup + (size_t)t * E;
  const float* c = r.combined + (size_t)t * E;
  const float* sig = r.group_sig + (size_t)t * Ng;
  const int32_t* grp = r.groups + (size_t)t * Kg;
  float* dy = dgroup_logits + (size_t)t * Ng;
  double sig_sum = 0.0, dot = 0.0, csum = 0.0;
  for (int j = 0; j < Kg; j++) sig_sum += sig[grp[j]];
  for (int j = a0; j < a1; j++) dot += (double)a.weight[j] * dweight[j], csum += c[a.expert[j]];
  // dc of assignment j: w -> c (softmax or renorm gate)
  auto dc = [&](int j) {
    return s.softmax_gate ? (double)a.weight[j] * ((double)dweight[j] - dot) : ((double)dweight[j] - dot) / csum;
  };
  double qdot = 0.0;
  for (int jg = 0; jg < Kg; jg++) {
    const int g = grp[jg];
    // ds_e = dc·σ_g/Σσ at the kept experts of g; dq_g = Σ dc·s_e; in-group softmax backward
    double sdot = 0.0, dq = 0.0;
    bool any = false;
    for (int j = a0; j < a1; j++)
      if (a.expert[j] / Ne == g) {
        const double d = dc(j), ds = d * (double)sig[g] / sig_sum;
        sdot += ds * (double)sv[a.expert[j]];
        dq += d * (double)sv[a.expert[j]];
        any = any || ds != 0.0;
      }
    if (any)
      for (int i = 0; i < Ne; i++) {
        const int e = g * Ne + i;
        double ds = 0.0;
        for (int j = a0; j < a1; j++)
          if (a.expert[j] == e) ds = dc(j) * (double)sig[g] / sig_sum;
        dz[e] += (float)((double)sv[e] * (ds - sdot));
      }
    qdot += dq * (double)sig[g] / sig_sum;
  }
  // q_g = σ_g / Σσ: dσ_h = (dq_h − Σ_g dq_g q_g) / Σσ; σ' = σ(1 − σ)
  for (int jg = 0; jg < Kg; jg++) {
    const int g = grp[jg];
    double dq = 0.0;
    for (int j = a0; j < a1; j++)
      if (a.expert[j] / Ne == g) dq += dc(j) * (double)sv[a.expert[j]];
    const double dsig = (dq - qdot) / sig_sum;
    dy[g] += (float)(dsig * (double)sig[g] * (1.0 - (double)sig[g]));
  }
}

// ---- auxiliary losses ----

// Fractions from route stats (kernels/router.h): f_assign[E] = n_e/Σn, f_group[Ng] = n_g/(T·Kg),
// f_tok[E] = n_e/(T·K).
__device__ inline double f_assign(const RouterSpec& s, const double* st, int e) {
  const double A = st[s.E + s.Ng + 1];
  return A > 0 ? st[e] / A : 0.0;
}
__device__ inline double f_group(const RouterSpec& s, const double* st, int g) {
  const double T = st[s.E + s.Ng];
  return T > 0 ? st[s.E + g] / (T * s.Kg) : 0.0;
}
__device__ inline double f_tok(const RouterSpec& s, const double* st, int e) {
  const double T = st[s.E + s.Ng];
  return T > 0 ? st[e] / (T * s.K) : 0.0;
}

// Block b computes one sum over tokens or assignments into sums[b]: b < E: Σ_t P_{t,b};
// E ≤ b < 2E: Σ_{a→b−E} w_a; 2E ≤ b < 2E+Ng: Σ_t Q_{t,b−2E}; b = 2E+Ng: Σ_t H_t.
__global__ void aux_sums_kernel(double* sums, RouterSpec s, RouterTensors r, RouteAssignments a, int N) {
  const int b = blockIdx.x, E = s.E, Ng = s.two_level() ? s.Ng : 0;
  double x = 0.0;
  if (b < E) {
    for (int t = threadIdx.x; t < N; t += blockDim.x) x += r.probs[(size_t)t * E + b];
  } else if (b < 2 * E) {
    const int A = a.offsets[N];
    for (int j = threadIdx.x; j < A; j += blockDim.x) x += a.expert[j] == b - E ? (double)a.weight[j] : 0.0;
  } else if (b < 2 * E + Ng) {
    for (int t = threadIdx.x; t < N; t += blockDim.x) x += r.group_probs[(size_t)t * Ng + b - 2 * E];
  } else {
    for (int t = threadIdx.x; t < N; t += blockDim.x) x += r.entropy[t];
  }
  x = block_sum(x);
  if (threadIdx.x == 0) sums[b] = x;
}

__global__ void aux_values_kernel(double* v, RouterSpec s, AuxLossSpec l, const double* sums, const double* st, int N) {
  const int E = s.E, Ng = s.two_level() ? s.Ng : 0;
  for (int i = 0; i < kAuxValues; i++) v[i] = 0.0;
  if (N == 0) return;
  for (int e = 0; e < E; e++) {
    const double pbar = sums[e] / N, f = f_assign(s, st, e);
    v[kAuxLoadBalance] += E * f * pbar;
    v[kAuxPPenalty] += E * f * (l.widths[e] / l.mean_width) * pbar;
  }
  v[kAuxRouterEntropy] = sums[2 * E + Ng] / N;
  if (s.two_level()) {
    for (int g = 0; g < Ng; g++) v[kAuxGroup] += Ng * l.group_omega[g] * (sums[2 * E + g] / N) * f_group(s, st, g);
    for (int e = 0; e < E; e++)
      v[kAuxIntraGroup] += (double)s.Kg * s.group_size() * (sums[E + e] / N) * f_tok(s, st, e);
  }
  v[kAuxTotal] = l.lb * v[kAuxLoadBalance] + l.pp * v[kAuxPPenalty] + l.entropy * v[kAuxRouterEntropy] +
                 (l.group_active ? l.group * v[kAuxGroup] : 0.0) + (s.two_level() ? l.intra * v[kAuxIntraGroup] : 0.0);
}

// Per-token gradients of the P̄ losses (load balance, P-Penalty, entropy) and the group loss.
__global__ void aux_backward_kernel(float* dlogits, float* dgroup_logits, RouterSpec s, AuxLossSpec l, RouterTensors r,
                                    const double* st, int N, double inv_T) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= N) return;
  const int E = s.E;
  auto coef = [&](int e) { return inv_T * E * f_assign(s, st, e) * (l.lb + l.pp * l.widths[e] / l.mean_width); };
  if (l.lb > 0.0 || l.pp > 0.0 || l.entropy > 0.0) {
    const float* p = r.probs + (size_t)t * E;
    float* dz = dlogits + (size_t)t * E;
    double dot = 0.0;
    for (int e = 0; e < E; e++) dot += coef(e) * p[e];
    const double h = r.entropy[t], s_ent = inv_T * l.entropy;
    for (int e = 0; e < E; e++) {
      double g = (double)p[e] * (coef(e) - dot);
      if (l.entropy > 0.0 && p[e] > 0.0f) g -= s_ent * (double)p[e] * (log((double)p[e]) + h);
      dz[e] += (float)g;
    }
  }
  if (s.two_level() && l.group_active) {
    const int Ng = s.Ng;
    auto b = [&](int g) { return inv_T * l.group * Ng * l.group_omega[g] * f_group(s, st, g); };
    const float* q = r.group_probs + (size_t)t * Ng;
    float* dy = dgroup_logits + (size_t)t * Ng;
    double dot = 0.0;
    for (int g = 0; g < Ng; g++) dot += b(g) * q[g];
    for (int g = 0; g < Ng; g++) dy[g] += (float)((double)q[g] * (b(g) - dot));
  }
}

// intra-group: dL/dw_a = scale · f_tok(e_a), one thread per assignment slot (j < A)
__global__ void aux_intra_kernel(float* dweight, RouterSpec s, RouteAssignments a, const double* st, int N,
                                 int64_t cap, double scale) {
  const int A = a.offsets[N];
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < cap && j < A; j += (int64_t)gridDim.x * blockDim.x)
    dweight[j] += (float)(scale * f_tok(s, st, a.expert[j]));
}

unsigned blocks_for(int n) { return (unsigned)((n + kThreads - 1) / kThreads); }

}  // namespace

void router_forward(const RouterSpec& s, const RouterTensors& r, const float* logits, const float* group_logits, int N,
                    double* scratch, cudaStream_t stream) {
  if (N == 0) return;
  router_forward_kernel<<<blocks_for(N), kThreads, 0, stream>>>(s, r, logits, group_logits, N, scratch);
  MOHGE_CUDA_CHECK(cudaGetLastError());
}

void router_assign(const RouterSpec& s, const RouteAssignments& a, double* stats, const RouterTensors& r,
                   const int32_t* slot, int N, int32_t* scratch, cudaStream_t stream) {
  const int E = s.E, Ng = s.two_level() ? s.Ng : 0, Kg = s.two_level() ? s.Kg : 0;
  int32_t* counts = scratch;  // [E] counts, then [E] starts and [E] rows per slot
  int32_t* start = counts + E;
  router_offsets_kernel<<<1, kThreads, 0, stream>>>(a.offsets, stats + E + Ng, r.nsel, N);
  if (N > 0) router_csr_kernel<<<blocks_for(N), kThreads, 0, stream>>>(a, r, s.max_sel(), N);
  router_count_kernel<<<E + Ng, kThreads, 0, stream>>>(stats, counts, a, r, E, Ng, Kg, N);
  router_slot_start_kernel<<<1, 1, 0, stream>>>(start, counts, slot, E);
  router_send_kernel<<<E, kThreads, 0, stream>>>(a, start, N);
  MOHGE_CUDA_CHECK(cudaGetLastError());
}

void router_backward(const RouterSpec& s, float* dlogits, float* dgroup_logits, const float* dweight,
                     const RouterTensors& r, const RouteAssignments& a, int N, cudaStream_t stream) {
  if (N == 0) return;
  router_backward_kernel<<<blocks_for(N), kThreads, 0, stream>>>(s, dlogits, dgroup_logits, dweight, r, a, N);
  MOHGE_CUDA_CHECK(cudaGetLastError());
}

size_t aux_loss_scratch_doubles(const RouterSpec& s) { return 2 * (size_t)s.E + s.Ng + 1; }

void aux_loss_forward(const RouterSpec& s, const AuxLossSpec& l, double* values, const RouterTensors& r,
                      const RouteAssignments& a, const double* stats, int N, double* scratch, cudaStream_t stream) {
  const int Ng = s.two_level() ? s.Ng : 0;
  aux_sums_kernel<<<2 * s.E + Ng + 1, kThreads, 0, stream>>>(scratch, s, r, a, N);
  aux_values_kernel<<<1, 1, 0, stream>>>(values, s, l, scratch, stats, N);
  MOHGE_CUDA_CHECK(cudaGetLastError());
}

void aux_loss_backward(const RouterSpec& s, const AuxLossSpec& l, float* dweight, float* dlogits, float* dgroup_logits,
                       const RouterTensors& r, const RouteAssignments& a, const double* stats, int N, float grad_scale,
                       cudaStream_t stream) {
  if (N == 0) return;
  const double inv_T = (double)grad_scale / N;
  aux_backward_kernel<<<blocks_for(N), kThreads, 0, stream>>>(dlogits, dgroup_logits, s, l, r, stats, N, inv_T);
  if (s.two_level() && l.intra > 0.0) {
    const int64_t cap = (int64_t)N * s.max_sel();
    aux_intra_kernel<<<grid_for(cap), kThreads, 0, stream>>>(dweight, s, a, stats, N, cap,
                                                             inv_T * l.intra * s.Kg * s.group_size());
  }
  MOHGE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mohge::cuda
