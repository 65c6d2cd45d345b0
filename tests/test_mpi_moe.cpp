// The expert-parallel MoE layer over MPI processes (issue 9): D ranks, each with its slice of the
// tokens and only its experts, compute what the single-process layer computes on all the tokens —
// outputs, input gradients, router and shared-expert gradients (summed over the ranks, as training's
// all-reduce does) and every expert's weight gradients on its owner — for every placement, for a
// rank that receives no rows and for a rank without tokens. Linked into test_mpi (run under mpirun).
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "dist/mpi_collective.h"
#include "model/ffn_moe.h"
#include "moe/expert_parallel.h"

namespace mohge {
namespace {

ModelConfig layer_config(PlacementPolicy placement, int D, int rank) {
  ModelConfig c;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.init_std = 0.1;
  c.ffn_kind = FfnKind::mohge;
  MoeConfig& m = c.moe;
  m.kind = MoeKind::mohge, m.router = RouterKind::two_level;
  m.num_experts = 8, m.num_expert_groups = 4, m.experts_per_group = 2;
  m.expert_widths = {8, 8, 12, 12, 16, 16, 20, 20};  // all_size balances 2 and 4 ranks
  m.topk_group = 2, m.num_experts_per_tok = 2;
  m.shared_expert_width = 8;
  c.validate();
  c.expert_parallel = {placement, D, rank};
  return c;
}

// max |a − b| / max |b|
double rel_diff(const float* a, const float* b, size_t n) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < n; i++) worst = std::max(worst, (double)std::abs(a[i] - b[i])), scale = std::max(scale, (double)std::abs(b[i]));
  return worst / scale;
}

// tokens[r]: rank r's tokens (rank 0 the first ones); starve_rank >= 0: the router never picks that
// rank's experts (a large first feature meets a large negative router weight).
void expect_layer_equals_single(PlacementPolicy placement, const std::vector<int>& tokens, int starve_rank) {
  MpiCollective group(MPI_COMM_WORLD);
  const int D = group.size(), me = group.rank();
  ASSERT_EQ((int)tokens.size(), D);
  std::vector<int> begin(D + 1, 0);
  for (int r = 0; r < D; r++) begin[r + 1] = begin[r] + tokens[r];
  const int N = begin[D];
  // the reference layer (every expert) on all tokens, on every rank: same seed, same values
  const ModelConfig one = layer_config(placement, 1, 0);
  const int d = one.hidden_size;
  ParamTable ref(cpu_backend());
  MoeFfn single(one, ref, "mlp");
  ref.allocate();
  std::mt19937_64 rng(99);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& info : ref.infos()) {
    float* w = ref.data(ref.find(info.name));
    for (int64_t i = 0; i < info.numel; i++) w[i] = 0.3f * nd(rng);
  }
  std::vector<float> x((size_t)N * d), dout((size_t)N * d);
  for (auto& v : x) v = nd(rng);
  for (auto& v : dout) v = nd(rng);
  const ModelConfig mine = layer_config(placement, D, me);
  if (starve_rank >= 0) {
    for (int t = 0; t < N; t++) x[(size_t)t * d] = 2.0f + std::abs(x[(size_t)t * d]);
    for (int e : expert_slots(mine.moe, mine.expert_parallel).experts_of(starve_rank))
      ref.data(ref.find("mlp.gate.weight"))[(size_t)e * d] = -40.0f;
  }
  std::vector<float> out_ref((size_t)N * d), dx_ref((size_t)N * d, 0.0f);
  ref.zero_grad();
  single.forward(out_ref.data(), x.data(), N, 0, Mode::train);
  single.backward(dx_ref.data(), dout.data(), x.data(), N, 1.0f);

  // this rank's part
  ParamTable p(cpu_backend());
  MoeFfn layer(mine, p, "mlp", &group);
  p.allocate();
  for (auto& info : p.infos()) std::copy_n(ref.data(ref.find(info.name)), info.numel, p.data(p.find(info.name)));
  p.zero_grad();
  const size_t o = (size_t)begin[me] * d, n = (size_t)tokens[me] * d;
  std::vector<float> out(n), dx(n, 0.0f);
  layer.forward(out.data(), x.data() + o, tokens[me], 0, Mode::train);
  layer.backward(dx.data(), dout.data() + o, x.data() + o, tokens[me], 1.0f);
  if (starve_rank >= 0) {  // its experts got no rows, here as in the single-process layer
    for (int e : expert_slots(mine.moe, mine.expert_parallel).experts_of(starve_rank))
      ASSERT_EQ(single.routing()->last_tokens_per_expert[e], 0) << "expert " << e;
  }

  const std::string where = fmt::format("rank {} of {}, placement {}", me, D, to_string(placement));
  EXPECT_LT(rel_diff(out.data(), out_ref.data() + o, n), 1e-5) << "outputs, " << where;
  EXPECT_LT(rel_diff(dx.data(), dx_ref.data() + o, n), 1e-5) << "input gradients, " << where;
  for (auto& info : p.infos()) {
    std::vector<float> g(p.grad(p.find(info.name)), p.grad(p.find(info.name)) + info.numel);
    const bool expert = info.name.find(".experts.") != std::string::npos;
    if (!expert) group.allreduce_sum(g.data(), (int64_t)g.size());  // replicated: every rank's tokens
    const float* want = ref.grad(ref.find(info.name));
    EXPECT_LT(rel_diff(g.data(), want, g.size()), 1e-5) << info.name << ", " << where;
  }
}

TEST(MoeLayerOverMpi, EqualsSingleProcessForEveryPlacement) {
  int D = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &D);
  std::vector<int> tokens(D);
  for (int r = 0; r < D; r++) tokens[r] = 5 + 3 * r;  // uneven slices
  for (auto p : {PlacementPolicy::contiguous, PlacementPolicy::pairing, PlacementPolicy::all_size})
    expect_layer_equals_single(p, tokens, -1);
}

// The last rank's experts get no rows, yet it enters every exchange; rank 1 has no tokens of its own.
TEST(MoeLayerOverMpi, RankReceivingNoRowsAndRankWithoutTokens) {
  int D = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &D);
  std::vector<int> tokens(D, 6);
  expect_layer_equals_single(PlacementPolicy::all_size, tokens, D - 1);
  tokens[1] = 0;
  expect_layer_equals_single(PlacementPolicy::contiguous, tokens, -1);
}

}  // namespace
}  // namespace mohge
