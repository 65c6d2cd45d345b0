// defines: tests of src/model — whole-model gradient check (LM + auxiliary losses, every FFN kind)
// against central finite differences; the MoE layer against an independent dense-compute reference
// in double (forward, routing, input and parameter gradients); checkpoint round trip and every kind
// of bad checkpoint; KV-cache decoding against the full forward; token ids outside the vocabulary.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "eval/generate.h"
#include "kernels/matvec.h"
#include "kernels/parallel.h"
#include "model/ffn_moe.h"
#include "model/model.h"
#include "model/model_io.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mohge;

namespace {

// Single-threaded unless OMP_NUM_THREADS is set (see test_util.h); ThreadCount.* covers the
// multi-threaded paths explicitly.
const bool kSingleThreaded = test::single_threaded_unless_set();

using test::TmpDir;

// ------------------------------------------------------------------------------------ configs
// Tiny configs (V=32, d=16, 2 layers, 4 heads, 2 kv heads) with aux coefficients valid for each
// router, all non-zero.
ModelConfig tiny_config(const std::string& kind, GateNorm gate_norm = GateNorm::softmax) {
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.intermediate_size = 24;
  c.max_seq_len = 16;
  c.init_std = 0.1;
  c.ffn_kind = ffn_kind_from_string(kind);
  MoeConfig& m = c.moe;
  if (kind == "moe") {
    m.kind = MoeKind::moe;
    m.router = RouterKind::top_k;
    m.num_experts = 4;
    m.expert_widths = {12, 12, 12, 12};
    m.num_experts_per_tok = 2;
    m.lb_coef = 0.1, m.pp_coef = 0.2, m.entropy_coef = 0.05;
  } else if (kind == "hmoe") {
    m.kind = MoeKind::hmoe;
    m.router = RouterKind::top_p;
    m.num_experts = 4;
    m.expert_widths = {8, 12, 16, 24};
    m.top_p = 0.6;
    m.max_experts_per_tok = 3;
    m.lb_coef = 0.1, m.pp_coef = 0.2, m.entropy_coef = 0.05;
  } else if (kind == "mohge") {
    m.kind = MoeKind::mohge;
    m.router = RouterKind::two_level;
    m.num_expert_groups = 3;
    m.experts_per_group = 2;
    m.num_experts = 6;
    m.expert_widths = {8, 8, 12, 12, 16, 16};
    m.topk_group = 2;
    m.num_experts_per_tok = 3;
    m.max_experts_per_tok = 3;
    m.gate_norm = gate_norm;
    m.shared_expert_width = 8;
    m.group_coef = 0.3, m.intra_coef = 0.2, m.group_delta = 8.0;
    c.first_dense_layers = 1;
  }
  c.validate();
  return c;
}

bool is_router_tensor(const std::string& name) {
  return name.find(".gate.weight") != std::string::npos ||
         name.find(".group_gate.weight") != std::string::npos;
}

// Deterministic random weights; router weights larger so routing is decisive, norms not all 1.
void randomize(Model& m, uint64_t seed) {
  m.init_weights(seed);
  std::mt19937_64 rng(seed * 7919 + 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& p : m.params.infos()) {
    int id = m.params.find(p.name);
    float* d = m.params.data(id);
    if (p.init == ParamInit::ones)
      for (int64_t i = 0; i < p.numel; i++) d[i] = 1.0f + 0.1f * nd(rng);
    else if (is_router_tensor(p.name))
      for (int64_t i = 0; i < p.numel; i++) d[i] = 0.5f * nd(rng);
    else if (p.name == "model.embed_tokens.weight")
      for (int64_t i = 0; i < p.numel; i++) d[i] = 0.5f * nd(rng);
  }
}

std::vector<int32_t> random_tokens(int n, int V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = (int32_t)(rng() % V);
  return t;
}

// Snapshot of the routing of every MoE layer (expert ids per token), to detect a routing change.
std::vector<std::vector<int>> routing_snapshot(const Model& m) {
  std::vector<std::vector<int>> s;
  for (int l = 0; l < m.cfg.num_layers; l++) {
    auto routing = m.ffn(l).routing();
    if (!routing) continue;
    const Routing& r = routing->last();
    std::vector<int> v(r.offsets.begin(), r.offsets.end());
    v.push_back(-1);
    v.insert(v.end(), r.expert.begin(), r.expert.end());
    s.push_back(std::move(v));
  }
  return s;
}

// ------------------------------------------------------------------ whole-model gradient check
struct GradCase {
  const char* name;
  const char* kind;
  GateNorm gate_norm;
};

class WholeModelGradient : public ::testing::TestWithParam<GradCase> {};

// Model::backward's gradient of (LM loss + aux losses) vs central differences of
// Model::forward + aux_loss() in fp32, on sampled coordinates of every tensor (every router tensor
// included, more densely). Coordinates whose perturbation changes the routing of any MoE layer are
// resampled (the loss is discontinuous there).
TEST_P(WholeModelGradient, BackwardMatchesFiniteDifferencesOfLmPlusAuxLoss) {
  const GradCase& gc = GetParam();
  ModelConfig cfg = tiny_config(gc.kind, gc.gate_norm);
  Model m(cfg);
  Context ctx(m, Mode::train);
  const int B = 2, T = 6, N = B * T;
  auto in = random_tokens(N, cfg.vocab_size, 5), tg = random_tokens(N, cfg.vocab_size, 6);
  auto total_loss = [&] { return m.forward(ctx, in.data(), tg.data(), B, T, 0) + ctx.aux_loss(); };
  // fp32 loss (~4) is exact to ~5e-7, so the quotient has noise ~1e-5 at this step; the weights are
  // O(0.1-1), so the O(h^2) curvature error stays ~1e-3 relative.
  const double h = 3e-2;

  // Pick weights whose routing is not within reach of a ±h perturbation (top-p especially has
  // tokens near the cumulative-probability threshold): probe random coordinates of every tensor.
  uint64_t seed = 11;
  for (;; seed++) {
    ASSERT_LT(seed, 60u) << "no seed with a stable routing";
    randomize(m, seed);
    total_loss();
    const auto r0 = routing_snapshot(m);
    std::mt19937_64 prng(seed);
    bool stable = true;
    for (const ParamInfo& p : m.params.infos()) {
      float* data = m.params.all_data() + p.offset;
      for (int k = 0; k < 6 && stable; k++) {
        int64_t i = (int64_t)(prng() % (uint64_t)p.numel);
        const float w = data[i];
        for (double s : {h, -h}) {
          data[i] = (float)(w + s);
          total_loss();
          stable = stable && routing_snapshot(m) == r0;
        }
        data[i] = w;
      }
    }
    if (stable) break;
  }
  randomize(m, seed);
  m.params.zero_grad();
  const double f0 = total_loss();
  const double aux0 = ctx.aux_loss();
  const auto route0 = routing_snapshot(m);
  m.backward(ctx, 1.0f);
  std::vector<float> grad(m.params.all_grad(), m.params.all_grad() + m.params.total());
  if (cfg.is_moe()) {
    EXPECT_GT(aux0, 1e-3) << "aux losses must be switched on for this check";
    ASSERT_FALSE(route0.empty());
  }
  // forward is deterministic: the loss of unperturbed params is reproduced exactly
  ASSERT_EQ(total_loss(), f0);

  std::mt19937_64 rng(123);
  int checked_total = 0, resampled = 0, router_tensors = 0;
  double worst_ratio = 0;  // max over coordinates of |error| / tolerance (GC_VERBOSE prints it)
  for (const ParamInfo& p : m.params.infos()) {
    const bool router = is_router_tensor(p.name);
    router_tensors += router;
    const int want = (int)std::min<int64_t>(p.numel, router ? 48 : 24);
    float* data = m.params.all_data() + p.offset;
    std::vector<double> an, fd;
    std::vector<int64_t> coords;
    int tries = 0;
    while ((int)an.size() < want && tries < 20 * want + 50) {
      tries++;
      int64_t i = (int64_t)(rng() % (uint64_t)p.numel);
      if (std::find(coords.begin(), coords.end(), i) != coords.end() && p.numel > want) continue;
      const float w = data[i];
      const float wp = (float)(w + h), wm = (float)(w - h);
      data[i] = wp;
      const double fp = total_loss();
      const bool same_p = routing_snapshot(m) == route0;
      data[i] = wm;
      const double fm = total_loss();
      const bool same_m = routing_snapshot(m) == route0;
      data[i] = w;
      if (!same_p || !same_m) {
        resampled++;
        continue;
      }
      coords.push_back(i);
      an.push_back(grad[p.offset + i]);
      fd.push_back((fp - fm) / ((double)wp - (double)wm));
    }
    ASSERT_EQ((int)an.size(), want) << p.name << ": routing changed under too many perturbations";
    double num = 0, den = 0;
    for (size_t j = 0; j < an.size(); j++) {
      const double diff = std::abs(an[j] - fd[j]);
      num += diff * diff, den += fd[j] * fd[j];
      // fp32 forward noise on the difference quotient is ~1e-5; curvature error is O(h^2)
      const double bound = 1e-2 * std::max(std::abs(an[j]), std::abs(fd[j])) + 3e-5;
      worst_ratio = std::max(worst_ratio, diff / bound);
      EXPECT_LE(diff, bound)
          << p.name << "[" << coords[j] << "]: backward " << an[j] << " vs finite difference " << fd[j];
    }
    if (getenv("GC_VERBOSE")) {
      double mx = 0;
      for (double v : fd) mx = std::max(mx, std::abs(v));
      printf("%-50s rel %.2e  max|g| %.2e  worst diff/bound %.2f\n", p.name.c_str(),
             den > 0 ? std::sqrt(num / den) : 0.0, mx, worst_ratio);
    }
    if (den > 1e-12) {
      EXPECT_LE(std::sqrt(num / den), 1e-2) << p.name << ": relative error of the sampled gradient";
    }
    checked_total += (int)an.size();
  }
  // the router tensors received a real gradient (LM path + aux losses)
  for (const ParamInfo& p : m.params.infos()) {
    if (!is_router_tensor(p.name)) continue;
    double s = 0;
    for (int64_t i = 0; i < p.numel; i++) s += std::abs(grad[p.offset + i]);
    EXPECT_GT(s, 1e-4) << p.name << " has no gradient";
  }
  if (cfg.is_moe()) {
    EXPECT_GT(router_tensors, 0);
    // The aux-loss part of the router gradients is far above the tolerance, so a missing or wrong
    // aux gradient could not pass: compare with the same model without aux losses.
    ModelConfig c0 = cfg;
    c0.moe.lb_coef = c0.moe.pp_coef = c0.moe.entropy_coef = c0.moe.group_coef = c0.moe.intra_coef = 0;
    Model m0(c0);
    Context ctx0(m0, Mode::train);
    std::copy_n(m.params.all_data(), m.params.total(), m0.params.all_data());
    m0.params.zero_grad();
    m0.forward(ctx0, in.data(), tg.data(), B, T, 0);
    EXPECT_EQ(ctx0.aux_loss(), 0.0);
    m0.backward(ctx0, 1.0f);
    for (const ParamInfo& p : m.params.infos()) {
      if (!is_router_tensor(p.name)) continue;
      double num = 0, den = 0;
      for (int64_t i = 0; i < p.numel; i++) {
        const double a = grad[p.offset + i], b = m0.params.all_grad()[p.offset + i];
        num += (a - b) * (a - b), den += a * a;
      }
      EXPECT_GT(std::sqrt(num / den), 0.1) << p.name << ": aux-loss gradient too small to be checked";
    }
  }
  EXPECT_LT(resampled, checked_total / 4) << "routing too fragile for a meaningful check";
  // restored exactly
  ASSERT_EQ(total_loss(), f0);
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, WholeModelGradient,
    ::testing::Values(GradCase{"dense", "dense", GateNorm::softmax},
                      GradCase{"moe_top_k", "moe", GateNorm::softmax},
                      GradCase{"hmoe_top_p", "hmoe", GateNorm::softmax},
                      GradCase{"mohge_two_level_softmax", "mohge", GateNorm::softmax},
                      GradCase{"mohge_two_level_renorm", "mohge", GateNorm::renorm}),
    [](const auto& info) { return std::string(info.param.name); });

// Aux loss terms of a two-level model: only group / intra_group enter the total (their coefs are the
// only non-zero ones), and the group term is gated by group_loss_start_step.
TEST(ModelAuxLoss, GroupLossSwitchesOnAtStartStep) {
  ModelConfig cfg = tiny_config("mohge");
  cfg.moe.group_loss_start_step = 5;
  Model m(cfg);
  Context ctx(m, Mode::train);
  randomize(m, 3);
  auto in = random_tokens(12, cfg.vocab_size, 1), tg = random_tokens(12, cfg.vocab_size, 2);
  m.forward(ctx, in.data(), tg.data(), 2, 6, 4);
  auto terms = ctx.aux_terms();
  const double before = ctx.aux_loss();
  EXPECT_NEAR(before, cfg.moe.intra_coef * terms.at("intra_group"), 1e-9);
  m.forward(ctx, in.data(), tg.data(), 2, 6, 5);
  const double after = ctx.aux_loss();
  EXPECT_NEAR(after, cfg.moe.intra_coef * terms.at("intra_group") + cfg.moe.group_coef * terms.at("group"), 1e-9);
  EXPECT_GT(terms.at("group"), 0.0);
}

// ------------------------------------------------------------ MoE layer vs dense-compute reference
// An independent slow reference in double: every expert runs on every token (dense compute), and the
// outputs are masked by the gate weights (zero where not selected). The selection is recomputed here
// from SPEC §3 and must equal the layer's Routing; the gate weights are a differentiable function of
// the router logits for that fixed selection, so central differences of the reference give the exact
// input and parameter gradients (router weights included) to compare with MoeFfn::backward.
struct RefMoe {
  MoeConfig m;
  int d, N;
  // parameters in double, same layout as the ParamTable tensors
  std::vector<double> gate, group_gate;
  std::vector<std::vector<double>> wg, wu, wd;  // per expert [W,d], [W,d], [d,W]
  std::vector<double> sg, su, sd;               // shared expert
  // fixed selection (per token: selected experts; per token: selected groups for two-level)
  std::vector<std::vector<int>> sel, groups;

  static double silu(double v) { return v / (1.0 + std::exp(-v)); }

  void swiglu(const std::vector<double>& g, const std::vector<double>& u, const std::vector<double>& dn,
              int W, const double* x, double* y) const {
    std::vector<double> a(W);
    for (int j = 0; j < W; j++) {
      double gj = 0, uj = 0;
      for (int k = 0; k < d; k++) gj += g[(size_t)j * d + k] * x[k], uj += u[(size_t)j * d + k] * x[k];
      a[j] = silu(gj) * uj;
    }
    for (int i = 0; i < d; i++) {
      double s = 0;
      for (int j = 0; j < W; j++) s += dn[(size_t)i * W + j] * a[j];
      y[i] = s;
    }
  }

  // Selection from SPEC §3 (ties: lower index first). Sets sel/groups.
  void select(const std::vector<double>& x) {
    const int E = m.num_experts;
    sel.assign(N, {}), groups.assign(N, {});
    for (int t = 0; t < N; t++) {
      std::vector<double> z(E);
      for (int e = 0; e < E; e++) {
        z[e] = 0;
        for (int k = 0; k < d; k++) z[e] += gate[(size_t)e * d + k] * x[(size_t)t * d + k];
      }
      std::vector<int> idx(E);
      std::iota(idx.begin(), idx.end(), 0);
      auto by = [](const std::vector<double>& s) {
        return [&s](int a, int b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
      };
      if (m.router == RouterKind::top_k) {
        std::sort(idx.begin(), idx.end(), by(z));
        sel[t].assign(idx.begin(), idx.begin() + m.num_experts_per_tok);
      } else if (m.router == RouterKind::top_p) {
        std::vector<double> P = softmax(z);
        std::sort(idx.begin(), idx.end(), by(z));
        double cum = 0;
        int k = 0;
        while (k < E) {
          cum += P[idx[k++]];
          if (cum >= m.top_p) break;
        }
        k = std::clamp(k, 1, m.max_experts_per_tok);
        sel[t].assign(idx.begin(), idx.begin() + k);
      } else {
        const int Ng = m.num_expert_groups, Nn = m.experts_per_group;
        std::vector<double> y(Ng);
        for (int g = 0; g < Ng; g++) {
          y[g] = 0;
          for (int k = 0; k < d; k++) y[g] += group_gate[(size_t)g * d + k] * x[(size_t)t * d + k];
        }
        std::vector<int> gi(Ng);
        std::iota(gi.begin(), gi.end(), 0);
        std::sort(gi.begin(), gi.end(), by(y));
        groups[t].assign(gi.begin(), gi.begin() + m.topk_group);
        std::vector<double> c = combined(z, y, groups[t]);
        std::vector<int> cand;
        for (int g : groups[t])
          for (int i = 0; i < Nn; i++) cand.push_back(g * Nn + i);
        std::sort(cand.begin(), cand.end(), by(c));
        sel[t].assign(cand.begin(), cand.begin() + m.num_experts_per_tok);
      }
      std::sort(sel[t].begin(), sel[t].end());
    }
  }

  static std::vector<double> softmax(const std::vector<double>& z) {
    double mx = *std::max_element(z.begin(), z.end()), s = 0;
    std::vector<double> p(z.size());
    for (size_t i = 0; i < z.size(); i++) s += p[i] = std::exp(z[i] - mx);
    for (auto& v : p) v /= s;
    return p;
  }

  // c_{g,i} = softmax_in_group(z)_{g,i} · σ_g / Σ_{h∈S} σ_h for g ∈ S, else 0
  std::vector<double> combined(const std::vector<double>& z, const std::vector<double>& y,
                               const std::vector<int>& S) const {
    const int Nn = m.experts_per_group;
    std::vector<double> c(m.num_experts, 0.0);
    double ssum = 0;
    for (int g : S) ssum += 1.0 / (1.0 + std::exp(-y[g]));
    for (int g : S) {
      std::vector<double> zg(z.begin() + g * Nn, z.begin() + (g + 1) * Nn);
      auto s = softmax(zg);
      const double q = 1.0 / (1.0 + std::exp(-y[g])) / ssum;
      for (int i = 0; i < Nn; i++) c[g * Nn + i] = s[i] * q;
    }
    return c;
  }

  // gate weights of token t for the fixed selection, as a function of the logits
  std::vector<double> gates(int t, const std::vector<double>& z, const std::vector<double>& y) const {
    const auto& s = sel[t];
    std::vector<double> w(s.size());
    if (m.router != RouterKind::two_level) {
      auto P = softmax(z);
      double sum = 0;
      for (int e : s) sum += P[e];
      for (size_t j = 0; j < s.size(); j++) w[j] = P[s[j]] / sum;
    } else {
      auto c = combined(z, y, groups[t]);
      double sum = 0;
      if (m.gate_norm == GateNorm::softmax) {
        for (int e : s) sum += std::exp(c[e]);
        for (size_t j = 0; j < s.size(); j++) w[j] = std::exp(c[s[j]]) / sum;
      } else {
        for (int e : s) sum += c[e];
        for (size_t j = 0; j < s.size(); j++) w[j] = c[s[j]] / sum;
      }
    }
    return w;
  }

  // out [N,d]; every expert computed on every token, masked by the gates
  std::vector<double> forward(const std::vector<double>& x, std::vector<std::vector<double>>* gates_out = nullptr) const {
    const int E = m.num_experts;
    std::vector<double> out((size_t)N * d, 0.0), ye(d);
    if (gates_out) gates_out->assign(N, {});
    for (int t = 0; t < N; t++) {
      const double* xt = x.data() + (size_t)t * d;
      std::vector<double> z(E), y(m.num_expert_groups);
      for (int e = 0; e < E; e++) {
        z[e] = 0;
        for (int k = 0; k < d; k++) z[e] += gate[(size_t)e * d + k] * xt[k];
      }
      if (m.router == RouterKind::two_level)
        for (int g = 0; g < m.num_expert_groups; g++) {
          y[g] = 0;
          for (int k = 0; k < d; k++) y[g] += group_gate[(size_t)g * d + k] * xt[k];
        }
      auto w = gates(t, z, y);
      std::vector<double> mask(E, 0.0);
      for (size_t j = 0; j < sel[t].size(); j++) mask[sel[t][j]] = w[j];
      if (gates_out) (*gates_out)[t] = mask;
      for (int e = 0; e < E; e++) {  // dense compute: every expert, then the mask
        swiglu(wg[e], wu[e], wd[e], m.expert_widths[e], xt, ye.data());
        for (int i = 0; i < d; i++) out[(size_t)t * d + i] += mask[e] * ye[i];
      }
      if (m.shared_expert_width > 0) {
        swiglu(sg, su, sd, m.shared_expert_width, xt, ye.data());
        for (int i = 0; i < d; i++) out[(size_t)t * d + i] += ye[i];
      }
    }
    return out;
  }
};

std::vector<double> to_double(const float* p, int64_t n) { return std::vector<double>(p, p + n); }

struct MoeCase {
  const char* name;
  const char* kind;
  GateNorm gate_norm;
  int shared;
};

class MoeLayerVsDenseReference : public ::testing::TestWithParam<MoeCase> {};

TEST_P(MoeLayerVsDenseReference, ForwardRoutingAndGradientsMatch) {
  const MoeCase& mc = GetParam();
  ModelConfig cfg = tiny_config(mc.kind, mc.gate_norm);
  MoeConfig& mo = cfg.moe;
  mo.shared_expert_width = mc.shared;
  // no aux losses here: the layer's output path only (aux gradients: whole-model check above)
  mo.lb_coef = mo.pp_coef = mo.entropy_coef = mo.group_coef = mo.intra_coef = 0.0;
  const int d = cfg.hidden_size, N = 10, E = mo.num_experts;

  ParamTable params(mohge::cpu_backend());
  MoeFfn ffn(cfg, params, "mlp");
  params.allocate();
  params.init_weights(17);
  std::mt19937_64 rng(99);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& p : params.infos()) {
    float* dp = params.data(params.find(p.name));
    const float s = is_router_tensor(p.name) ? 0.5f : 0.25f;
    for (int64_t i = 0; i < p.numel; i++) dp[i] = s * nd(rng);
  }
  std::vector<float> x((size_t)N * d), dout((size_t)N * d);
  for (auto& v : x) v = nd(rng);
  for (auto& v : dout) v = nd(rng);

  // engine forward + backward of L = <dout, out>
  std::vector<float> out((size_t)N * d), dx((size_t)N * d, 0.0f);
  ffn.forward(out.data(), x.data(), N, 0, Mode::train);
  params.zero_grad();
  ffn.backward(dx.data(), dout.data(), x.data(), N, 1.0f);

  // reference
  RefMoe ref;
  ref.m = mo, ref.d = d, ref.N = N;
  auto P = [&](const std::string& n) {
    int id = params.find(n);
    EXPECT_GE(id, 0) << n;
    return to_double(params.data(id), params.infos()[id].numel);
  };
  ref.gate = P("mlp.gate.weight");
  if (mo.router == RouterKind::two_level) ref.group_gate = P("mlp.group_gate.weight");
  for (int e = 0; e < E; e++) {
    std::string pre = "mlp.experts." + std::to_string(e);
    ref.wg.push_back(P(pre + ".gate_proj.weight"));
    ref.wu.push_back(P(pre + ".up_proj.weight"));
    ref.wd.push_back(P(pre + ".down_proj.weight"));
  }
  if (mc.shared > 0) {
    ref.sg = P("mlp.shared_experts.gate_proj.weight");
    ref.su = P("mlp.shared_experts.up_proj.weight");
    ref.sd = P("mlp.shared_experts.down_proj.weight");
  }
  std::vector<double> xd(x.begin(), x.end());
  ref.select(xd);
  std::vector<std::vector<double>> gates;
  std::vector<double> rout = ref.forward(xd, &gates);

  // routing identical: same experts, same gate weights
  const Routing& r = ffn.routing()->last();
  ASSERT_EQ(r.T, N);
  int multi = 0;
  for (int t = 0; t < N; t++) {
    std::vector<int> ours(r.expert.begin() + r.offsets[t], r.expert.begin() + r.offsets[t + 1]);
    ASSERT_EQ(ours, ref.sel[t]) << "token " << t;
    multi += ours.size() > 1;
    for (int j = r.offsets[t]; j < r.offsets[t + 1]; j++)
      EXPECT_NEAR(r.weight[j], gates[t][r.expert[j]], 1e-6) << "token " << t;
  }
  EXPECT_GT(multi, 0);
  // forward
  double maxabs = 0;
  for (double v : rout) maxabs = std::max(maxabs, std::abs(v));
  ASSERT_GT(maxabs, 1e-2);
  for (size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], rout[i], 1e-5) << "out[" << i << "]";

  // backward via central differences of the double reference (selection fixed)
  std::vector<double> doutd(dout.begin(), dout.end());
  auto L = [&]() {
    auto o = ref.forward(xd);
    double s = 0;
    for (size_t i = 0; i < o.size(); i++) s += o[i] * doutd[i];
    return s;
  };
  const double h = 1e-5;
  auto fd = [&](double& v) {
    const double v0 = v;
    v = v0 + h;
    const double lp = L();
    v = v0 - h;
    const double lm = L();
    v = v0;
    return (lp - lm) / (2 * h);
  };
  auto compare = [&](const std::string& what, const float* ours, std::vector<double>& refp) {
    std::vector<double> g(refp.size());
    double scale = 0;
    for (size_t i = 0; i < refp.size(); i++) scale = std::max(scale, std::abs(g[i] = fd(refp[i])));
    ASSERT_GT(scale, 0.0) << what;
    int bad = 0;
    for (size_t i = 0; i < refp.size(); i++) {
      const double diff = std::abs(ours[i] - g[i]);
      if (diff > 1e-4 * scale + 1e-3 * std::abs(g[i])) {
        if (bad++ < 5) ADD_FAILURE() << what << "[" << i << "]: MoeFfn " << ours[i] << " vs reference " << g[i];
      }
    }
    EXPECT_EQ(bad, 0) << what;
  };
  compare("dinput", dx.data(), xd);
  compare("mlp.gate.weight", params.grad(params.find("mlp.gate.weight")), ref.gate);
  if (mo.router == RouterKind::two_level)
    compare("mlp.group_gate.weight", params.grad(params.find("mlp.group_gate.weight")), ref.group_gate);
  for (int e = 0; e < E; e++) {
    std::string pre = "mlp.experts." + std::to_string(e);
    compare(pre + ".gate_proj", params.grad(params.find(pre + ".gate_proj.weight")), ref.wg[e]);
    compare(pre + ".up_proj", params.grad(params.find(pre + ".up_proj.weight")), ref.wu[e]);
    compare(pre + ".down_proj", params.grad(params.find(pre + ".down_proj.weight")), ref.wd[e]);
  }
  if (mc.shared > 0) {
    compare("shared.gate_proj", params.grad(params.find("mlp.shared_experts.gate_proj.weight")), ref.sg);
    compare("shared.up_proj", params.grad(params.find("mlp.shared_experts.up_proj.weight")), ref.su);
    compare("shared.down_proj", params.grad(params.find("mlp.shared_experts.down_proj.weight")), ref.sd);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Routers, MoeLayerVsDenseReference,
    ::testing::Values(MoeCase{"moe_top_k", "moe", GateNorm::softmax, 0},
                      MoeCase{"moe_top_k_shared", "moe", GateNorm::softmax, 8},
                      MoeCase{"hmoe_top_p", "hmoe", GateNorm::softmax, 0},
                      MoeCase{"mohge_softmax_shared", "mohge", GateNorm::softmax, 8},
                      MoeCase{"mohge_renorm", "mohge", GateNorm::renorm, 0}),
    [](const auto& info) { return std::string(info.param.name); });

// ------------------------------------------------------------------------- checkpoint round trip
std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& toks) {
  Context ctx(m, Mode::eval);
  m.forward(ctx, toks.data(), nullptr, 1, (int)toks.size());
  return std::vector<float>(ctx.logits(), ctx.logits() + toks.size() * (size_t)m.cfg.vocab_size);
}

class CheckpointRoundTrip : public ::testing::TestWithParam<std::tuple<const char*, bool>> {};

TEST_P(CheckpointRoundTrip, SaveLoadIsBitIdentical) {
  auto [kind, tie] = GetParam();
  ModelConfig cfg = tiny_config(kind);
  cfg.tie_word_embeddings = tie;
  Model m(cfg);
  randomize(m, 21);
  TmpDir dir;
  model_save(dir.str(), m);
  EXPECT_TRUE(fs::exists(dir / "config.json"));
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  for (auto& e : fs::directory_iterator(dir.str()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();

  auto m2 = model_load(dir.str());
  EXPECT_EQ(model_config_to_json(m2->cfg), model_config_to_json(cfg));
  ASSERT_EQ(m2->params.infos().size(), m.params.infos().size());
  for (auto& p : m.params.infos()) {
    int id = m2->params.find(p.name);
    ASSERT_GE(id, 0) << p.name;
    ASSERT_EQ(m2->params.infos()[id].shape, p.shape);
    EXPECT_EQ(std::memcmp(m2->params.data(id), m.params.all_data() + p.offset, p.numel * 4), 0) << p.name;
  }
  auto toks = random_tokens(7, cfg.vocab_size, 3);
  auto a = logits_of(m, toks), b = logits_of(*m2, toks);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);

  auto st = SafetensorsFile::load(dir / "model.safetensors");
  EXPECT_EQ(st.has("lm_head.weight"), !tie);
  EXPECT_TRUE(st.has("model.embed_tokens.weight"));
  EXPECT_EQ(st.tensors().size(), m.params.infos().size());
  auto j = nlohmann::json::parse(read_file_text(dir / "config.json"));
  EXPECT_EQ(j.at("tie_word_embeddings").get<bool>(), tie);
  if (tie) {  // the LM head is the embedding
    int lm = m2->params.find("lm_head.weight");
    EXPECT_LT(lm, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CheckpointRoundTrip,
                         ::testing::Values(std::make_tuple("dense", false), std::make_tuple("dense", true),
                                           std::make_tuple("hmoe", false), std::make_tuple("mohge", false),
                                           std::make_tuple("mohge", true)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + (std::get<1>(info.param) ? "_tied" : "_untied");
                         });

// ----------------------------------------------------------------------------- bad checkpoints
class BadCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = tiny_config("mohge");
    Model m(cfg_);
    randomize(m, 4);
    model_save(dir_.str(), m);
  }
  std::string st() const { return dir_ / "model.safetensors"; }
  std::string cfgp() const { return dir_ / "config.json"; }
  nlohmann::json config() const { return nlohmann::json::parse(read_file_text(cfgp())); }
  void write_config(const nlohmann::json& j) { write_file_atomic(cfgp(), j.dump(2)); }
  // rewrite model.safetensors with an edit applied to the tensor list
  template <class Edit>
  void rewrite_tensors(Edit edit) {
    auto f = SafetensorsFile::load(st());
    std::vector<TensorView> ts = f.tensors();
    std::vector<std::vector<char>> keep;  // copies, since f's buffer dies before the write completes
    edit(ts, keep);
    safetensors_write(st() + ".new", ts);
    fs::rename(st() + ".new", st());
  }
  ModelConfig cfg_;
  TmpDir dir_;
};

TEST_F(BadCheckpoint, MissingSafetensorsFile) {
  fs::remove(st());
  EXPECT_ERROR(model_load(dir_.str()), "model.safetensors");
}

TEST_F(BadCheckpoint, MissingConfigJson) {
  fs::remove(cfgp());
  EXPECT_ERROR(model_load(dir_.str()), "no config.json");
}

TEST_F(BadCheckpoint, TruncatedSafetensors) {
  auto bytes = read_file_bytes(st());
  for (size_t keep : {bytes.size() - 1, bytes.size() / 2, (size_t)100, (size_t)4}) {
    std::ofstream(st(), std::ios::binary | std::ios::trunc).write(bytes.data(), (std::streamsize)keep);
    try {
      model_load(dir_.str());
      ADD_FAILURE() << "truncated to " << keep << " bytes loaded";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
      EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("corrupt") != std::string::npos ||
                  msg.find("not a safetensors") != std::string::npos || msg.find("exceed") != std::string::npos ||
                  msg.find("out of") != std::string::npos)
          << "message does not name the problem: " << msg;
    }
  }
}

TEST_F(BadCheckpoint, CorruptHeaderJson) {
  auto bytes = read_file_bytes(st());
  uint64_t hlen;
  std::memcpy(&hlen, bytes.data(), 8);
  ASSERT_GT(hlen, 10u);
  ASSERT_EQ(bytes[8], '{');
  bytes[9] = '#';  // the JSON header no longer parses
  std::ofstream(st(), std::ios::binary | std::ios::trunc).write(bytes.data(), (std::streamsize)bytes.size());
  EXPECT_ERROR(model_load(dir_.str()), "corrupt safetensors header");
}

TEST_F(BadCheckpoint, HeaderLengthBeyondFile) {
  auto bytes = read_file_bytes(st());
  uint64_t huge = 1ull << 40;
  std::memcpy(bytes.data(), &huge, 8);
  std::ofstream(st(), std::ios::binary | std::ios::trunc).write(bytes.data(), (std::streamsize)bytes.size());
  EXPECT_ERROR(model_load(dir_.str()), "truncated or corrupt");
}

TEST_F(BadCheckpoint, ConfigDoesNotMatchTensorShapes) {
  auto j = config();
  j["intermediate_size"] = 32;  // the dense first layer's tensors are [24, 16]
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "model.layers.0.mlp.gate_proj.weight' has shape [24, 16], the config implies [32, 16]");
  j = config();
  j["intermediate_size"] = 24;
  j["expert_widths"] = {8, 8, 12, 12, 16, 20};
  j["num_expert_groups"] = 2;
  j["experts_per_group"] = 3;
  // widths inside a group unequal -> config error naming the key, before any tensor is read
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "config.json");
}

TEST_F(BadCheckpoint, MissingTensor) {
  rewrite_tensors([](std::vector<TensorView>& ts, auto&) {
    ts.erase(std::remove_if(ts.begin(), ts.end(),
                            [](auto& t) { return t.name == "model.layers.1.mlp.experts.3.up_proj.weight"; }),
             ts.end());
  });
  EXPECT_ERROR(model_load(dir_.str()), "missing tensor 'model.layers.1.mlp.experts.3.up_proj.weight'");
}

TEST_F(BadCheckpoint, ExtraUnknownTensor) {
  static float extra[4] = {1, 2, 3, 4};
  rewrite_tensors([](std::vector<TensorView>& ts, auto&) {
    ts.push_back({"model.layers.1.mlp.experts.6.up_proj.weight", "F32", {2, 2}, extra, sizeof(extra)});
  });
  EXPECT_ERROR(model_load(dir_.str()), "tensor 'model.layers.1.mlp.experts.6.up_proj.weight' is not part of the model");
}

TEST_F(BadCheckpoint, WrongDtype) {
  rewrite_tensors([](std::vector<TensorView>& ts, auto&) {
    for (auto& t : ts)
      if (t.name == "model.norm.weight") t.dtype = "I32";
  });
  EXPECT_ERROR(model_load(dir_.str()), "'model.norm.weight' is I32, expected F32");
}

TEST_F(BadCheckpoint, MalformedConfigJson) {
  write_file_atomic(cfgp(), "{\"vocab_size\": 32, \"hidden_size\": ");
  EXPECT_ERROR(model_load(dir_.str()), "malformed JSON");
  write_file_atomic(cfgp(), "{\"vocab_size\": \"many\"}");
  EXPECT_ERROR(model_load(dir_.str()), "config.json: vocab_size must be an integer (got \"many\")");
  auto j = nlohmann::json::parse(R"({"vocab_size": 32})");
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "config.json has no 'hidden_size'");
  write_file_atomic(cfgp(), "[1, 2]");
  EXPECT_ERROR(model_load(dir_.str()), "config.json must be a JSON object");
}

TEST_F(BadCheckpoint, HeadsDoNotDivideHiddenSize) {
  auto j = config();
  j["num_attention_heads"] = 3;
  j["num_key_value_heads"] = 3;
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "num_heads = 3 does not divide hidden_size = 16");
}

TEST_F(BadCheckpoint, NegativeOrZeroSizesInConfig) {
  auto j = config();
  j["vocab_size"] = 0;
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "config.json: vocab_size = 0 must be in [1, 2097152]");
  j["vocab_size"] = 32;
  j["num_hidden_layers"] = -2;
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "config.json: num_hidden_layers = -2 must be in [1, 1024]");
}

TEST_F(BadCheckpoint, UnknownFfnKindOrRouter) {
  auto j = config();
  j["router"] = "top_q";
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "config.json: router = \"top_q\" must be one of top_k, top_p, two_level");
  j["router"] = "two_level";
  j["ffn_kind"] = "sparse";
  write_config(j);
  EXPECT_ERROR(model_load(dir_.str()), "config.json: ffn_kind = \"sparse\" must be one of dense, moe, hmoe, mohge");
}

TEST(CheckpointResolve, ClearErrorsForNonCheckpoints) {
  TmpDir dir;
  EXPECT_ERROR(checkpoint_resolve(dir / "nope"), "does not exist");
  EXPECT_ERROR(checkpoint_resolve(dir.str()), "neither a checkpoint");
}

// ------------------------------------------------------------------------------- KV-cache decode
// max |a − b| over a row of V logits, failing the test when above tol
void expect_logits_near(const float* a, const float* b, int V, double tol, const std::string& what) {
  double diff = 0;
  for (int v = 0; v < V; v++) diff = std::max(diff, (double)std::abs(a[v] - b[v]));
  EXPECT_LE(diff, tol) << what;
}

class KvCacheDecode : public ::testing::TestWithParam<const char*> {};

// The prompt prefilled as one batch, then one token per decode step: the logits after every
// prefix equal the full forward's logits at that position.
TEST_P(KvCacheDecode, PrefillAndDecodeLogitsEqualFullForward) {
  ModelConfig cfg = tiny_config(GetParam());
  Model m(cfg);
  randomize(m, 8);
  const int T = 9, P = 4, V = cfg.vocab_size;
  auto toks = random_tokens(T, V, 77);
  auto full = logits_of(m, toks);
  double scale = 0;
  for (float z : full) scale = std::max(scale, (double)std::abs(z));
  EXPECT_GT(scale, 0.05);
  Context ctx(m, Mode::decode, 1, T);
  const std::vector<int32_t> seq0(T, 0);
  m.decode(ctx, toks.data(), seq0.data(), P);
  EXPECT_EQ(ctx.seq_len(0), P);
  expect_logits_near(ctx.seq_logits(0), full.data() + (size_t)(P - 1) * V, V, 1e-5, "after the prefill");
  for (int t = P; t < T; t++) {
    m.decode(ctx, &toks[t], seq0.data(), 1);
    expect_logits_near(ctx.seq_logits(0), full.data() + (size_t)t * V, V, 1e-5, "position " + std::to_string(t));
  }
  EXPECT_EQ(ctx.seq_len(0), T);
  // the cache is full now; a failed decode changes nothing
  EXPECT_ERROR(m.decode(ctx, toks.data(), seq0.data(), 1), "KV cache full");
  EXPECT_EQ(ctx.seq_len(0), T);
  // cleared, the sequence starts again at position 0, here one token at a time
  ctx.clear(0);
  for (int t = 0; t < 2; t++) m.decode(ctx, &toks[t], seq0.data(), 1);
  expect_logits_near(ctx.seq_logits(0), full.data() + (size_t)V, V, 1e-5, "after clear");
}

INSTANTIATE_TEST_SUITE_P(Kinds, KvCacheDecode, ::testing::Values("dense", "moe", "hmoe", "mohge"),
                         [](const auto& info) { return std::string(info.param); });

class BatchedDecode : public ::testing::TestWithParam<const char*> {};

// Three sequences prefilled in one batch (three runs of different lengths), then decoded together
// at different positions (in any row order, not every sequence in every step): each sequence's
// logits equal decoding it alone in its own context.
TEST_P(BatchedDecode, SequencesAtDifferentPositionsEqualEachAlone) {
  ModelConfig cfg = tiny_config(GetParam());
  Model m(cfg);
  randomize(m, 12);
  const int S = 3, V = cfg.vocab_size, max_len = 16;
  const std::vector<int> prompt_len = {2, 6, 3};
  std::vector<std::vector<int32_t>> toks;
  for (int s = 0; s < S; s++) toks.push_back(random_tokens(12, V, 200 + s));
  // steps: which sequences feed their next token, in row order
  const std::vector<std::vector<int32_t>> steps = {{0, 1, 2}, {2, 0, 1}, {1, 2}, {0, 1, 2}};

  Context batch(m, Mode::decode, S, max_len);
  std::vector<std::unique_ptr<Context>> alone;
  std::vector<int32_t> rows, seqs;
  for (int s = 0; s < S; s++) {
    alone.push_back(std::make_unique<Context>(m, Mode::decode, 1, max_len));
    const std::vector<int32_t> zero(prompt_len[s], 0);
    m.decode(*alone[s], toks[s].data(), zero.data(), prompt_len[s]);
    rows.insert(rows.end(), toks[s].begin(), toks[s].begin() + prompt_len[s]);
    seqs.insert(seqs.end(), prompt_len[s], s);
  }
  m.decode(batch, rows.data(), seqs.data(), (int)rows.size());
  for (int s = 0; s < S; s++)
    expect_logits_near(batch.seq_logits(s), alone[s]->seq_logits(0), V, 1e-5, "prefill of sequence " + std::to_string(s));
  for (size_t k = 0; k < steps.size(); k++) {
    rows.clear();
    for (int32_t s : steps[k]) {
      const int32_t tok = toks[s][batch.seq_len(s)], zero = 0;
      rows.push_back(tok);
      m.decode(*alone[s], &tok, &zero, 1);
    }
    m.decode(batch, rows.data(), steps[k].data(), (int)rows.size());
    for (int32_t s : steps[k]) {
      EXPECT_EQ(batch.seq_len(s), alone[s]->seq_len(0));
      expect_logits_near(batch.seq_logits(s), alone[s]->seq_logits(0), V, 1e-5,
                         fmt::format("step {} sequence {}", k, s));
    }
  }
  EXPECT_EQ(batch.seq_len(0), 2 + 3);
  EXPECT_EQ(batch.seq_len(1), 6 + 4);
}

INSTANTIATE_TEST_SUITE_P(Kinds, BatchedDecode, ::testing::Values("dense", "mohge"),
                         [](const auto& info) { return std::string(info.param); });

// Logits of sequence s after feeding it toks (one prefill of P tokens, then one token per step),
// in a decode context of S sequences where all S are fed the same way in every batch.
std::vector<std::vector<float>> decode_logits(const Model& m, const std::vector<std::vector<int32_t>>& toks, int P) {
  const int S = (int)toks.size(), T = (int)toks[0].size(), V = m.cfg.vocab_size;
  Context ctx(m, Mode::decode, S, T);
  std::vector<std::vector<float>> out(S);
  for (int t = 0; t < T; t = t == 0 ? P : t + 1) {
    const int n = t == 0 ? P : 1;
    std::vector<int32_t> rows, seqs;
    for (int s = 0; s < S; s++)
      for (int j = 0; j < n; j++) rows.push_back(toks[s][t + j]), seqs.push_back(s);
    m.decode(ctx, rows.data(), seqs.data(), (int)rows.size());
    for (int s = 0; s < S; s++) out[s].insert(out[s].end(), ctx.seq_logits(s), ctx.seq_logits(s) + V);
  }
  return out;
}

class InferenceLoad : public ::testing::TestWithParam<const char*> {};

// model_load_inference: the checkpoint's weights memory-mapped, no gradients, frozen (decode's
// products through kernels/matvec.h). Its decoding equals the training kernels' to 1e-5; a
// sequence decodes to the same bits alone or batched with others; a file laid out otherwise is
// copied, to the same bits; bf16 weights change the logits by less than 2% of their range.
TEST_P(InferenceLoad, MappedFrozenWeightsDecodeAsTheTrainedModel) {
  ModelConfig cfg = tiny_config(GetParam());
  Model m(cfg);
  randomize(m, 31);
  TmpDir dir;
  model_save(dir.str(), m);
  auto inf = model_load_inference(dir.str());
  EXPECT_TRUE(inf->params.adopted()) << "model_save's layout is the model's: mapped";
  EXPECT_FALSE(inf->params.has_grads());
  EXPECT_TRUE(m.params.has_grads());

  const int S = 3, T = 10, P = 4, V = cfg.vocab_size;
  std::vector<std::vector<int32_t>> toks;
  for (int s = 0; s < S; s++) toks.push_back(random_tokens(T, V, 400 + s));
  const auto want = decode_logits(m, toks, P), got = decode_logits(*inf, toks, P);
  for (int s = 0; s < S; s++) {
    expect_logits_near(got[s].data(), want[s].data(), (int)want[s].size(), 1e-5, "sequence " + std::to_string(s));
    const auto alone = decode_logits(*inf, {toks[s]}, P)[0];
    EXPECT_EQ(std::memcmp(alone.data(), got[s].data(), alone.size() * 4), 0) << "sequence " << s << " alone vs batched";
  }

  // tensors in another order: not the model's layout, so copied; the same weights
  std::vector<TensorView> ts;
  for (auto& p : m.params.infos()) ts.push_back({p.name, "F32", p.shape, m.params.all_data() + p.offset, (size_t)p.numel * 4});
  std::reverse(ts.begin(), ts.end());
  TmpDir other;
  fs::copy_file(dir / "config.json", other / "config.json");
  safetensors_write(other / "model.safetensors", ts);
  auto copied = model_load_inference(other.str());
  EXPECT_FALSE(copied->params.adopted());
  EXPECT_FALSE(copied->params.has_grads());
  const auto got_copied = decode_logits(*copied, toks, P);
  for (int s = 0; s < S; s++) EXPECT_EQ(std::memcmp(got_copied[s].data(), got[s].data(), got[s].size() * 4), 0);

  if (!matvec_bf16_supported() || !bf16_supported()) {
    EXPECT_ERROR(model_load_inference(dir.str(), cpu_backend(), "bf16"), "AVX512-BF16");
    return;
  }
  auto bf = model_load_inference(dir.str(), cpu_backend(), "bf16");
  EXPECT_EQ(bf->cfg.matmul_precision, Precision::bf16);
  const auto got_bf = decode_logits(*bf, toks, P);
  double lmax = 0, ldiff = 0;
  for (int s = 0; s < S; s++)
    for (size_t i = 0; i < got[s].size(); i++)
      lmax = std::max(lmax, (double)std::abs(got[s][i])), ldiff = std::max(ldiff, (double)std::abs(got_bf[s][i] - got[s][i]));
  std::printf("%s bf16 weights vs fp32: max logit diff %.2e of max |logit| %.2f\n", GetParam(), ldiff, lmax);
  EXPECT_GT(ldiff, 0.0) << "bf16 weights gave bit-identical logits: not in effect";
  EXPECT_LT(ldiff, 2e-2 * lmax);
  EXPECT_ERROR(model_load_inference(dir.str(), cpu_backend(), "fp16"), "--weights-dtype = \"fp16\": expected \"fp32\" or \"bf16\"");
}

// A prompt longer than decode's matrix–vector batches (kMatvecMaxRows): the loaded model's products
// go through CpuBackend's row split (each thread's rows of q, k and v, or of gate and up, in one
// parallel region), the trained model's through oneDNN's own threads, rounding the weights to bf16
// per call under bf16. The logits of an eval forward (every position) and of a prefill (its last
// row) agree within float rounding, fp32 and bf16.
TEST_P(InferenceLoad, LongPromptsMatchTheTrainingKernels) {
  ModelConfig cfg = tiny_config(GetParam());
  cfg.max_seq_len = 80;
  const int T = 70, V = cfg.vocab_size;
  ASSERT_GT(T, kMatvecMaxRows);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);  // the split needs two threads, whatever the machine
  const auto toks = random_tokens(T, V, 77);
  for (Precision p : {Precision::fp32, Precision::bf16}) {
    if (p == Precision::bf16 && (!matvec_bf16_supported() || !bf16_supported())) continue;
    cfg.matmul_precision = p;
    Model m(cfg);
    randomize(m, 31);
    TmpDir dir;
    model_save(dir.str(), m);
    auto inf = model_load_inference(dir.str(), cpu_backend(), precision_name(p));
    Context want(m, Mode::eval), got(*inf, Mode::eval);
    m.forward(want, toks.data(), nullptr, 1, T);
    inf->forward(got, toks.data(), nullptr, 1, T);
    double lmax = 0, diff = 0;
    for (size_t i = 0; i < (size_t)T * V; i++)
      lmax = std::max(lmax, (double)std::abs(want.logits()[i])), diff = std::max(diff, (double)std::abs(got.logits()[i] - want.logits()[i]));
    const double tol = (p == Precision::fp32 ? 1e-6 : 1e-3) * lmax;
    EXPECT_LE(diff, tol) << precision_name(p) << " eval forward";
    const auto prefill_want = decode_logits(m, {toks}, T)[0], prefill_got = decode_logits(*inf, {toks}, T)[0];
    double pdiff = 0;
    for (int v = 0; v < V; v++) pdiff = std::max(pdiff, (double)std::abs(prefill_got[v] - prefill_want[v]));
    EXPECT_LE(pdiff, tol) << precision_name(p) << " prefill";
    std::printf("%s %s: max logit diff %.2e (forward), %.2e (prefill) of max |logit| %.2f\n", GetParam(),
                precision_name(p), diff, pdiff, lmax);
  }
  omp_set_num_threads(threads);
}

INSTANTIATE_TEST_SUITE_P(Kinds, InferenceLoad, ::testing::Values("dense", "moe", "mohge"),
                         [](const auto& info) { return std::string(info.param); });

// Decode batches that cannot be run are errors that leave the cache as it was.
TEST(BatchedDecode, BadBatchesAreErrors) {
  ModelConfig cfg = tiny_config("dense");
  Model m(cfg);
  randomize(m, 1);
  Context ctx(m, Mode::decode, 2, 4);
  std::vector<int32_t> tok = {1, 2, 3}, seq = {0, 1, 0};
  EXPECT_ERROR(m.decode(ctx, tok.data(), seq.data(), 3), "rows of sequence 0 are not one consecutive run");
  seq = {0, 2, 2};
  EXPECT_ERROR(m.decode(ctx, tok.data(), seq.data(), 3), "sequence 2 is outside the KV cache of 2 sequences");
  seq = {1, 1, 1};
  tok[1] = 32;
  EXPECT_ERROR(m.decode(ctx, tok.data(), seq.data(), 3), "token id 32 is outside the vocabulary [0, 32)");
  tok[1] = -1;
  EXPECT_ERROR(m.decode(ctx, tok.data(), seq.data(), 3), "token id -1 is outside the vocabulary");
  EXPECT_ERROR(m.decode(ctx, tok.data(), seq.data(), 0), "empty batch");
  tok = {1, 2, 3, 4, 5};
  seq = {1, 1, 1, 1, 1};
  EXPECT_ERROR(m.decode(ctx, tok.data(), seq.data(), 5), "sequence 1: KV cache full (4 positions)");
  EXPECT_EQ(ctx.seq_len(0), 0);
  EXPECT_EQ(ctx.seq_len(1), 0);
  EXPECT_ERROR(ctx.seq_logits(1), "sequence 1 had no row in the last decode batch");
  // contexts of the wrong mode or model, bad cache sizes
  Context train(m, Mode::train);
  EXPECT_ERROR(m.decode(train, tok.data(), seq.data(), 1), "decode needs a decode context");
  EXPECT_ERROR(m.forward(ctx, tok.data(), nullptr, 1, 1), "forward needs a train or eval context");
  Model other(cfg);
  EXPECT_ERROR(other.decode(ctx, tok.data(), seq.data(), 1), "the context was made for another model");
  EXPECT_ERROR(Context(m, Mode::decode, 0, 4), "needs at least one sequence");
  EXPECT_ERROR(Context(m, Mode::decode, 1, cfg.max_seq_len + 1), "KV cache length");
}

// ------------------------------------------------------------------------- token id validation
TEST(ModelInputs, TokenIdsOutsideVocabularyAreErrors) {
  ModelConfig cfg = tiny_config("moe");
  Model m(cfg);
  Context ctx(m, Mode::train);
  randomize(m, 1);
  std::vector<int32_t> in = {1, 2, 3, 4}, tg = {2, 3, 4, 5};
  EXPECT_NO_THROW(m.forward(ctx, in.data(), tg.data(), 1, 4));
  in[2] = 32;
  EXPECT_ERROR(m.forward(ctx, in.data(), tg.data(), 1, 4), "token id 32 at position 2 is outside the vocabulary [0, 32)");
  in[2] = -1;
  EXPECT_ERROR(m.forward(ctx, in.data(), nullptr, 1, 4), "token id -1 at position 2 is outside the vocabulary");
  in[2] = 3;
  tg[3] = 40;
  EXPECT_ERROR(m.forward(ctx, in.data(), tg.data(), 1, 4), "target id 40 at position 3 is outside the vocabulary");
  tg[3] = -7;
  EXPECT_ERROR(m.forward(ctx, in.data(), tg.data(), 1, 4), "target id -7");
  // sequence longer than max_seq_len, empty batch
  std::vector<int32_t> longer(cfg.max_seq_len + 1, 1);
  EXPECT_ERROR(m.forward(ctx, longer.data(), nullptr, 1, (int)longer.size()), "exceeds model max_seq_len");
  EXPECT_ERROR(m.forward(ctx, in.data(), nullptr, 0, 4), "empty batch");
}

TEST(ModelInputs, BackwardWithoutTargetsIsAnError) {
  ModelConfig cfg = tiny_config("dense");
  Model m(cfg);
  Context ctx(m, Mode::train);
  randomize(m, 1);
  std::vector<int32_t> in = {1, 2, 3};
  m.forward(ctx, in.data(), nullptr, 1, 3);
  EXPECT_ERROR(m.backward(ctx, 1.0f), "without a forward with targets");
}

// ----------------------------------------------------------------------------- thread count
// The multi-threaded paths (OpenMP loops over tokens, the router's parallel region for >= 64 tokens)
// give the same results as one thread. Loops under kParallelMinElems elements run on the calling
// thread (kernels/parallel.h), so the second case is wide enough for every split to be taken.
void expect_same_for_one_and_two_threads(ModelConfig cfg) {
  cfg.max_seq_len = 48;
  const int B = 2, T = 40, N = B * T;
  auto in = random_tokens(N, cfg.vocab_size, 1), tg = random_tokens(N, cfg.vocab_size, 2);
  std::vector<float> logits[2], grads[2];
  double loss[2];
  const int saved = omp_get_max_threads();
  for (int k = 0; k < 2; k++) {
    omp_set_num_threads(k + 1);
    Model m(cfg);
    Context ctx(m, Mode::train);
    randomize(m, 5);
    m.params.zero_grad();
    loss[k] = m.forward(ctx, in.data(), tg.data(), B, T, 0) + ctx.aux_loss();
    logits[k].assign(ctx.logits(), ctx.logits() + (size_t)N * cfg.vocab_size);
    m.backward(ctx, 1.0f);
    grads[k].assign(m.params.all_grad(), m.params.all_grad() + m.params.total());
  }
  omp_set_num_threads(saved);
  EXPECT_NEAR(loss[0], loss[1], 1e-6);
  for (size_t i = 0; i < logits[0].size(); i++) ASSERT_NEAR(logits[0][i], logits[1][i], 1e-5) << i;
  double gmax = 0;
  for (float g : grads[0]) gmax = std::max(gmax, (double)std::abs(g));
  for (size_t i = 0; i < grads[0].size(); i++) ASSERT_NEAR(grads[0][i], grads[1][i], 1e-5 * gmax + 1e-9) << i;
}

TEST(ThreadCount, ForwardBackwardAgreeForOneAndTwoThreads) { expect_same_for_one_and_two_threads(tiny_config("mohge")); }

TEST(ThreadCount, WideEnoughToSplitEveryLoopAgreesForOneAndTwoThreads) {
  ModelConfig cfg = tiny_config("dense");
  cfg.hidden_size = 256;  // N·d = 80·256 = 20,480 ≥ kParallelMinElems: rmsnorm, rope, adds split
  cfg.intermediate_size = 256;  // SwiGLU over 80·256
  cfg.init_std = 0.02;
  ASSERT_GE(80 * cfg.hidden_size, kParallelMinElems);
  expect_same_for_one_and_two_threads(cfg);
}

// ------------------------------------------------------------------------------ changing shapes
// Activation buffers are reused across calls: a forward after calls with other (B, T) gives the same
// logits and gradients as a fresh model.
TEST(ModelShapes, ForwardBackwardAfterOtherBatchShapesMatchesFreshModel) {
  ModelConfig cfg = tiny_config("hmoe");
  auto run = [&](Model& m, Context& ctx, int B, int T, std::vector<float>* grad) {
    auto in = random_tokens(B * T, cfg.vocab_size, 100 + B * 31 + T), tg = random_tokens(B * T, cfg.vocab_size, 7 + B + T);
    m.params.zero_grad();
    double loss = m.forward(ctx, in.data(), tg.data(), B, T, 0) + ctx.aux_loss();
    std::vector<float> logits(ctx.logits(), ctx.logits() + (size_t)B * T * cfg.vocab_size);
    m.backward(ctx, 1.0f);
    if (grad) grad->assign(m.params.all_grad(), m.params.all_grad() + m.params.total());
    logits.push_back((float)loss);
    return logits;
  };
  Model fresh(cfg), reused(cfg);
  Context fresh_ctx(fresh, Mode::train), reused_ctx(reused, Mode::train);
  randomize(fresh, 9);
  randomize(reused, 9);
  run(reused, reused_ctx, 2, 6, nullptr);
  run(reused, reused_ctx, 1, 12, nullptr);
  run(reused, reused_ctx, 3, 2, nullptr);
  std::vector<float> g1, g2;
  auto a = run(fresh, fresh_ctx, 2, 5, &g1);
  auto b = run(reused, reused_ctx, 2, 5, &g2);
  EXPECT_EQ(a, b);
  EXPECT_EQ(g1, g2);
}

// ----------------------------------------------------------------------------------- generation
// A model vocabulary padded beyond the tokenizer's: generation never emits an id the tokenizer
// cannot decode, even when those ids have the largest logits.
// sample_token draws each id with its probability under softmax(logits / T) restricted to the
// top-k (ties: the lower id) and then the nucleus (the fewest ids whose probability reaches top_p),
// against those probabilities computed here in double, over many draws (5 standard errors).
TEST(Sampling, DrawsEachTokenWithItsTruncatedSoftmaxProbability) {
  const std::vector<float> logits = {2.0f, 1.0f, 1.0f, 0.5f, -1.0f, 3.0f, 0.0f, 1.5f};
  const int V = (int)logits.size();
  struct Case { double t; int k; double p; };
  for (const Case c : {Case{1.0, 0, 1.0}, Case{0.7, 3, 1.0}, Case{1.0, 0, 0.8}, Case{1.3, 5, 0.9}, Case{1.0, 4, 1.0},
                       Case{2.0, 0, 0.05}}) {
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    order.resize(c.k > 0 ? c.k : V);
    std::vector<double> w;
    double kept = 0.0;
    for (int id : order) kept += w.emplace_back(std::exp((logits[id] - 3.0) / c.t));
    size_t n = 0;
    for (double cum = 0.0; n < w.size() && cum < c.p * kept;) cum += w[n++];
    std::vector<double> want(V, 0.0);
    double sum = 0.0;
    for (size_t j = 0; j < n; j++) sum += w[j];
    for (size_t j = 0; j < n; j++) want[order[j]] = w[j] / sum;
    SamplingOptions o;
    o.temperature = c.t, o.top_k = c.k, o.top_p = c.p;
    std::mt19937_64 rng(7);
    const int draws = 200000;
    std::vector<int> count(V, 0);
    for (int i = 0; i < draws; i++) count[sample_token(logits.data(), V, o, rng)]++;
    for (int id = 0; id < V; id++) {
      const double f = (double)count[id] / draws, se = std::sqrt(want[id] * (1 - want[id]) / draws);
      if (want[id] == 0.0) EXPECT_EQ(count[id], 0) << "id " << id << " is outside top-k / nucleus (T " << c.t << " k " << c.k << " p " << c.p << ")";
      else EXPECT_NEAR(f, want[id], 5 * se + 1e-4) << "id " << id << " (T " << c.t << " k " << c.k << " p " << c.p << ")";
    }
  }
  // a nucleus far beyond the first sorted head (64 ids): nearly flat logits over 3000 ids, p = 0.5
  std::vector<float> flat(3000);
  for (int i = 0; i < 3000; i++) flat[i] = -0.0005f * i;
  double total = 0.0, cum = 0.0;
  for (float x : flat) total += std::exp((double)x);
  int nucleus = 0;
  while (cum < 0.5 * total) cum += std::exp((double)flat[nucleus++]);
  SamplingOptions o;
  o.temperature = 1.0, o.top_p = 0.5;
  std::mt19937_64 rng(3);
  int highest = 0;
  for (int i = 0; i < 3000; i++) {
    const int id = sample_token(flat.data(), 3000, o, rng);
    ASSERT_LT(id, nucleus) << "outside the nucleus of " << nucleus << " ids";
    highest = std::max(highest, id);
  }
  EXPECT_GT(highest, nucleus * 9 / 10) << "the nucleus's last ids are never drawn";
}

TEST(Generate, VocabLimitKeepsSamplesInsideTheTokenizerVocabulary) {
  ModelConfig cfg = tiny_config("dense");
  Model m(cfg);
  randomize(m, 2);
  const int limit = 20;
  // make the padded ids [20, 32) win: their LM-head rows align with the final hidden state's typical
  // direction, scaled up
  float* lm = m.params.data(m.params.find("lm_head.weight"));
  std::vector<int32_t> prompt = {1, 2, 3};
  for (int v = limit; v < cfg.vocab_size; v++)
    for (int i = 0; i < cfg.hidden_size; i++) lm[(size_t)v * cfg.hidden_size + i] = lm[(size_t)0 * cfg.hidden_size + i] * 50.0f;
  SamplingOptions o;
  o.max_new_tokens = 8;
  o.temperature = 0;  // greedy
  auto unlimited = generate(m, prompt, o);
  ASSERT_FALSE(unlimited.empty());
  EXPECT_TRUE(std::any_of(unlimited.begin(), unlimited.end(), [&](int32_t t) { return t >= limit; }))
      << "setup: the padded ids should win without a limit";
  o.vocab_limit = limit;
  for (double temp : {0.0, 1.0}) {
    o.temperature = temp;
    auto out = generate(m, prompt, o);
    EXPECT_EQ(out.size(), 8u);
    for (int32_t t : out) EXPECT_LT(t, limit);
  }
}

}  // namespace

// ------------------------------------------------------------------------------ mixed precision
// run.matmul_precision = bf16 rounds matmul inputs to bfloat16 (8 significant bits) and keeps
// everything else fp32, routers included. Same weights and batch as fp32: the loss, logits and
// gradient direction agree to what 8-bit inputs allow, for every FFN kind.
class MixedPrecision : public ::testing::TestWithParam<const char*> {};

TEST_P(MixedPrecision, Bf16TracksFp32) {
  if (!bf16_supported()) GTEST_SKIP() << "no AVX512-BF16 on this CPU: bf16 model not run";
  ModelConfig cfg = tiny_config(GetParam());
  cfg.max_seq_len = 48;
  const int B = 2, T = 40, N = B * T;
  auto in = random_tokens(N, cfg.vocab_size, 11), tg = random_tokens(N, cfg.vocab_size, 12);
  double loss[2];
  std::vector<float> logits[2], grads[2];
  for (int k = 0; k < 2; k++) {
    cfg.matmul_precision = k ? Precision::bf16 : Precision::fp32;
    Model m(cfg);
    Context ctx(m, Mode::train);
    randomize(m, 21);
    m.params.zero_grad();
    loss[k] = m.forward(ctx, in.data(), tg.data(), B, T, 0) + ctx.aux_loss();
    logits[k].assign(ctx.logits(), ctx.logits() + (size_t)N * cfg.vocab_size);
    m.backward(ctx, 1.0f);
    grads[k].assign(m.params.all_grad(), m.params.all_grad() + m.params.total());
  }
  double lmax = 0, ldiff = 0, dot = 0, n0 = 0, n1 = 0;
  for (size_t i = 0; i < logits[0].size(); i++)
    lmax = std::max(lmax, (double)std::abs(logits[0][i])),
    ldiff = std::max(ldiff, (double)std::abs(logits[0][i] - logits[1][i]));
  for (size_t i = 0; i < grads[0].size(); i++)
    dot += (double)grads[0][i] * grads[1][i], n0 += (double)grads[0][i] * grads[0][i],
        n1 += (double)grads[1][i] * grads[1][i];
  const double cosine = dot / std::sqrt(n0 * n1);
  std::printf("%s bf16 vs fp32: loss %.6f vs %.6f, max logit diff %.2e of max %.2f, gradient cosine %.6f\n",
              GetParam(), loss[1], loss[0], ldiff, lmax, cosine);
  EXPECT_NE(loss[0], loss[1]) << "bf16 gave bit-identical results: not in effect";
  EXPECT_NEAR(loss[1], loss[0], 2e-3 * loss[0]);
  EXPECT_LT(ldiff, 2e-2 * lmax);
  EXPECT_GT(cosine, 0.999);
}

INSTANTIATE_TEST_SUITE_P(Kinds, MixedPrecision, ::testing::Values("dense", "moe", "hmoe", "mohge"),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });
