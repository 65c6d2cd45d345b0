// Router, auxiliary losses, MoE config and width helpers (src/moe/): golden vectors from
// shared/golden/routing.json, slow double-precision reference routers, finite-difference gradient
// checks, hand-worked loss examples and config errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "moe/aux_loss.h"
#include "moe/expert_widths.h"
#include "moe/moe_config.h"
#include "moe/router.h"

using namespace mohge;
using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------
// configs

MoeConfig topk_cfg(int E, int K, std::vector<int> widths = {}) {
  MoeConfig c;
  c.kind = MoeKind::hmoe;
  c.router = RouterKind::top_k;
  c.num_experts = E;
  c.num_experts_per_tok = K;
  c.max_experts_per_tok = E;
  c.expert_widths = widths.empty() ? std::vector<int>(E, 64) : widths;
  return c;
}

MoeConfig topp_cfg(int E, double p, int max_k, std::vector<int> widths = {}) {
  MoeConfig c = topk_cfg(E, 1, widths);
  c.router = RouterKind::top_p;
  c.top_p = p;
  c.max_experts_per_tok = max_k;
  return c;
}

MoeConfig two_level_cfg(int Ng, int N, int Kg, int K, GateNorm norm, std::vector<int> group_widths = {}) {
  MoeConfig c;
  c.kind = MoeKind::mohge;
  c.router = RouterKind::two_level;
  c.num_expert_groups = Ng;
  c.experts_per_group = N;
  c.num_experts = Ng * N;
  c.topk_group = Kg;
  c.num_experts_per_tok = K;
  c.gate_norm = norm;
  if (group_widths.empty())
    for (int g = 0; g < Ng; g++) group_widths.push_back(128 + 64 * g);
  c.expert_widths = mohge_expert_widths(group_widths, N);
  return c;
}

// ---------------------------------------------------------------------------------------------
// slow references, double precision, full sorts

struct RefRoute {
  std::vector<int> experts;  // ascending
  std::vector<double> weights;
};

std::vector<double> ref_softmax(const std::vector<double>& z) {
  double m = *std::max_element(z.begin(), z.end()), s = 0;
  std::vector<double> p(z.size());
  for (size_t i = 0; i < z.size(); i++) s += p[i] = std::exp(z[i] - m);
  for (double& v : p) v /= s;
  return p;
}

// indices by value descending; equal values keep index order (stable sort = lower index wins)
std::vector<int> ref_order(const std::vector<double>& v) {
  std::vector<int> o(v.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return v[a] > v[b]; });
  return o;
}

RefRoute finish(std::vector<int> kept, const std::vector<double>& score) {
  std::sort(kept.begin(), kept.end());
  double s = 0;
  for (int e : kept) s += score[e];
  RefRoute r;
  for (int e : kept) r.experts.push_back(e), r.weights.push_back(score[e] / s);
  return r;
}

RefRoute ref_top_k(const std::vector<double>& z, int K) {
  auto p = ref_softmax(z);
  auto o = ref_order(p);
  return finish(std::vector<int>(o.begin(), o.begin() + K), p);
}

// *near: set when some prefix sum is within 1e-12 of p (then float vs double rounding may decide)
RefRoute ref_top_p(const std::vector<double>& z, double pth, int max_k, bool* near = nullptr) {
  auto p = ref_softmax(z);
  auto o = ref_order(p);
  int k = 0;
  double cum = 0;
  if (pth >= 1.0) {
    k = max_k;
  } else {
    while (k < (int)z.size()) {
      cum += p[o[k]];
      k++;
      if (near && std::fabs(cum - pth) < 1e-12) *near = true;
      if (cum >= pth) break;
    }
    k = std::clamp(k, 1, max_k);
  }
  return finish(std::vector<int>(o.begin(), o.begin() + k), p);
}

RefRoute ref_two_level(const std::vector<double>& z, const std::vector<double>& y, int Ng, int N, int Kg, int K,
                       GateNorm norm) {
  std::vector<double> sig(Ng);
  for (int g = 0; g < Ng; g++) sig[g] = 1.0 / (1.0 + std::exp(-y[g]));
  auto go = ref_order(sig);
  std::vector<int> groups(go.begin(), go.begin() + Kg);
  double ssum = 0;
  for (int g : groups) ssum += sig[g];
  std::vector<double> c(Ng * N, -1.0);  // -1: not a candidate
  for (int g : groups) {
    auto s = ref_softmax(std::vector<double>(z.begin() + g * N, z.begin() + (g + 1) * N));
    for (int i = 0; i < N; i++) c[g * N + i] = s[i] * sig[g] / ssum;
  }
  auto o = ref_order(c);
  std::vector<int> kept(o.begin(), o.begin() + K);
  if (norm == GateNorm::renorm) return finish(kept, c);
  std::vector<double> ex(Ng * N, 0.0);
  for (int e : kept) ex[e] = std::exp(c[e]);
  return finish(kept, ex);
}

std::vector<double> row(const std::vector<float>& v, int t, int n) {
  return std::vector<double>(v.begin() + (size_t)t * n, v.begin() + (size_t)(t + 1) * n);
}

void expect_token_matches(const Routing& r, int t, const RefRoute& ref, double tol, const std::string& what) {
  const int a0 = r.offsets[t], a1 = r.offsets[t + 1];
  std::vector<int> got(r.expert.begin() + a0, r.expert.begin() + a1);
  ASSERT_EQ(got, ref.experts) << what << " token " << t;
  for (int j = 0; j < a1 - a0; j++) EXPECT_NEAR(r.weight[a0 + j], ref.weights[j], tol) << what << " token " << t;
}

void expect_counts_consistent(const MoeConfig& cfg, const Routing& r, const RouterCache& c) {
  std::vector<int> n(cfg.num_experts, 0);
  for (int e : r.expert) n[e]++;
  EXPECT_EQ(n, r.tokens_per_expert);
  if (cfg.router == RouterKind::two_level) {
    std::vector<int> ng(cfg.num_expert_groups, 0);
    for (int g : c.groups.to_host()) ng[g]++;
    EXPECT_EQ(ng, r.tokens_per_group);
    // every kept expert lies in one of the token's selected groups
    for (int t = 0; t < r.T; t++)
      for (int a = r.offsets[t]; a < r.offsets[t + 1]; a++) {
        const int g = r.expert[a] / cfg.experts_per_group;
        const int* gs = c.groups.data() + (size_t)t * cfg.topk_group;
        EXPECT_TRUE(std::find(gs, gs + cfg.topk_group, g) != gs + cfg.topk_group);
      }
  }
}

std::vector<float> random_logits(std::mt19937& rng, size_t n, float scale) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// logits drawn from a few discrete values, so ties are everywhere
std::vector<float> tied_logits(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int> ud(-2, 2);
  std::vector<float> v(n);
  for (float& x : v) x = 0.5f * ud(rng);
  return v;
}

// ---------------------------------------------------------------------------------------------
// golden vectors

std::string shared_dir() {
#ifdef MOHGE_SHARED_DIR
  return MOHGE_SHARED_DIR;
#else
  std::string f = __FILE__;
  return f.substr(0, f.find_last_of('/')) + "/../../shared";
#endif
}

// logits = x · Wᵀ in double, stored fp32 (as the engine's router matmul does)
std::vector<float> logits_of(const json& x, const json& w) {
  std::vector<float> out;
  for (auto& xr : x)
    for (auto& wr : w) {
      double s = 0;
      for (size_t i = 0; i < xr.size(); i++) s += xr[i].get<double>() * wr[i].get<double>();
      out.push_back((float)s);
    }
  return out;
}

}  // namespace

TEST(MoeRouterGolden, AllCases) {
  const std::string path = shared_dir() + "/golden/routing.json";
  std::ifstream f(path);
  if (!f) GTEST_SKIP() << "golden file not found: " << path;
  const json doc = json::parse(f);
  int ncases = 0;
  for (const json& cs : doc.at("cases")) {
    SCOPED_TRACE(cs.at("name").get<std::string>());
    const std::string rk = cs.at("router");
    const int T = cs.at("T");
    MoeConfig cfg;
    cfg.router = router_kind_from_string(rk);
    if (cfg.router == RouterKind::two_level) {
      cfg = two_level_cfg(cs.at("num_expert_groups"), cs.at("experts_per_group"), cs.at("topk_group"),
                          cs.at("num_experts_per_tok"), gate_norm_from_string(cs.at("gate_norm").get<std::string>()),
                          cs.at("group_widths").get<std::vector<int>>());
      cfg.group_delta = cs.at("group_loss_delta");
      cfg.group_coef = cfg.intra_coef = 1.0;
    } else {
      const int E = cs.at("E");
      cfg = cfg.router == RouterKind::top_k
                ? topk_cfg(E, cs.at("K"), cs.at("expert_widths"))
                : topp_cfg(E, cs.at("top_p"), cs.at("max_experts_per_tok"), cs.at("expert_widths"));
      cfg.lb_coef = cfg.pp_coef = cfg.entropy_coef = 1.0;
    }
    ASSERT_NO_THROW(cfg.validate());
    const int E = cfg.num_experts;

    std::vector<float> z = logits_of(cs.at("x"), cs.at("gate_weight")), y;
    ASSERT_EQ(z.size(), (size_t)T * E);
    if (cfg.router == RouterKind::two_level) y = logits_of(cs.at("x"), cs.at("group_gate_weight"));
    Routing r;
    RouterCache c;
    router_forward(cfg, z.data(), y.empty() ? nullptr : y.data(), T, r, c);

    const json& ex = cs.at("expected");
    for (int t = 0; t < T; t++) {
      RefRoute ref{ex.at("experts")[t].get<std::vector<int>>(), ex.at("weights")[t].get<std::vector<double>>()};
      expect_token_matches(r, t, ref, 1e-6, "golden");
    }
    auto tpe = ex.at("tokens_per_expert").get<std::vector<double>>();
    ASSERT_EQ((int)tpe.size(), E);
    for (int e = 0; e < E; e++) EXPECT_EQ(r.tokens_per_expert[e], (int)tpe[e]);
    if (ex.contains("tokens_per_group")) {
      auto tpg = ex.at("tokens_per_group").get<std::vector<double>>();
      ASSERT_EQ(tpg.size(), r.tokens_per_group.size());
      for (size_t g = 0; g < tpg.size(); g++) EXPECT_EQ(r.tokens_per_group[g], (int)tpg[g]);
    }
    expect_counts_consistent(cfg, r, c);

    const AuxLossValues L = aux_loss_values(cfg, c, r, /*step=*/0);
    auto check = [&](const char* key, double got) {
      if (!ex.contains(key)) return;
      const double want = ex.at(key);
      EXPECT_NEAR(got, want, 2e-6 * std::max(1.0, std::fabs(want))) << key;
    };
    check("loss_load_balance", L.load_balance);
    check("loss_p_penalty", L.p_penalty);
    check("loss_router_entropy", L.router_entropy);
    check("loss_group", L.group);
    check("loss_intra_group", L.intra_group);
    // every coefficient valid for the router is 1, so total is the plain sum of the active terms
    double sum = L.two_level ? L.group + L.intra_group : L.load_balance + L.p_penalty + L.router_entropy;
    EXPECT_NEAR(L.total, sum, 1e-12);
    ncases++;
  }
  EXPECT_EQ(ncases, 4);
}

// ---------------------------------------------------------------------------------------------
// routers against the references

TEST(MoeRouter, TopKMatchesReferenceRandomAndTied) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 6; trial++) {
    const int E = trial % 2 ? 8 : 16, K = 1 + trial % 4, T = 300;  // T above the OpenMP threshold
    MoeConfig cfg = topk_cfg(E, K);
    auto z = trial < 3 ? random_logits(rng, (size_t)T * E, 2.0f) : tied_logits(rng, (size_t)T * E);
    Routing r;
    RouterCache c;
    router_forward(cfg, z.data(), nullptr, T, r, c);
    for (int t = 0; t < T; t++) expect_token_matches(r, t, ref_top_k(row(z, t, E), K), 1e-6, "top_k");
    expect_counts_consistent(cfg, r, c);
    EXPECT_EQ(r.num_assignments(), T * K);
  }
}

TEST(MoeRouter, TopKTieRuleLowerIndexWins) {
  MoeConfig cfg = topk_cfg(6, 2);
  std::vector<float> z = {1, 3, 3, 3, 0, 3,   // four-way tie for the top: experts 1, 2
                          0, 0, 0, 0, 0, 0};  // all equal: experts 0, 1 with 1/2 each
  Routing r;
  RouterCache c;
  router_forward(cfg, z.data(), nullptr, 2, r, c);
  EXPECT_EQ(std::vector<int>(r.expert.begin(), r.expert.end()), (std::vector<int>{1, 2, 0, 1}));
  for (float w : r.weight) EXPECT_FLOAT_EQ(w, 0.5f);
}

TEST(MoeRouter, TopPMatchesReferenceRandomAndTied) {
  std::mt19937 rng(2);
  const double ps[] = {0.3, 0.6, 0.9, 0.75};
  for (int trial = 0; trial < 8; trial++) {
    const int E = 8, T = 300, max_k = 2 + trial % 6;
    const double p = ps[trial % 4];
    MoeConfig cfg = topp_cfg(E, p, max_k);
    auto z = trial < 4 ? random_logits(rng, (size_t)T * E, 1.5f) : tied_logits(rng, (size_t)T * E);
    Routing r;
    RouterCache c;
    router_forward(cfg, z.data(), nullptr, T, r, c);
    int checked = 0;
    for (int t = 0; t < T; t++) {
      bool near = false;
      RefRoute ref = ref_top_p(row(z, t, E), p, max_k, &near);
      if (near) continue;  // a prefix within 1e-12 of p: rounding decides, not the rule
      expect_token_matches(r, t, ref, 1e-6, "top_p");
      checked++;
    }
    EXPECT_GT(checked, T * 9 / 10);
    expect_counts_consistent(cfg, r, c);
  }
}

TEST(MoeRouter, TopPEdgeCases) {
  Routing r;
  RouterCache c;
  auto experts_of = [&](int t) { return std::vector<int>(r.expert.begin() + r.offsets[t], r.expert.begin() + r.offsets[t + 1]); };
  {  // one dominant expert: its probability alone exceeds p -> k = 1, weight 1
    MoeConfig cfg = topp_cfg(8, 0.6, 4);
    std::vector<float> z = {0, 0, 0, 8, 0, 0, 0, 0};
    router_forward(cfg, z.data(), nullptr, 1, r, c);
    EXPECT_EQ(experts_of(0), std::vector<int>{3});
    EXPECT_FLOAT_EQ(r.weight[0], 1.0f);
  }
  {  // cumsum hits p exactly: equal logits give P = 1/8 exactly, 4 · 1/8 = 0.5 = p -> stop at 4
     // (log-of-dyadic logits are not exact in fp32, equal logits are); ties: lower indices
    MoeConfig cfg = topp_cfg(8, 0.5, 8);
    std::vector<float> z(8, 0.25f);
    router_forward(cfg, z.data(), nullptr, 1, r, c);
    EXPECT_EQ(experts_of(0), (std::vector<int>{0, 1, 2, 3}));
    for (int a = 0; a < 4; a++) EXPECT_FLOAT_EQ(r.weight[a], 0.25f);
    // just above 0.5 needs the fifth
    cfg.top_p = 0.5000001;
    router_forward(cfg, z.data(), nullptr, 1, r, c);
    EXPECT_EQ(experts_of(0).size(), 5u);
    // E=4, p = 0.25 exactly -> 1 expert; p = 0.75 -> 3
    MoeConfig c4 = topp_cfg(4, 0.25, 4);
    std::vector<float> z4(4, 0.0f);
    router_forward(c4, z4.data(), nullptr, 1, r, c);
    EXPECT_EQ(experts_of(0), std::vector<int>{0});
    c4.top_p = 0.75;
    router_forward(c4, z4.data(), nullptr, 1, r, c);
    EXPECT_EQ(experts_of(0), (std::vector<int>{0, 1, 2}));
  }
  {  // max_k cap: flat distribution wants 6 of 8 for p=0.7, capped at 3; weights renormalised
    MoeConfig cfg = topp_cfg(8, 0.7, 3);
    std::vector<float> z = {0.1f, 0.0f, 0.3f, 0.2f, 0.05f, 0.15f, 0.25f, 0.12f};
    router_forward(cfg, z.data(), nullptr, 1, r, c);
    EXPECT_EQ(experts_of(0), (std::vector<int>{2, 3, 6}));
    RefRoute ref = ref_top_p(row(z, 0, 8), 0.7, 3);
    expect_token_matches(r, 0, ref, 1e-6, "cap");
    double s = 0;
    for (float w : r.weight) s += w;
    EXPECT_NEAR(s, 1.0, 1e-6);
  }
  {  // p = 1 keeps max_k (all E when max_k = E)
    MoeConfig cfg = topp_cfg(8, 1.0, 8);
    std::mt19937 rng(5);
    auto z = random_logits(rng, 8 * 3, 1.0f);
    router_forward(cfg, z.data(), nullptr, 3, r, c);
    for (int t = 0; t < 3; t++) EXPECT_EQ(experts_of(t), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
    for (int t = 0; t < 3; t++) {
      auto p = ref_softmax(row(z, t, 8));
      for (int e = 0; e < 8; e++) EXPECT_NEAR(r.weight[t * 8 + e], p[e], 1e-6);
    }
    cfg.max_experts_per_tok = 5;
    router_forward(cfg, z.data(), nullptr, 3, r, c);
    for (int t = 0; t < 3; t++) expect_token_matches(r, t, ref_top_p(row(z, t, 8), 1.0, 5), 1e-6, "p=1 cap");
  }
  {  // variable k per token is packed correctly in CSR
    MoeConfig cfg = topp_cfg(4, 0.6, 4);
    std::vector<float> z = {9, 0, 0, 0,   0, 0, 0, 0,   0, 1, 1, 0};  // k = 1, 3 (0.25 each), 2
    router_forward(cfg, z.data(), nullptr, 3, r, c);
    EXPECT_EQ(r.offsets, (std::vector<int>{0, 1, 4, 6}));
    EXPECT_EQ(r.tokens_per_expert, (std::vector<int>{2, 2, 2, 0}));
  }
}

TEST(MoeRouter, TwoLevelMatchesReference) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 6; trial++) {
    const int Ng = trial % 2 ? 4 : 8, N = trial % 3 + 2, Kg = 1 + trial % Ng % 3, K = std::min(Kg * N, 1 + trial);
    const GateNorm norm = trial % 2 ? GateNorm::renorm : GateNorm::softmax;
    MoeConfig cfg = two_level_cfg(Ng, N, Kg, K, norm);
    const int E = Ng * N, T = 257;
    auto z = random_logits(rng, (size_t)T * E, 2.0f), y = random_logits(rng, (size_t)T * Ng, 2.0f);
    Routing r;
    RouterCache c;
    router_forward(cfg, z.data(), y.data(), T, r, c);
    for (int t = 0; t < T; t++)
      expect_token_matches(r, t, ref_two_level(row(z, t, E), row(y, t, Ng), Ng, N, Kg, K, norm), 1e-6, "two_level");
    expect_counts_consistent(cfg, r, c);
    EXPECT_EQ(r.num_assignments(), T * K);
  }
}

TEST(MoeRouter, TwoLevelOnlySelectedGroupsSeveralPerGroupAndTies) {
  // Ng=4, N=3, Kg=2, K=3. Group logits pick groups 0 and 2. Group 1 has huge expert logits but is
  // not selected, so none of its experts may be picked.
  MoeConfig cfg = two_level_cfg(4, 3, 2, 3, GateNorm::softmax);
  std::vector<float> y = {3, -1, 2, -2,     // token 0: groups {0, 2}
                          2, -1, 2, -2};    // token 1: groups 0 and 2 tie on the logit, both kept
  std::vector<float> z = {5, 4, -5, 20, 20, 20, 0, 0, 0, -9, -9, -9,
                          // token 1: groups 0 and 2 identical -> c ties across groups; lower index wins
                          1, 1, 1, 20, 20, 20, 1, 1, 1, 0, 0, 0};
  Routing r;
  RouterCache c;
  router_forward(cfg, z.data(), y.data(), 2, r, c);
  // token 0: c = (0.380, 0.140, ~0 | 0.160, 0.160, 0.160): expert 0, then the 3-way tie in group 2 -> 6, 7
  EXPECT_EQ(std::vector<int>(r.expert.begin(), r.expert.begin() + 3), (std::vector<int>{0, 6, 7}));
  // token 1: six equal c values -> experts 0, 1, 2 (all from group 0)
  EXPECT_EQ(std::vector<int>(r.expert.begin() + 3, r.expert.end()), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(c.groups.to_host(), (std::vector<int>{0, 2, 0, 2}));
  EXPECT_EQ(r.tokens_per_group, (std::vector<int>{2, 0, 2, 0}));
  for (int t = 0; t < 2; t++)
    expect_token_matches(r, t, ref_two_level(row(z, t, 12), row(y, t, 4), 4, 3, 2, 3, GateNorm::softmax), 1e-6,
                         "constructed");
  // all K from a single group when its experts dominate
  std::vector<float> z2 = {5, 5, 5, 0, 0, 0, -3, -3, -3, 0, 0, 0};
  std::vector<float> y2 = {1, 0, 0.5f, -1};
  router_forward(cfg, z2.data(), y2.data(), 1, r, c);
  EXPECT_EQ(r.expert, (std::vector<int>{0, 1, 2}));
}

TEST(MoeRouter, CacheReuseAcrossShapesAndErrors) {
  MoeConfig cfg = two_level_cfg(4, 2, 2, 2, GateNorm::renorm);
  std::mt19937 rng(9);
  Routing r;
  RouterCache c;
  for (int T : {100, 3, 0, 70}) {
    auto z = random_logits(rng, (size_t)T * 8, 1.0f), y = random_logits(rng, (size_t)T * 4, 1.0f);
    router_forward(cfg, z.data(), y.data(), T, r, c);
    ASSERT_EQ(r.T, T);
    ASSERT_EQ((int)r.offsets.size(), T + 1);
    for (int t = 0; t < T; t++)
      expect_token_matches(r, t, ref_two_level(row(z, t, 8), row(y, t, 4), 4, 2, 2, 2, GateNorm::renorm), 1e-6, "reuse");
  }
  std::vector<float> z(8, 0.0f), y(4, 0.0f);
  z[3] = NAN;
  try {
    router_forward(cfg, z.data(), y.data(), 1, r, c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }
  EXPECT_THROW(router_forward(cfg, z.data(), nullptr, 1, r, c), Error);  // two-level needs group logits
}

// ---------------------------------------------------------------------------------------------
// gradients vs central finite differences
//
// Objective: J = Σ_a g_a · w_a (g fixed, standing in for dL/dw from the experts) + aux total. The
// logits are fp32, so FD uses h = 1e-2 and the exactly realised step (float(z+h) − float(z−h));
// logits are drawn with margins so that the selection cannot change under the perturbation.

namespace {

struct FdProblem {
  MoeConfig cfg;
  int T = 0;
  std::vector<float> z, y;
  std::vector<float> g;  // [A]
  int64_t step = 0;
};

// true if all routing decisions of token t have a margin well above the FD perturbation
bool has_margin(const MoeConfig& cfg, const std::vector<double>& z, const std::vector<double>& y) {
  const double m = 0.05;
  if (cfg.router == RouterKind::top_k) {
    auto o = ref_order(z);
    return z[o[cfg.num_experts_per_tok - 1]] - z[o[cfg.num_experts_per_tok]] > 3 * m;
  }
  if (cfg.router == RouterKind::top_p) {
    auto p = ref_softmax(z);
    auto o = ref_order(p);
    for (size_t i = 0; i + 1 < o.size(); i++)
      if (p[o[i]] - p[o[i + 1]] < m / 5) return false;
    double cum = 0;
    for (int e : o) {
      cum += p[e];
      if (std::fabs(cum - cfg.top_p) < m) return false;
    }
    return true;
  }
  const int Ng = cfg.num_expert_groups, N = cfg.experts_per_group, Kg = cfg.topk_group, K = cfg.num_experts_per_tok;
  auto go = ref_order(y);
  if (Kg < Ng && y[go[Kg - 1]] - y[go[Kg]] < 3 * m) return false;
  std::vector<double> sig(Ng);
  double ssum = 0;
  for (int g = 0; g < Ng; g++) sig[g] = 1 / (1 + std::exp(-y[g]));
  for (int j = 0; j < Kg; j++) ssum += sig[go[j]];
  std::vector<double> cv;
  for (int j = 0; j < Kg; j++) {
    auto s = ref_softmax(std::vector<double>(z.begin() + go[j] * N, z.begin() + (go[j] + 1) * N));
    for (double v : s) cv.push_back(v * sig[go[j]] / ssum);
  }
  std::sort(cv.rbegin(), cv.rend());
  return K >= (int)cv.size() || cv[K - 1] - cv[K] > m / 5;
}

FdProblem make_problem(const MoeConfig& cfg, int T, uint32_t seed) {
  FdProblem p;
  p.cfg = cfg;
  p.T = T;
  std::mt19937 rng(seed);
  const int E = cfg.num_experts, Ng = cfg.router == RouterKind::two_level ? cfg.num_expert_groups : 0;
  for (int t = 0; t < T; t++) {
    for (int tries = 0;; tries++) {
      EXPECT_LT(tries, 10000) << "could not draw well-separated logits";
      auto z = random_logits(rng, E, 1.5f), y = random_logits(rng, Ng, 1.5f);
      if (!has_margin(cfg, std::vector<double>(z.begin(), z.end()), std::vector<double>(y.begin(), y.end())))
        continue;
      p.z.insert(p.z.end(), z.begin(), z.end());
      p.y.insert(p.y.end(), y.begin(), y.end());
      break;
    }
  }
  Routing r;
  RouterCache c;
  router_forward(cfg, p.z.data(), Ng ? p.y.data() : nullptr, T, r, c);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  p.g.resize(r.num_assignments());
  for (float& v : p.g) v = nd(rng);
  return p;
}

double objective(const FdProblem& p, const std::vector<float>& z, const std::vector<float>& y,
                 const std::vector<int>& expect_experts, const BalanceStats* global = nullptr) {
  Routing r;
  RouterCache c;
  router_forward(p.cfg, z.data(), y.empty() ? nullptr : y.data(), p.T, r, c);
  EXPECT_EQ(r.expert, expect_experts) << "selection changed under the FD perturbation";
  double J = 0;
  for (int a = 0; a < r.num_assignments(); a++) J += (double)p.g[a] * r.weight[a];
  return J + aux_loss_values(p.cfg, c, r, p.step, global).total;
}

void analytic(const FdProblem& p, std::vector<float>& dz, std::vector<float>& dy, Routing& r,
              const BalanceStats* global = nullptr, float grad_scale = 1.0f) {
  RouterCache c;
  router_forward(p.cfg, p.z.data(), p.y.empty() ? nullptr : p.y.data(), p.T, r, c);
  dz.assign(p.z.size(), 0.0f);
  dy.assign(p.y.size(), 0.0f);
  std::vector<float> dw(p.g.begin(), p.g.end());
  for (float& v : dw) v *= grad_scale;
  float* dyp = dy.empty() ? nullptr : dy.data();
  aux_loss_backward(p.cfg, c, r, p.step, grad_scale, dw.data(), dz.data(), dyp, global);
  router_backward(p.cfg, c, r, dw.data(), dz.data(), dyp);
}

// returns the largest |fd − analytic| / (1e-3 + |analytic|)... reported; asserts per entry
void fd_check(const FdProblem& p, const char* what) {
  std::vector<float> dz, dy;
  Routing r0;
  analytic(p, dz, dy, r0);
  const std::vector<int> experts = r0.expert;
  double worst = 0, max_grad = 0;
  auto probe = [&](std::vector<float>& v, const std::vector<float>& grad, bool is_z) {
    for (size_t i = 0; i < v.size(); i++) {
      const float x0 = v[i];
      const float xp = x0 + 1e-2f, xm = x0 - 1e-2f;
      auto zz = p.z, yy = p.y;
      (is_z ? zz : yy)[i] = xp;
      const double Jp = objective(p, zz, yy, experts);
      (is_z ? zz : yy)[i] = xm;
      const double Jm = objective(p, zz, yy, experts);
      const double fd = (Jp - Jm) / ((double)xp - (double)xm);
      const double an = grad[i];
      EXPECT_NEAR(an, fd, 5e-5 + 1e-3 * std::fabs(fd)) << what << (is_z ? " dz[" : " dy[") << i << "]";
      worst = std::max(worst, std::fabs(an - fd));
      max_grad = std::max(max_grad, std::fabs(an));
    }
  };
  auto z = p.z, y = p.y;
  probe(z, dz, true);
  probe(y, dy, false);
  EXPECT_GT(max_grad, 1e-3) << what << ": gradient is trivially zero";
  ::testing::Test::RecordProperty(std::string("fd_worst_abs_err_") + what, std::to_string(worst));
}

}  // namespace

TEST(MoeRouterGrad, TopKRouterOnly) { fd_check(make_problem(topk_cfg(8, 2), 5, 11), "top_k"); }

TEST(MoeRouterGrad, TopPRouterOnly) { fd_check(make_problem(topp_cfg(8, 0.6, 4), 6, 12), "top_p"); }

TEST(MoeRouterGrad, TwoLevelSoftmaxRouterOnly) {
  fd_check(make_problem(two_level_cfg(4, 3, 2, 3, GateNorm::softmax), 5, 13), "two_level_softmax");
}

TEST(MoeRouterGrad, TwoLevelRenormRouterOnly) {
  fd_check(make_problem(two_level_cfg(4, 3, 2, 3, GateNorm::renorm), 5, 14), "two_level_renorm");
}

TEST(MoeRouterGrad, EachLossSeparately) {
  const std::vector<int> hw = {288, 352, 416, 480, 544, 608, 672, 736};
  struct Case {
    const char* name;
    MoeConfig cfg;
  };
  std::vector<Case> cases;
  {
    MoeConfig c = topk_cfg(8, 2, hw);
    c.lb_coef = 1.0;
    cases.push_back({"load_balance_topk", c});
    c.lb_coef = 0, c.pp_coef = 1.0;
    cases.push_back({"p_penalty_topk", c});
    c.pp_coef = 0, c.entropy_coef = 1.0;
    cases.push_back({"entropy_topk", c});
  }
  {
    MoeConfig c = topp_cfg(8, 0.6, 4, hw);
    c.pp_coef = 0.7, c.entropy_coef = 0.3, c.lb_coef = 0.2;
    cases.push_back({"pp_entropy_lb_topp", c});
  }
  for (GateNorm norm : {GateNorm::softmax, GateNorm::renorm}) {
    MoeConfig c = two_level_cfg(4, 3, 2, 3, norm, {384, 512, 640, 768});
    c.group_delta = 256;
    c.group_coef = 1.0;
    cases.push_back({norm == GateNorm::softmax ? "group_softmax" : "group_renorm", c});
    c.group_coef = 0, c.intra_coef = 1.0;
    cases.push_back({norm == GateNorm::softmax ? "intra_softmax" : "intra_renorm", c});
    c.intra_coef = 0.5, c.group_coef = 2.0;
    cases.push_back({norm == GateNorm::softmax ? "all_two_level_softmax" : "all_two_level_renorm", c});
  }
  uint32_t seed = 100;
  for (auto& cs : cases) {
    SCOPED_TRACE(cs.name);
    cs.cfg.validate();
    FdProblem p = make_problem(cs.cfg, 6, seed++);
    std::fill(p.g.begin(), p.g.end(), 0.0f);  // the loss alone
    fd_check(p, cs.name);
    FdProblem q = make_problem(cs.cfg, 6, seed++);  // the loss plus the expert path
    fd_check(q, cs.name);
  }
}

TEST(MoeAuxLoss, GroupLossStartsAtConfiguredStep) {
  MoeConfig cfg = two_level_cfg(4, 3, 2, 3, GateNorm::softmax);
  cfg.group_coef = 1.0;
  cfg.group_loss_start_step = 10;
  FdProblem p = make_problem(cfg, 4, 7);
  Routing r;
  RouterCache c;
  router_forward(cfg, p.z.data(), p.y.data(), p.T, r, c);
  AuxLossValues before = aux_loss_values(cfg, c, r, 9), after = aux_loss_values(cfg, c, r, 10);
  EXPECT_EQ(before.total, 0.0);
  EXPECT_GT(before.group, 0.0);  // still reported
  EXPECT_DOUBLE_EQ(after.total, after.group);
  std::vector<float> dz(p.z.size(), 0.0f), dy(p.y.size(), 0.0f), dw(r.num_assignments(), 0.0f);
  aux_loss_backward(cfg, c, r, 9, 1.0f, dw.data(), dz.data(), dy.data());
  for (float v : dy) EXPECT_EQ(v, 0.0f);
  aux_loss_backward(cfg, c, r, 10, 1.0f, dw.data(), dz.data(), dy.data());
  double s = 0;
  for (float v : dy) s += std::fabs(v);
  EXPECT_GT(s, 0.0);
  p.step = 10;
  fd_check(p, "group_after_start");
}

// ---------------------------------------------------------------------------------------------
// hand-worked values

TEST(MoeAuxLoss, HandWorkedTwoTokensTwoExperts) {
  // E=2, K=1, widths (100, 300), W̄ = 200.
  //   token 0: logits (ln 3, 0) -> P = (3/4, 1/4) -> expert 0
  //   token 1: logits (0, 0)    -> P = (1/2, 1/2) -> tie -> expert 0 (lower index)
  // n = (2, 0), f = n/Σn = (1, 0), P̄ = (5/8, 3/8)
  //   load balance = E Σ f P̄ = 2 · 5/8 = 1.25
  //   P-Penalty    = E Σ f (W/W̄) P̄ = 2 · (100/200) · 5/8 = 0.625
  //   entropy      = ½[−(¾ ln ¾ + ¼ ln ¼) + ln 2] = ½(0.5623351446 + 0.6931471806) = 0.6277411626
  //   d load balance / dz_{t,k} = (E/T) P_{t,k} (f_k − Σ_e f_e P_{t,e}):
  //     token 0: ±(3/4)(1 − 3/4) = ±0.1875; token 1: ±(1/2)(1 − 1/2) = ±0.25
  MoeConfig cfg = topk_cfg(2, 1, {100, 300});
  cfg.lb_coef = 1.0;
  std::vector<float> z = {(float)std::log(3.0), 0.0f, 0.0f, 0.0f};
  Routing r;
  RouterCache c;
  router_forward(cfg, z.data(), nullptr, 2, r, c);
  EXPECT_EQ(r.expert, (std::vector<int>{0, 0}));
  EXPECT_EQ(r.tokens_per_expert, (std::vector<int>{2, 0}));
  const AuxLossValues L = aux_loss_values(cfg, c, r, 0);
  EXPECT_NEAR(L.load_balance, 1.25, 1e-6);
  EXPECT_NEAR(L.p_penalty, 0.625, 1e-6);
  EXPECT_NEAR(L.router_entropy, 0.6277411626, 1e-6);
  EXPECT_NEAR(L.total, 1.25, 1e-6);
  std::vector<float> dz(4, 0.0f), dw(2, 0.0f);
  aux_loss_backward(cfg, c, r, 0, 1.0f, dw.data(), dz.data(), nullptr);
  EXPECT_NEAR(dz[0], 0.1875, 1e-6);
  EXPECT_NEAR(dz[1], -0.1875, 1e-6);
  EXPECT_NEAR(dz[2], 0.25, 1e-6);
  EXPECT_NEAR(dz[3], -0.25, 1e-6);
  // K=1: w = 1 regardless of the logits, so router backward gives nothing
  std::vector<float> g = {5.0f, -2.0f}, dz2(4, 0.0f);
  router_backward(cfg, c, r, g.data(), dz2.data(), nullptr);
  for (float v : dz2) EXPECT_EQ(v, 0.0f);
}

TEST(MoeAuxLoss, PPenaltyEqualsLoadBalanceForEqualWidths) {
  for (RouterKind rk : {RouterKind::top_k, RouterKind::top_p}) {
    MoeConfig cfg = rk == RouterKind::top_k ? topk_cfg(8, 2) : topp_cfg(8, 0.6, 8);
    cfg.kind = MoeKind::moe;
    cfg.expert_widths.assign(8, 512);
    cfg.validate();
    std::mt19937 rng(21);
    const int T = 200;
    auto z = random_logits(rng, (size_t)T * 8, 1.0f);
    Routing r;
    RouterCache c;
    router_forward(cfg, z.data(), nullptr, T, r, c);
    AuxLossValues L = aux_loss_values(cfg, c, r, 0);
    EXPECT_NEAR(L.p_penalty, L.load_balance, 1e-12);
    std::vector<float> d_lb(T * 8, 0.0f), d_pp(T * 8, 0.0f), dw(r.num_assignments(), 0.0f);
    cfg.lb_coef = 1.0;
    aux_loss_backward(cfg, c, r, 0, 1.0f, dw.data(), d_lb.data(), nullptr);
    cfg.lb_coef = 0.0, cfg.pp_coef = 1.0;
    aux_loss_backward(cfg, c, r, 0, 1.0f, dw.data(), d_pp.data(), nullptr);
    for (int i = 0; i < T * 8; i++) EXPECT_NEAR(d_lb[i], d_pp[i], 1e-9);
  }
}

TEST(MoeAuxLoss, UniformRoutingGivesLoadBalanceOne) {
  // all-equal logits, top-2 of 4 over many tokens with a rotating winner: f = P̄ = 1/4 -> E Σ f P̄ = 1
  MoeConfig cfg = topk_cfg(4, 2);
  std::vector<float> z;
  const int T = 4;
  for (int t = 0; t < T; t++)
    for (int e = 0; e < 4; e++) z.push_back((e == t || e == (t + 1) % 4) ? 0.001f : 0.0f);
  Routing r;
  RouterCache c;
  router_forward(cfg, z.data(), nullptr, T, r, c);
  EXPECT_EQ(r.tokens_per_expert, (std::vector<int>{2, 2, 2, 2}));
  EXPECT_NEAR(aux_loss_values(cfg, c, r, 0).load_balance, 1.0, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// global-batch statistics

TEST(MoeAuxLoss, GlobalStatsSplitBatchEqualsFullBatch) {
  // Two equal micro-batches with the step's global counts: the mean of their losses equals the
  // full-batch loss, and their gradients (grad_scale ½) equal the full-batch gradient rows.
  std::vector<MoeConfig> cfgs;
  {
    MoeConfig c = topk_cfg(8, 2, {288, 352, 416, 480, 544, 608, 672, 736});
    c.lb_coef = 0.5, c.pp_coef = 0.25, c.entropy_coef = 0.1;
    cfgs.push_back(c);
    MoeConfig d = two_level_cfg(4, 3, 2, 3, GateNorm::renorm);
    d.group_coef = 1.0, d.intra_coef = 0.7, d.lb_coef = 0.2;
    cfgs.push_back(d);
  }
  for (MoeConfig cfg : cfgs) {
    SCOPED_TRACE(to_string(cfg.router));
    const bool two = cfg.router == RouterKind::two_level;
    const int E = cfg.num_experts, Ng = two ? cfg.num_expert_groups : 0, T = 40, H = T / 2;
    std::mt19937 rng(31);
    auto z = random_logits(rng, (size_t)T * E, 1.0f), y = random_logits(rng, (size_t)T * Ng, 1.0f);

    Routing rf;
    RouterCache cf;
    router_forward(cfg, z.data(), two ? y.data() : nullptr, T, rf, cf);
    const AuxLossValues Lf = aux_loss_values(cfg, cf, rf, 0);
    std::vector<float> dzf(T * E, 0.0f), dyf(T * Ng, 0.0f), dwf(rf.num_assignments(), 0.0f);
    aux_loss_backward(cfg, cf, rf, 0, 1.0f, dwf.data(), dzf.data(), two ? dyf.data() : nullptr);

    cfg.global_batch_stats = true;
    Routing r[2];
    RouterCache c[2];
    BalanceStats stats;
    stats.reset(cfg);
    for (int m = 0; m < 2; m++) {
      router_forward(cfg, z.data() + (size_t)m * H * E, two ? y.data() + (size_t)m * H * Ng : nullptr, H, r[m], c[m]);
      stats.add(c[m].host_stats);
    }
    EXPECT_EQ(stats.tokens, T);
    EXPECT_EQ(stats.assignments, rf.num_assignments());
    // pack / unpack round trip and merge
    BalanceStats s2;
    s2.reset(cfg);
    s2.unpack(stats.pack());
    EXPECT_EQ(s2.pack(), stats.pack());
    BalanceStats a, b;
    a.reset(cfg), b.reset(cfg);
    a.add(c[0].host_stats), b.add(c[1].host_stats);
    a.merge(b);
    EXPECT_EQ(a.pack(), stats.pack());

    double mean_total = 0;
    std::vector<float> dz(T * E, 0.0f), dy(T * Ng, 0.0f);
    for (int m = 0; m < 2; m++) {
      AuxLossValues Lm = aux_loss_values(cfg, c[m], r[m], 0, &stats);
      mean_total += 0.5 * Lm.total;
      std::vector<float> dw(r[m].num_assignments(), 0.0f), dwf_m(dw.size());
      aux_loss_backward(cfg, c[m], r[m], 0, 0.5f, dw.data(), dz.data() + (size_t)m * H * E,
                        two ? dy.data() + (size_t)m * H * Ng : nullptr, &stats);
      for (size_t a2 = 0; a2 < dw.size(); a2++)
        EXPECT_NEAR(dw[a2], dwf[rf.offsets[m * H] + a2], 1e-7);
    }
    EXPECT_NEAR(mean_total, Lf.total, 1e-9);
    for (int i = 0; i < T * E; i++) EXPECT_NEAR(dz[i], dzf[i], 1e-7);
    for (int i = 0; i < T * Ng; i++) EXPECT_NEAR(dy[i], dyf[i], 1e-7);
    // the flag without stats is an error naming the problem
    try {
      aux_loss_values(cfg, c[0], r[0], 0);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("global_batch_stats"), std::string::npos);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// config validation and string helpers

namespace {
void expect_error(const std::function<void()>& f, const std::string& key) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning '" << key << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << "message: " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one-line message: " << e.what();
  }
}
}  // namespace

TEST(MoeConfig, ValidConfigsPass) {
  EXPECT_NO_THROW(topk_cfg(8, 2).validate());
  EXPECT_NO_THROW(topp_cfg(8, 0.6, 4).validate());
  EXPECT_NO_THROW(topp_cfg(8, 1.0, 8).validate());
  EXPECT_NO_THROW(two_level_cfg(8, 8, 4, 6, GateNorm::softmax).validate());
}

TEST(MoeConfig, BadConfigsNameTheKey) {
  auto mut = [](MoeConfig c, const std::function<void(MoeConfig&)>& f) {
    f(c);
    return [c] { c.validate(); };
  };
  const MoeConfig tk = topk_cfg(8, 2), tp = topp_cfg(8, 0.6, 4), tl = two_level_cfg(4, 3, 2, 3, GateNorm::softmax);
  expect_error(mut(tk, [](MoeConfig& c) { c.num_experts_per_tok = 9; }), "num_experts_per_tok");
  expect_error(mut(tk, [](MoeConfig& c) { c.num_experts_per_tok = 0; }), "num_experts_per_tok");
  expect_error(mut(tk, [](MoeConfig& c) { c.num_experts = 0; }), "num_experts");
  expect_error(mut(tk, [](MoeConfig& c) { c.expert_widths.pop_back(); }), "expert_widths");
  expect_error(mut(tk, [](MoeConfig& c) { c.expert_widths[3] = 0; }), "expert_widths[3]");
  expect_error(mut(tk, [](MoeConfig& c) { c.expert_widths[3] = -8; }), "expert_widths[3]");
  expect_error(mut(tk, [](MoeConfig& c) { c.kind = MoeKind::moe, c.expert_widths[2] = 8; }), "expert_widths");
  expect_error(mut(tp, [](MoeConfig& c) { c.top_p = 0.0; }), "top_p");
  expect_error(mut(tp, [](MoeConfig& c) { c.top_p = 1.5; }), "top_p");
  expect_error(mut(tp, [](MoeConfig& c) { c.top_p = -0.1; }), "top_p");
  expect_error(mut(tp, [](MoeConfig& c) { c.top_p = NAN; }), "top_p");
  expect_error(mut(tp, [](MoeConfig& c) { c.max_experts_per_tok = 0; }), "max_experts_per_tok");
  expect_error(mut(tp, [](MoeConfig& c) { c.max_experts_per_tok = 9; }), "max_experts_per_tok");
  expect_error(mut(tl, [](MoeConfig& c) { c.topk_group = 5; }), "topk_group");
  expect_error(mut(tl, [](MoeConfig& c) { c.topk_group = 0; }), "topk_group");
  expect_error(mut(tl, [](MoeConfig& c) { c.num_experts_per_tok = 7; }), "num_experts_per_tok");
  expect_error(mut(tl, [](MoeConfig& c) { c.num_expert_groups = 3; }), "num_expert_groups");
  expect_error(mut(tl, [](MoeConfig& c) { c.experts_per_group = 0; }), "experts_per_group");
  expect_error(mut(tl, [](MoeConfig& c) { c.expert_widths[4] = 999; }), "group");
  expect_error(mut(tl, [](MoeConfig& c) { c.expert_widths.push_back(64); }), "expert_widths");
  expect_error(mut(tl, [](MoeConfig& c) { c.kind = MoeKind::hmoe; }), "two_level");
  expect_error(mut(tk, [](MoeConfig& c) { c.kind = MoeKind::mohge; }), "two_level");
  expect_error(mut(tk, [](MoeConfig& c) { c.group_coef = 1.0; }), "group_coef");
  expect_error(mut(tk, [](MoeConfig& c) { c.intra_coef = 1.0; }), "intra_group_coef");
  expect_error(mut(tk, [](MoeConfig& c) { c.lb_coef = -1.0; }), "load_balance_coef");
  expect_error(mut(tk, [](MoeConfig& c) { c.pp_coef = NAN; }), "p_penalty_coef");
  expect_error(mut(two_level_cfg(4, 3, 2, 3, GateNorm::softmax, {384, 512, 640, 768}), [](MoeConfig& c) { c.lb_coef = 1.0; }), "load_balance_coef");
  expect_error(mut(tk, [](MoeConfig& c) { c.entropy_coef = -1e-3; }), "entropy_coef");
  expect_error(mut(tl, [](MoeConfig& c) { c.group_delta = 0; }), "group_delta");
  expect_error(mut(tl, [](MoeConfig& c) { c.group_loss_start_step = -1; }), "group_loss_start_step");
  expect_error(mut(tk, [](MoeConfig& c) { c.shared_expert_width = -1; }), "shared_expert_width");
}

TEST(MoeConfig, StringHelpers) {
  EXPECT_EQ(moe_kind_from_string("hmoe"), MoeKind::hmoe);
  EXPECT_EQ(router_kind_from_string("two_level"), RouterKind::two_level);
  EXPECT_EQ(gate_norm_from_string("renorm"), GateNorm::renorm);
  for (MoeKind k : {MoeKind::moe, MoeKind::hmoe, MoeKind::mohge}) EXPECT_EQ(moe_kind_from_string(to_string(k)), k);
  for (RouterKind k : {RouterKind::top_k, RouterKind::top_p, RouterKind::two_level})
    EXPECT_EQ(router_kind_from_string(to_string(k)), k);
  for (GateNorm k : {GateNorm::softmax, GateNorm::renorm}) EXPECT_EQ(gate_norm_from_string(to_string(k)), k);
  expect_error([] { moe_kind_from_string("dense"); }, "moe, hmoe, mohge");
  expect_error([] { router_kind_from_string("topk"); }, "top_k, top_p, two_level");
  expect_error([] { gate_norm_from_string("sigmoid"); }, "softmax, renorm");
}

// ---------------------------------------------------------------------------------------------
// widths

TEST(MoeWidths, ArithmeticBenchmarkModel) {
  EXPECT_EQ(hmoe_widths("arithmetic", 8, 4096, 8), (std::vector<int>{288, 352, 416, 480, 544, 608, 672, 736}));
  auto w = hmoe_widths("arithmetic", 8, 12288, 8);  // HMoE 0.4B
  EXPECT_EQ(std::accumulate(w.begin(), w.end(), 0), 12288);
  EXPECT_EQ(w.front(), 864);
  EXPECT_EQ(w.back(), 2208);
}

TEST(MoeWidths, StrategiesSumExactlyAndRoundToMultiples) {
  for (const char* s : {"arithmetic", "geometric", "hybrid"})
    for (int E : {4, 8, 16})
      for (int total : {4096, 12288, 32768, 5000})
        for (int mult : {8, 64}) {
          SCOPED_TRACE(std::string(s) + " E=" + std::to_string(E) + " total=" + std::to_string(total) +
                       " mult=" + std::to_string(mult));
          auto rel = hmoe_relative_sizes(s, E);
          auto w = hmoe_widths(s, E, total, mult);
          ASSERT_EQ((int)w.size(), E);
          const long U = std::lround((double)total / mult);
          EXPECT_EQ(std::accumulate(w.begin(), w.end(), 0L), U * mult);
          const double rs = std::accumulate(rel.begin(), rel.end(), 0.0);
          const bool clamped = U * rel[0] / rs < 1.0;  // some share below one unit (geometric)
          for (int e = 0; e < E; e++) {
            EXPECT_GT(w[e], 0);
            EXPECT_EQ(w[e] % mult, 0);
            const double ideal = (double)U * rel[e] / rs;
            if (!clamped) {
              EXPECT_LT(std::fabs(w[e] / mult - ideal), 1.0 + 1e-9);  // within one unit
            }
            if (e > 0) {
              EXPECT_GE(w[e], w[e - 1]);  // ascending strategies stay ascending
            }
          }
        }
  EXPECT_EQ(hmoe_widths("hybrid", 8, 4096), (std::vector<int>{256, 256, 256, 256, 512, 512, 1024, 1024}));
  EXPECT_EQ(hmoe_widths("geometric", 4, 1200), (std::vector<int>{80, 160, 320, 640}));
  // largest remainder: geometric E=3 (1,2,4), 10 units -> ideal 1.43, 2.86, 5.71 -> 1, 3, 6
  EXPECT_EQ(hmoe_widths(std::vector<double>{1, 2, 4}, 80, 8), (std::vector<int>{8, 24, 48}));
  // explicit list already in place comes back unchanged
  EXPECT_EQ(hmoe_widths(std::vector<double>{288, 352, 416}, 1056, 8), (std::vector<int>{288, 352, 416}));
  // 1-unit minimum: 1 : 1000 over 4 units -> 1, 3
  EXPECT_EQ(hmoe_widths(std::vector<double>{1, 1000}, 32, 8), (std::vector<int>{8, 24}));
}

TEST(MoeWidths, GroupWidthsAndErrors) {
  EXPECT_EQ(mohge_group_widths(8, 384, 128), (std::vector<int>{384, 512, 640, 768, 896, 1024, 1152, 1280}));
  EXPECT_EQ(mohge_group_widths(std::vector<int>{64, 128}), (std::vector<int>{64, 128}));
  EXPECT_EQ(mohge_expert_widths({64, 128}, 3), (std::vector<int>{64, 64, 64, 128, 128, 128}));
  expect_error([] { hmoe_widths("linear", 8, 4096); }, "arithmetic, geometric, hybrid");
  expect_error([] { hmoe_widths("hybrid", 6, 4096); }, "hybrid");
  expect_error([] { hmoe_widths("arithmetic", 8, 32, 8); }, "total width");
  expect_error([] { hmoe_widths("arithmetic", 0, 4096); }, "num_experts");
  expect_error([] { hmoe_widths(std::vector<double>{1, 0, 2}, 4096); }, "relative size [1]");
  expect_error([] { hmoe_widths(std::vector<double>{}, 4096); }, "empty");
  expect_error([] { hmoe_widths("arithmetic", 8, 4096, 0); }, "multiple");
  expect_error([] { mohge_group_widths(0, 384, 128); }, "num_expert_groups");
  expect_error([] { mohge_group_widths(8, 0, 128); }, "start");
  expect_error([] { mohge_group_widths(8, 384, -1); }, "step");
  expect_error([] { mohge_group_widths(std::vector<int>{64, 0}); }, "group_widths[1]");
  expect_error([] { mohge_expert_widths({64}, 0); }, "experts_per_group");
}
