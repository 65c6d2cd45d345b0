// defines: the float64 reference ops declared in kernels/reference.h
#include "kernels/reference.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <numeric>

#include "core/error.h"

namespace mohge::ref {

Vec matmul(const Vec& inp, const Vec& w, int N, int I, int O) {
  MOHGE_CHECK(inp.size() == (size_t)N * I && w.size() == (size_t)O * I, "ref::matmul: bad sizes");
  Vec out((size_t)N * O, 0.0);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++) {
      double s = 0.0;
      for (int i = 0; i < I; i++) s += inp[(size_t)n * I + i] * w[(size_t)o * I + i];
      out[(size_t)n * O + o] = s;
    }
  return out;
}

Vec embedding(const std::vector<int32_t>& tokens, const Vec& wte, int N, int C) {
  MOHGE_CHECK(tokens.size() == (size_t)N && wte.size() % C == 0, "ref::embedding: bad sizes");
  const int64_t V = (int64_t)(wte.size() / C);
  Vec out((size_t)N * C);
  for (int n = 0; n < N; n++) {
    MOHGE_CHECK(tokens[n] >= 0 && tokens[n] < V, "ref::embedding: token {} outside [0, {})",
                tokens[n], V);
    for (int c = 0; c < C; c++) out[(size_t)n * C + c] = wte[(size_t)tokens[n] * C + c];
  }
  return out;
}

Vec rmsnorm(const Vec& inp, const Vec& w, int N, int C, double eps, Vec* rstd) {
  MOHGE_CHECK(inp.size() == (size_t)N * C && w.size() == (size_t)C, "ref::rmsnorm: bad sizes");
  Vec out((size_t)N * C);
  if (rstd) rstd->assign(N, 0.0);
  for (int n = 0; n < N; n++) {
    double ms = 0.0;
    for (int c = 0; c < C; c++) ms += inp[(size_t)n * C + c] * inp[(size_t)n * C + c];
    ms /= C;
    const double r = 1.0 / std::sqrt(ms + eps);
    for (int c = 0; c < C; c++) out[(size_t)n * C + c] = inp[(size_t)n * C + c] * r * w[c];
    if (rstd) (*rstd)[n] = r;
  }
  return out;
}

Vec rope(const Vec& x, int B, int T, int H, int hd, double theta, int pos0, bool inverse) {
  MOHGE_CHECK(hd % 2 == 0 && x.size() == (size_t)B * T * H * hd, "ref::rope: bad sizes");
  const int half = hd / 2;
  Vec out(x.size());
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int h = 0; h < H; h++) {
        const size_t base = (((size_t)b * T + t) * H + h) * hd;
        for (int i = 0; i < half; i++) {
          const double angle = (double)(pos0 + t) * std::pow(theta, -2.0 * i / hd);
          const std::complex<double> z(x[base + i], x[base + i + half]);
          const std::complex<double> r = std::polar(1.0, inverse ? -angle : angle);
          const std::complex<double> y = z * r;
          out[base + i] = y.real();
          out[base + i + half] = y.imag();
        }
      }
  return out;
}

Vec attention(const Vec& q, const Vec& k, const Vec& v, int B, int T, int H, int KVH, int hd,
              Vec* lse) {
  MOHGE_CHECK(KVH > 0 && H % KVH == 0, "ref::attention: H={} not a multiple of KVH={}", H, KVH);
  MOHGE_CHECK(q.size() == (size_t)B * T * H * hd && k.size() == (size_t)B * T * KVH * hd &&
                  v.size() == k.size(),
              "ref::attention: bad sizes");
  const int group = H / KVH;  // query heads per kv head
  const double scale = 1.0 / std::sqrt((double)hd);
  auto qi = [&](int b, int t, int h) { return (((size_t)b * T + t) * H + h) * hd; };
  auto ki = [&](int b, int t, int g) { return (((size_t)b * T + t) * KVH + g) * hd; };
  Vec out((size_t)B * T * H * hd, 0.0);
  if (lse) lse->assign((size_t)B * H * T, 0.0);
  Vec score(T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int g = h / group;
      for (int t = 0; t < T; t++) {
        // scores over the visible keys s = 0..t
        double mx = -INFINITY;
        for (int s = 0; s <= t; s++) {
          double dot = 0.0;
          for (int d = 0; d < hd; d++) dot += q[qi(b, t, h) + d] * k[ki(b, s, g) + d];
          score[s] = dot * scale;
          mx = std::max(mx, score[s]);
        }
        double z = 0.0;
        for (int s = 0; s <= t; s++) z += std::exp(score[s] - mx);
        if (lse) (*lse)[((size_t)b * H + h) * T + t] = mx + std::log(z);
        for (int s = 0; s <= t; s++) {
          const double p = std::exp(score[s] - mx) / z;
          for (int d = 0; d < hd; d++) out[qi(b, t, h) + d] += p * v[ki(b, s, g) + d];
        }
      }
    }
  return out;
}

Vec attention_decode(const Vec& q, const Vec& kcache, const Vec& vcache,
                     const std::vector<int32_t>& seq, const std::vector<int32_t>& pos, int N,
                     int max_len, int H, int KVH, int hd) {
  MOHGE_CHECK(KVH > 0 && H % KVH == 0, "ref::attention_decode: H={} not a multiple of KVH={}", H, KVH);
  MOHGE_CHECK(q.size() == (size_t)N * H * hd && kcache.size() % ((size_t)max_len * KVH * hd) == 0 &&
                  vcache.size() == kcache.size() && seq.size() == (size_t)N && pos.size() == (size_t)N,
              "ref::attention_decode: bad sizes");
  const size_t S = kcache.size() / ((size_t)max_len * KVH * hd);
  const int group = H / KVH;
  const double scale = 1.0 / std::sqrt((double)hd);
  auto ki = [&](int s, int t, int g) { return (((size_t)s * max_len + t) * KVH + g) * hd; };
  Vec out((size_t)N * H * hd, 0.0);
  for (int i = 0; i < N; i++) {
    MOHGE_CHECK(seq[i] >= 0 && (size_t)seq[i] < S && pos[i] >= 0 && pos[i] < max_len,
                "ref::attention_decode: row {} outside the cache", i);
    for (int h = 0; h < H; h++) {
      const int g = h / group;
      const double* qi = q.data() + ((size_t)i * H + h) * hd;
      Vec score(pos[i] + 1);
      double mx = -INFINITY;
      for (int t = 0; t <= pos[i]; t++) {
        double dot = 0.0;
        for (int d = 0; d < hd; d++) dot += qi[d] * kcache[ki(seq[i], t, g) + d];
        score[t] = dot * scale;
        mx = std::max(mx, score[t]);
      }
      double z = 0.0;
      for (int t = 0; t <= pos[i]; t++) z += std::exp(score[t] - mx);
      for (int t = 0; t <= pos[i]; t++)
        for (int d = 0; d < hd; d++)
          out[((size_t)i * H + h) * hd + d] += std::exp(score[t] - mx) / z * vcache[ki(seq[i], t, g) + d];
    }
  }
  return out;
}

Vec swiglu(const Vec& gate, const Vec& up) {
  MOHGE_CHECK(gate.size() == up.size(), "ref::swiglu: bad sizes");
  Vec out(gate.size());
  for (size_t i = 0; i < gate.size(); i++) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return out;
}

Vec crossentropy(const Vec& logits, const std::vector<int32_t>& targets, int N, int V) {
  MOHGE_CHECK(logits.size() == (size_t)N * V && targets.size() == (size_t)N,
              "ref::crossentropy: bad sizes");
  Vec losses(N);
  for (int n = 0; n < N; n++) {
    MOHGE_CHECK(targets[n] >= 0 && targets[n] < V, "ref::crossentropy: target {} outside [0, {})",
                targets[n], V);
    const double* x = logits.data() + (size_t)n * V;
    double mx = x[0];
    for (int j = 1; j < V; j++) mx = std::max(mx, x[j]);
    double z = 0.0;
    for (int j = 0; j < V; j++) z += std::exp(x[j] - mx);
    losses[n] = mx + std::log(z) - x[targets[n]];
  }
  return losses;
}

Vec add(const Vec& y, const Vec& x) {
  MOHGE_CHECK(y.size() == x.size(), "ref::add: bad sizes");
  Vec out(y.size());
  for (size_t i = 0; i < y.size(); i++) out[i] = y[i] + x[i];
  return out;
}

namespace {

Vec softmax(const Vec& z) {
  const double m = *std::max_element(z.begin(), z.end());
  double sum = 0;
  Vec p(z.size());
  for (size_t i = 0; i < z.size(); i++) sum += p[i] = std::exp(z[i] - m);
  for (double& v : p) v /= sum;
  return p;
}

// indices by value descending; equal values keep index order (stable sort: the lower index wins)
std::vector<int> order(const Vec& v) {
  std::vector<int> o(v.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return v[a] > v[b]; });
  return o;
}

// the kept experts ascending, weights score / Σ score over them
void keep(TokenRoute& r, std::vector<int> kept, const Vec& score) {
  std::sort(kept.begin(), kept.end());
  double sum = 0;
  for (int e : kept) sum += score[e];
  for (int e : kept) r.experts.push_back(e), r.weights.push_back(score[e] / sum);
}

}  // namespace

TokenRoute route_token(const RouterSpec& s, const Vec& z, const Vec& y) {
  TokenRoute r;
  r.probs = softmax(z);
  for (double p : r.probs) r.entropy -= p > 0 ? p * std::log(p) : 0.0;
  if (!s.two_level()) {
    const std::vector<int> o = order(z);  // the logits' order is P's
    int k = s.K;
    if (s.rule == RouterRule::top_p) {
      double cum = 0;
      k = 0;
      if (s.p >= 1.0) k = s.max_k;
      else
        while (k < s.E && cum < s.p) cum += r.probs[o[k++]];
      k = std::clamp(k, 1, s.max_k);
    }
    keep(r, std::vector<int>(o.begin(), o.begin() + k), r.probs);
    return r;
  }
  const int Ng = s.Ng, N = s.group_size();
  r.group_probs = softmax(y);
  Vec sig(Ng);
  for (int g = 0; g < Ng; g++) sig[g] = 1.0 / (1.0 + std::exp(-y[g]));
  const std::vector<int> go = order(y);
  r.groups.assign(go.begin(), go.begin() + s.Kg);
  std::sort(r.groups.begin(), r.groups.end());
  double sig_sum = 0;
  for (int g : r.groups) sig_sum += sig[g];
  Vec c(s.E, -1.0);  // −1: not a candidate
  for (int g : r.groups) {
    const Vec sg = softmax(Vec(z.begin() + g * N, z.begin() + (g + 1) * N));
    for (int i = 0; i < N; i++) c[g * N + i] = sg[i] * sig[g] / sig_sum;
  }
  const std::vector<int> o = order(c);
  std::vector<int> kept(o.begin(), o.begin() + s.K);
  if (!s.softmax_gate) {
    keep(r, kept, c);
  } else {
    Vec ex(s.E, 0.0);
    for (int e : kept) ex[e] = std::exp(c[e]);
    keep(r, kept, ex);
  }
  return r;
}

Vec aux_loss(const RouterSpec& s, const AuxLossSpec& l, const Vec& z, const Vec& y, int N, const Vec* stats) {
  const int E = s.E, Ng = s.two_level() ? s.Ng : 0;
  Vec out(kAuxValues, 0.0);
  if (N == 0) return out;
  Vec n_e(E, 0.0), n_g(Ng, 0.0), pbar(E, 0.0), qbar(Ng, 0.0), wbar(E, 0.0);
  double A = 0, H = 0;
  for (int t = 0; t < N; t++) {
    const TokenRoute r = route_token(s, Vec(z.begin() + (size_t)t * E, z.begin() + (size_t)(t + 1) * E),
                                     Ng ? Vec(y.begin() + (size_t)t * Ng, y.begin() + (size_t)(t + 1) * Ng) : Vec());
    for (size_t j = 0; j < r.experts.size(); j++) n_e[r.experts[j]]++, wbar[r.experts[j]] += r.weights[j] / N, A++;
    for (int g : r.groups) n_g[g]++;
    for (int e = 0; e < E; e++) pbar[e] += r.probs[e] / N;
    for (int g = 0; g < Ng; g++) qbar[g] += r.group_probs[g] / N;
    H += r.entropy / N;
  }
  double T = N;
  if (stats) {
    for (int e = 0; e < E; e++) n_e[e] = (*stats)[e];
    for (int g = 0; g < Ng; g++) n_g[g] = (*stats)[E + g];
    T = (*stats)[E + Ng], A = (*stats)[E + Ng + 1];
  }
  for (int e = 0; e < E; e++) {
    const double f = A > 0 ? n_e[e] / A : 0.0;
    out[kAuxLoadBalance] += E * f * pbar[e];
    out[kAuxPPenalty] += E * f * (l.widths[e] / l.mean_width) * pbar[e];
  }
  out[kAuxRouterEntropy] = H;
  if (s.two_level()) {
    for (int g = 0; g < Ng; g++) out[kAuxGroup] += Ng * l.group_omega[g] * qbar[g] * n_g[g] / (T * s.Kg);
    for (int e = 0; e < E; e++) out[kAuxIntraGroup] += (double)s.Kg * s.group_size() * wbar[e] * n_e[e] / (T * s.K);
  }
  out[kAuxTotal] = l.lb * out[kAuxLoadBalance] + l.pp * out[kAuxPPenalty] + l.entropy * out[kAuxRouterEntropy] +
                   (l.group_active ? l.group * out[kAuxGroup] : 0.0) +
                   (s.two_level() ? l.intra * out[kAuxIntraGroup] : 0.0);
  return out;
}

Vec numerical_gradient(const std::function<double(const Vec&)>& f, const Vec& x,
                       const std::vector<size_t>& coords, double h) {
  Vec xp = x;
  const size_t n = coords.empty() ? x.size() : coords.size();
  Vec grad(n);
  for (size_t j = 0; j < n; j++) {
    const size_t c = coords.empty() ? j : coords[j];
    MOHGE_CHECK(c < x.size(), "ref::numerical_gradient: coordinate {} out of range", c);
    xp[c] = x[c] + h;
    const double fp = f(xp);
    xp[c] = x[c] - h;
    const double fm = f(xp);
    xp[c] = x[c];
    grad[j] = (fp - fm) / (2.0 * h);
  }
  return grad;
}

Vec gather_rows(const Vec& inp, const std::vector<int32_t>& src, int d) {
  Vec out(src.size() * d);
  for (size_t p = 0; p < src.size(); p++)
    for (int i = 0; i < d; i++) out[p * d + i] = inp[(size_t)src[p] * d + i];
  return out;
}

Vec combine_rows(const Vec& y, const Vec& weight, const std::vector<int32_t>& offsets,
                 const std::vector<int32_t>& pos, int N, int d) {
  Vec out((size_t)N * d, 0.0);
  for (int t = 0; t < N; t++)
    for (int j = offsets[t]; j < offsets[t + 1]; j++)
      for (int i = 0; i < d; i++) out[(size_t)t * d + i] += weight[j] * y[(size_t)pos[j] * d + i];
  return out;
}

void adamw(Vec& w, Vec& m, Vec& v, const Vec& g, const std::vector<bool>& decay, double lr,
           double beta1, double beta2, double eps, double wd, int64_t t, double grad_mult) {
  const double c1 = 1.0 - std::pow(beta1, (double)t), c2 = 1.0 - std::pow(beta2, (double)t);
  for (size_t i = 0; i < w.size(); i++) {
    const double gi = g[i] * grad_mult;
    m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
    v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
    w[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps) + (decay[i] ? lr * wd * w[i] : 0.0);
  }
}

}  // namespace mohge::ref
