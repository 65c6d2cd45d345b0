// defines: mohge::ref::{matmul, embedding, rmsnorm, rope, attention, attention_decode, swiglu,
//          crossentropy, add, gather_rows, combine_rows, adamw, route_token, aux_loss, numerical_gradient} — slow float64 reference forwards of every op in kernels/ops.h
// Written independently of ops_cpu.cpp with naive loops, for tests/test_ops.cpp to judge the fast
// path against. No parallelism, no BLAS, no tricks: each function is its formula. Shapes follow
// ops.h (N = rows, B/T/H = batch, time, heads, hd = head dim), tensors are row-major and flat.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/router.h"

namespace mohge::ref {

using Vec = std::vector<double>;

// out[N,O] = inp[N,I] · w[O,I]ᵀ
Vec matmul(const Vec& inp, const Vec& w, int N, int I, int O);

// out[N,C] = wte[tokens[n], :]  (wte[V,C]; tokens must lie in [0, V))
Vec embedding(const std::vector<int32_t>& tokens, const Vec& wte, int N, int C);

// out[N,C] = inp · (mean(inp²) + eps)^-½ · w;  rstd[N] (if non-null) receives (mean(inp²) + eps)^-½
Vec rmsnorm(const Vec& inp, const Vec& w, int N, int C, double eps, Vec* rstd = nullptr);

// x[B,T,H,hd] -> rotated copy: pair (x_i, x_{i+hd/2}) as complex x_i + i·x_{i+hd/2}, multiplied by
// exp(±i·(pos0+t)·theta^(−2i/hd)) (− when inverse). Rotate-half (GPT-NeoX / HF) convention.
Vec rope(const Vec& x, int B, int T, int H, int hd, double theta, int pos0, bool inverse);

// q[B,T,H,hd], k/v[B,T,KVH,hd] -> out[B,T,H,hd]: causal softmax(q·kᵀ/√hd)·v over keys s ≤ t,
// query head h reads kv head h / (H/KVH). lse[B,H,T] (if non-null) receives each row's
// log Σ_{s≤t} exp(q·k_s/√hd).
Vec attention(const Vec& q, const Vec& k, const Vec& v, int B, int T, int H, int KVH, int hd,
              Vec* lse = nullptr);

// q[N,H,hd] over caches k/v[S,max_len,KVH,hd] -> out[N,H,hd]: row i is ref::attention's row for
// a query at position pos[i] of sequence seq[i], over that sequence's keys 0..pos[i].
Vec attention_decode(const Vec& q, const Vec& kcache, const Vec& vcache,
                     const std::vector<int32_t>& seq, const std::vector<int32_t>& pos, int N,
                     int max_len, int H, int KVH, int hd);

// out[n] = silu(gate[n]) · up[n] = gate[n] / (1 + exp(−gate[n])) · up[n]
Vec swiglu(const Vec& gate, const Vec& up);

// losses[N] = logsumexp(logits[n, :]) − logits[n, targets[n]]  (logits[N,V])
Vec crossentropy(const Vec& logits, const std::vector<int32_t>& targets, int N, int V);

// out[n] = y[n] + x[n]
Vec add(const Vec& y, const Vec& x);

// Permute: out[p, :] = inp[src[p], :]  (inp[N,d] -> out[P,d])
Vec gather_rows(const Vec& inp, const std::vector<int32_t>& src, int d);

// Combine: out[t, :] = Σ_{j ∈ [offsets[t], offsets[t+1])} weight[j] · y[pos[j], :]  (out[N,d])
Vec combine_rows(const Vec& y, const Vec& weight, const std::vector<int32_t>& offsets,
                 const std::vector<int32_t>& pos, int N, int d);

// One AdamW step (decoupled decay, bias-corrected) on w, m, v in place, elementwise:
// g ← g·grad_mult; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
// w ← w − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + eps) − lr·wd·w  (wd = 0 where decay[i] is false)
void adamw(Vec& w, Vec& m, Vec& v, const Vec& g, const std::vector<bool>& decay, double lr,
           double beta1, double beta2, double eps, double wd, int64_t t, double grad_mult);

// One token's routing by the rules of kernels/router.h, from its expert logits z[E] and group
// logits y[Ng] (two_level): full stable sorts, every score in double.
struct TokenRoute {
  std::vector<int> experts;  // kept, ascending
  Vec weights;               // their gate weights
  Vec probs;                 // [E] softmax(z)
  double entropy = 0;        // −Σ P log P
  Vec group_probs;           // [Ng] softmax(y) (two_level)
  std::vector<int> groups;   // the Kg selected groups, ascending (two_level)
};
TokenRoute route_token(const RouterSpec& s, const Vec& z, const Vec& y);

// The auxiliary-loss values [kAuxValues] (kernels/router.h) of N tokens routed from z[N,E] and
// y[N,Ng]; l's widths and group_omega point to host memory here. stats: counts in the route-stats
// layout, or null for the tokens' own counts.
Vec aux_loss(const RouterSpec& s, const AuxLossSpec& l, const Vec& z, const Vec& y, int N, const Vec* stats);

// Central finite differences of a scalar f at x: grad[j] = (f(x + h·e_c) − f(x − h·e_c)) / 2h for
// c = coords[j] (all coordinates, in order, when coords is empty). grad has coords.size() entries
// (x.size() when coords is empty).
Vec numerical_gradient(const std::function<double(const Vec&)>& f, const Vec& x,
                       const std::vector<size_t>& coords = {}, double h = 1e-6);

}  // namespace mohge::ref
