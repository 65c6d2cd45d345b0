// Expert placement, load reports, MaxVio and routing metrics (src/moe/placement.h, metrics.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "moe/expert_widths.h"
#include "moe/metrics.h"
#include "moe/placement.h"
#include "moe/router.h"

using namespace mohge;

namespace {

const std::vector<int> kHmoeWidths = {288, 352, 416, 480, 544, 608, 672, 736};  // arithmetic, Σ 4096

std::vector<int> mohge_code_widths() {  // Ng = 8, N = 8, 384 … 1280 step 128
  return mohge_expert_widths(mohge_group_widths(8, 384, 128), 8);
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

bool all_equal(const std::vector<long>& v) { return std::adjacent_find(v.begin(), v.end(), std::not_equal_to<>()) == v.end(); }

void expect_valid(const std::vector<int>& place, int E, int D) {
  ASSERT_EQ((int)place.size(), E);
  std::vector<int> per(D, 0);
  for (int r : place) {
    ASSERT_GE(r, 0);
    ASSERT_LT(r, D);
    per[r]++;
  }
  for (int c : per) EXPECT_EQ(c, E / D);
}

}  // namespace

TEST(MoePlacement, AllSizeMohgeCodeWidthsEqualPerDevice) {
  const auto w = mohge_code_widths();
  for (int D : {1, 2, 4, 8, 16, 32}) {
    SCOPED_TRACE("D=" + std::to_string(D));
    auto place = place_experts(PlacementPolicy::all_size, w, 8, 8, D);
    expect_valid(place, 64, D);
    auto sw = device_static_width(place, w, D);
    EXPECT_TRUE(all_equal(sw)) << "static width differs across devices";
    EXPECT_EQ(sw[0] * D, std::accumulate(w.begin(), w.end(), 0L));
  }
  // D = 16: 4 slots per device; π = 0,7,1,6 | 2,5,3,4 -> both halves sum to 3328
  auto p16 = place_experts(PlacementPolicy::all_size, w, 8, 8, 16);
  EXPECT_EQ(device_static_width(p16, w, 16)[0], 3328);
  EXPECT_EQ(p16[0 * 8 + 0], 0);  // group 0, index 0 -> slot 0
  EXPECT_EQ(p16[7 * 8 + 0], 0);  // group 7, index 0 -> slot 1
  EXPECT_EQ(p16[2 * 8 + 0], 1);  // group 2, index 0 -> slot 4
  // D = N = 8: device r holds in-group index r of every group
  auto p8 = place_experts(PlacementPolicy::all_size, w, 8, 8, 8);
  for (int g = 0; g < 8; g++)
    for (int i = 0; i < 8; i++) EXPECT_EQ(p8[g * 8 + i], i);
}

TEST(MoePlacement, AllSizeInterleaveOrder) {
  // Ng=4, N=2, widths 1..4 (×8): π = 0,3,1,2; slots 0..7 -> experts 0,6,2,4,1,7,3,5
  auto w = mohge_expert_widths({8, 16, 24, 32}, 2);
  auto p = place_experts(PlacementPolicy::all_size, w, 4, 2, 4);  // 2 slots per device: (0,3) (1,2) (0,3) (1,2)
  EXPECT_EQ(p, (std::vector<int>{0, 2, 1, 3, 1, 3, 0, 2}));
  EXPECT_TRUE(all_equal(device_static_width(p, w, 4)));
  // odd Ng: π = 0,4,1,3,2
  auto w5 = mohge_expert_widths({8, 16, 24, 32, 40}, 2);
  auto p5 = place_experts(PlacementPolicy::all_size, w5, 5, 2, 2);
  EXPECT_EQ(p5, (std::vector<int>{0, 1, 0, 1, 0, 1, 0, 1, 0, 1}));
}

TEST(MoePlacement, AllSizeRefusesUnequalD) {
  const auto w = mohge_code_widths();
  expect_error([&] { place_experts(PlacementPolicy::all_size, w, 8, 8, 3); }, "D = 3");
  expect_error([&] { place_experts(PlacementPolicy::all_size, w, 8, 8, 64); }, "unequal static width");
  // geometric group widths: D = 4 splits (0,3)(1,2) -> 9 vs 6 units
  auto g = mohge_expert_widths({64, 128, 256, 512}, 2);
  expect_error([&] { place_experts(PlacementPolicy::all_size, g, 4, 2, 4); }, "unequal static width");
  EXPECT_NO_THROW(place_experts(PlacementPolicy::all_size, g, 4, 2, 2));  // whole rounds per device
  expect_error([&] { place_experts(PlacementPolicy::all_size, g, 4, 3, 2); }, "num_expert_groups");
}

TEST(MoePlacement, PairingBalancesHmoeWidths) {
  for (int D : {2, 4}) {
    auto p = place_experts(PlacementPolicy::pairing, kHmoeWidths, 1, 8, D);
    expect_valid(p, 8, D);
    auto sw = device_static_width(p, kHmoeWidths, D);
    EXPECT_TRUE(all_equal(sw)) << "D=" << D;
    EXPECT_EQ(sw[0], 4096 / D);
  }
  // D=4 is exactly largest-with-smallest: (736,288) (672,352) (608,416) (544,480)
  auto p4 = place_experts(PlacementPolicy::pairing, kHmoeWidths, 1, 8, 4);
  for (int e = 0; e < 4; e++) EXPECT_EQ(p4[e], p4[7 - e]);
  // near-balance on a harder case: HMoE 16 experts, 12288 total, D = 4
  auto w16 = hmoe_widths("arithmetic", 16, 12288);
  auto sw = device_static_width(place_experts(PlacementPolicy::pairing, w16, 1, 16, 4), w16, 4);
  const auto [mn, mx] = std::minmax_element(sw.begin(), sw.end());
  EXPECT_LE((double)*mx / *mn, 1.02);
}

TEST(MoePlacement, ContiguousIsUnbalancedForHeterogeneousWidths) {
  auto p = place_experts(PlacementPolicy::contiguous, kHmoeWidths, 1, 8, 2);
  EXPECT_EQ(p, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1}));
  std::vector<int> uniform(8, 100);
  LoadReport rc = load_report(p, uniform, kHmoeWidths, 2);
  EXPECT_GT(rc.max_over_mean, 1.2);  // 2560 / 2048 = 1.25
  EXPECT_NEAR(rc.max_over_mean, 1.25, 1e-12);
  LoadReport rp = load_report(place_experts(PlacementPolicy::pairing, kHmoeWidths, 1, 8, 2), uniform, kHmoeWidths, 2);
  EXPECT_NEAR(rp.max_over_mean, 1.0, 1e-12);
  LoadReport ra = load_report(place_experts(PlacementPolicy::all_size, kHmoeWidths, 8, 1, 2), uniform, kHmoeWidths, 2);
  EXPECT_NEAR(ra.max_over_mean, 1.0, 1e-12);  // ungrouped all_size (Ng=E, N=1) pairs 0-7, 1-6, …
  expect_error([&] { place_experts(PlacementPolicy::contiguous, kHmoeWidths, 1, 8, 3); }, "D = 3");
  expect_error([&] { place_experts(PlacementPolicy::pairing, kHmoeWidths, 1, 8, 0); }, "D = 0");
}

TEST(MoePlacement, AllSizeBalancedWhenIntraGroupBalanced) {
  // n_{g,i} = n_g / N with a very uneven split across groups: with D = N every device's load is
  // Σ_g n_g/N · W_g, identical; contiguous (one group per device) is far off
  const auto w = mohge_code_widths();
  std::vector<double> n(64);
  const double ng[8] = {4000, 2500, 1200, 800, 300, 120, 60, 20};
  for (int g = 0; g < 8; g++)
    for (int i = 0; i < 8; i++) n[g * 8 + i] = ng[g] / 8;
  auto ra = load_report(place_experts(PlacementPolicy::all_size, w, 8, 8, 8), n, w, 8);
  EXPECT_NEAR(ra.max_over_mean, 1.0, 1e-12);
  for (double s : ra.device_token_share) EXPECT_NEAR(s, 1.0 / 8, 1e-12);
  auto rc = load_report(place_experts(PlacementPolicy::contiguous, w, 8, 8, 8), n, w, 8);
  EXPECT_GT(rc.max_over_mean, 2.0);
}

TEST(MoePlacement, LoadReportAndMaxVioByHand) {
  // 4 experts on 2 devices: placement (0, 1, 0, 1), widths (10, 20, 30, 40), n = (1, 2, 3, 6)
  // loads: dev0 = 1·10 + 3·30 = 100, dev1 = 2·20 + 6·40 = 280; mean 190 -> max/mean = 280/190
  // shares: dev0 = 4/12, dev1 = 8/12; MaxVio = 6 / 3 − 1 = 1
  LoadReport r = load_report({0, 1, 0, 1}, std::vector<int>{1, 2, 3, 6}, {10, 20, 30, 40}, 2);
  EXPECT_EQ(r.device_load, (std::vector<double>{100, 280}));
  EXPECT_NEAR(r.device_token_share[0], 4.0 / 12, 1e-15);
  EXPECT_NEAR(r.device_token_share[1], 8.0 / 12, 1e-15);
  EXPECT_NEAR(r.max_over_mean, 280.0 / 190.0, 1e-15);
  EXPECT_DOUBLE_EQ(max_vio(std::vector<int>{1, 2, 3, 6}), 1.0);
  EXPECT_DOUBLE_EQ(max_vio(std::vector<int>{5, 5, 5}), 0.0);
  EXPECT_DOUBLE_EQ(max_vio(std::vector<int>{0, 0}), 0.0);
  LoadReport z = load_report({0, 1}, std::vector<int>{0, 0}, {8, 8}, 2);
  EXPECT_EQ(z.max_over_mean, 1.0);
  expect_error([] { load_report({0, 2}, std::vector<int>{1, 1}, {8, 8}, 2); }, "device 2");
}

TEST(MoePlacement, StringHelpers) {
  for (PlacementPolicy p : {PlacementPolicy::contiguous, PlacementPolicy::pairing, PlacementPolicy::all_size})
    EXPECT_EQ(placement_from_string(to_string(p)), p);
  expect_error([] { placement_from_string("round_robin"); }, "contiguous, pairing, all_size");
}

TEST(MoeMetrics, FromRoutingAndJson) {
  // mohge layout Ng=2, N=2, widths 64, 128; Kg = 1, K = 2; d = 16; D = 2
  MoeConfig cfg;
  cfg.kind = MoeKind::mohge;
  cfg.router = RouterKind::two_level;
  cfg.num_expert_groups = 2, cfg.experts_per_group = 2, cfg.num_experts = 4;
  cfg.topk_group = 1, cfg.num_experts_per_tok = 2;
  cfg.expert_widths = mohge_expert_widths({64, 128}, 2);
  cfg.shared_expert_width = 32;
  cfg.validate();
  // token 0 -> group 0 (experts 0, 1); tokens 1, 2 -> group 1 (experts 2, 3)
  std::vector<float> y = {2, -2, -2, 2, -1, 1};
  std::vector<float> z = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  Routing r;
  RouterCache c;
  router_forward(cfg, z.data(), y.data(), 3, r, c);
  ASSERT_EQ(r.tokens_per_expert, (std::vector<int>{1, 1, 2, 2}));
  RoutingMetrics m = routing_metrics(cfg, r, 16, 2);
  EXPECT_EQ(m.tokens, 3);
  EXPECT_EQ(m.assignments, 6);
  EXPECT_DOUBLE_EQ(m.experts_per_token, 2.0);
  // Σ n_e W_e = 64 + 64 + 256 + 256 = 640 -> 3·16·640 / 3 = 10240 per token
  EXPECT_DOUBLE_EQ(m.activated_expert_params, 10240.0);
  // + shared 3·16·32 = 1536, + router 16·4 + 16·2 = 96
  EXPECT_DOUBLE_EQ(m.activated_layer_params, 10240.0 + 1536.0 + 96.0);
  EXPECT_DOUBLE_EQ(m.total_expert_params, 3.0 * 16 * (64 + 64 + 128 + 128));
  EXPECT_EQ(m.expert_share, (std::vector<double>{1.0 / 6, 1.0 / 6, 2.0 / 6, 2.0 / 6}));
  EXPECT_NEAR(m.group_share[0], 1.0 / 3, 1e-15);
  EXPECT_NEAR(m.group_share[1], 2.0 / 3, 1e-15);
  EXPECT_NEAR(m.group_token_frac[0], 1.0 / 3, 1e-15);
  EXPECT_NEAR(m.group_token_frac[1], 2.0 / 3, 1e-15);
  EXPECT_NEAR(m.max_vio, 2.0 / 1.5 - 1.0, 1e-15);
  ASSERT_EQ(m.placements.size(), 3u);
  for (auto& p : m.placements) EXPECT_TRUE(p.ok) << to_string(p.policy) << ": " << p.error;
  // all_size with D = N = 2: device i holds expert i of both groups -> loads 64+256 each
  EXPECT_NEAR(m.placements[2].report.max_over_mean, 1.0, 1e-12);
  EXPECT_GT(m.placements[0].report.max_over_mean, 1.5);  // contiguous: one group per device

  nlohmann::json j = m;
  EXPECT_EQ(j["devices"], 2);
  EXPECT_EQ(j["placements"][2]["policy"], "all_size");
  EXPECT_EQ(j["group_share"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["activated_expert_params"].get<double>(), 10240.0);

  // a D the all_size policy refuses shows up as ok = false with its message, not an exception
  RoutingMetrics m3 = routing_metrics(cfg, r, 16, 4);
  EXPECT_TRUE(m3.placements[0].ok);
  EXPECT_FALSE(m3.placements[2].ok);
  EXPECT_NE(m3.placements[2].error.find("unequal static width"), std::string::npos) << m3.placements[2].error;
  nlohmann::json j3 = m3;
  EXPECT_TRUE(j3["placements"][2].contains("error"));

  // from a BalanceStats over two micro-batches: counts double, per-token numbers unchanged
  BalanceStats s;
  s.reset(cfg);
  s.add(c.host_stats);
  s.add(c.host_stats);
  RoutingMetrics ms = routing_metrics(cfg, s, 16, 2);
  EXPECT_DOUBLE_EQ(ms.activated_expert_params, m.activated_expert_params);
  EXPECT_EQ(ms.expert_share, m.expert_share);
  EXPECT_EQ(ms.tokens, 6);

  AuxLossValues L = aux_loss_values(cfg, c, r, 0);
  nlohmann::json jl = L;
  EXPECT_TRUE(jl.contains("intra_group"));
  EXPECT_TRUE(jl.contains("total"));
}

TEST(MoeMetrics, UngroupedLayoutUsesSingletonGroups) {
  MoeConfig cfg;
  cfg.kind = MoeKind::hmoe;
  cfg.router = RouterKind::top_k;
  cfg.num_experts = 8;
  cfg.num_experts_per_tok = 2;
  cfg.expert_widths = kHmoeWidths;
  cfg.validate();
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> z(100 * 8);
  for (float& v : z) v = nd(rng);
  Routing r;
  RouterCache c;
  router_forward(cfg, z.data(), nullptr, 100, r, c);
  RoutingMetrics m = routing_metrics(cfg, r, 32, 4);
  EXPECT_TRUE(m.group_share.empty());
  for (auto& p : m.placements) EXPECT_TRUE(p.ok) << p.error;
  EXPECT_EQ(m.placements[2].static_width, (std::vector<long>{1024, 1024, 1024, 1024}));
  EXPECT_EQ(m.activated_layer_params, m.activated_expert_params + 32.0 * 8);
}
