// The token-dispatch seam of the MoE layer (moe/dispatcher.h, moe/expert_parallel.h): D layer
// instances, one per simulated expert-parallel rank, run in D threads connected by a shared-memory
// Collective (MPI_Alltoall / MPI_Alltoallv simulated in one process), each on its own slice of the
// tokens and owning only its experts. Together they must compute what the single-process layer
// computes on all the tokens: outputs, input gradients, router gradients (summed over ranks, as the
// data-parallel all-reduce will) and every expert's weight gradients (on its owner).
// Auxiliary losses are off here: with them on, each rank's loss uses its own micro-batch
// statistics, which differ from the whole batch's by design (SPEC §4).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "model/ffn_moe.h"
#include "model/params.h"
#include "moe/dispatcher.h"
#include "moe/expert_parallel.h"
#include "test_util.h"

namespace mohge {
namespace {

const bool kThreads = test::single_threaded_unless_set();

// ------------------------------------------------------------------ ranks as threads
// Shared memory of D ranks: each collective call posts its arguments, waits for every rank, reads
// the others' posts, and waits again (so no buffer is reused while a peer reads it). Every rank
// must make the same calls in the same order: a call of another kind fails at once, a skipped one
// fails after a timeout instead of hanging.
class Mailbox {
 public:
  struct Post {
    std::string op;
    const void* send = nullptr;
    const int64_t* count = nullptr;
    const int64_t* offset = nullptr;
    int n = 0;
  };
  explicit Mailbox(int D) : D_(D), posts_(D) {}
  int size() const { return D_; }
  // post, then wait for every rank; returns all posts (valid until finish())
  const std::vector<Post>& exchange(int rank, const Post& p) {
    posts_[rank] = p;
    barrier();
    for (int r = 0; r < D_; r++)
      MOHGE_CHECK(posts_[r].op == p.op && posts_[r].n == p.n, "rank {} called {}({}) while rank {} called {}({})", rank,
                  p.op, p.n, r, posts_[r].op, posts_[r].n);
    return posts_;
  }
  void finish() { barrier(); }

 private:
  void barrier() {
    std::unique_lock<std::mutex> lk(mu_);
    const int64_t gen = generation_;
    if (++arrived_ == D_) {
      arrived_ = 0, generation_++;
      cv_.notify_all();
      return;
    }
    MOHGE_CHECK(cv_.wait_for(lk, std::chrono::seconds(20), [&] { return generation_ != gen; }),
                "a rank waited 20 s at an exchange that another rank did not enter");
  }
  int D_;
  std::vector<Post> posts_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class ThreadCollective : public Collective {
 public:
  ThreadCollective(Mailbox& box, int rank) : box_(box), rank_(rank) {}
  int size() const override { return box_.size(); }
  int rank() const override { return rank_; }
  void alltoall(const int* send, int* recv, int n) override {
    calls++;
    auto& posts = box_.exchange(rank_, {"alltoall", send, nullptr, nullptr, n});
    for (int r = 0; r < size(); r++)
      std::copy_n(static_cast<const int*>(posts[r].send) + (size_t)rank_ * n, n, recv + (size_t)r * n);
    box_.finish();
  }
  void alltoallv(const float* send, const int64_t* send_count, const int64_t* send_offset, float* recv,
                 const int64_t* recv_count, const int64_t* recv_offset) override {
    calls++;
    auto& posts = box_.exchange(rank_, {"alltoallv", send, send_count, send_offset, 0});
    for (int r = 0; r < size(); r++) {
      MOHGE_CHECK(posts[r].count[rank_] == recv_count[r], "rank {} expects {} floats from rank {}, which sends {}",
                  rank_, recv_count[r], r, posts[r].count[rank_]);
      std::copy_n(static_cast<const float*>(posts[r].send) + posts[r].offset[rank_], recv_count[r],
                  recv + recv_offset[r]);
    }
    box_.finish();
  }
  void allreduce_sum(float* data, int64_t n) override { sum_posts(data, n); }
  void allreduce_sum(double* data, int64_t n) override { sum_posts(data, n); }
  void broadcast(void* data, int64_t bytes, int root) override {
    auto& posts = box_.exchange(rank_, {"broadcast", data, nullptr, nullptr, (int)bytes});
    std::vector<char> got(static_cast<const char*>(posts[root].send), static_cast<const char*>(posts[root].send) + bytes);
    box_.finish();
    std::copy(got.begin(), got.end(), static_cast<char*>(data));
  }
  // every block summed (the other blocks too: they are scratch), every block copied from its rank
  void reduce_scatter_sum(float* data, const int64_t* count) override { sum_posts(data, block_total(count)); }
  void allgather(float* data, const int64_t* count) override {
    auto& posts = box_.exchange(rank_, {"allgather", data, nullptr, nullptr, 0});
    std::vector<float> got(data, data + block_total(count));
    for (int r = 0, at = 0; r < size(); at += (int)count[r], r++)
      std::copy_n(static_cast<const float*>(posts[r].send) + at, count[r], got.data() + at);
    box_.finish();
    std::copy(got.begin(), got.end(), data);
  }
  int calls = 0;

 private:
  int64_t block_total(const int64_t* count) const {
    int64_t n = 0;
    for (int r = 0; r < size(); r++) n += count[r];
    return n;
  }
  // every rank sums the posts in rank order (the same sums everywhere), then writes them back once
  // no peer reads its data any more
  template <class T>
  void sum_posts(T* data, int64_t n) {
    auto& posts = box_.exchange(rank_, {"allreduce", data, nullptr, nullptr, (int)n});
    std::vector<T> sum(n, T(0));
    for (int r = 0; r < size(); r++)
      for (int64_t i = 0; i < n; i++) sum[i] += static_cast<const T*>(posts[r].send)[i];
    box_.finish();
    std::copy(sum.begin(), sum.end(), data);
  }
  Mailbox& box_;
  int rank_;
};

// Runs body(rank) on D threads; rethrows the first failure.
template <class F>
void run_ranks(int D, F body) {
  std::vector<std::exception_ptr> err(D);
  std::vector<std::thread> th;
  const int omp_threads = omp_get_max_threads();
  for (int r = 0; r < D; r++)
    th.emplace_back([&, r] {
      omp_set_num_threads(omp_threads);
      try {
        body(r);
      } catch (...) {
        err[r] = std::current_exception();
      }
    });
  for (auto& t : th) t.join();
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
}

// ------------------------------------------------------------------ the dispatcher alone
// Rank r sends to slot s (rank s / L, its expert s % L) `cnt(r, s)` rows whose values name (r, s,
// row): received rows come expert-major, then by source rank, each source's rows in send order;
// combine returns every row to where it was sent from.
TEST(AllToAllDispatcher, ReceivesByExpertThenSourceAndCombinesBack) {
  const int D = 3, L = 2, d = 2;
  auto cnt = [](int r, int s) { return (r * 5 + s * 3) % 4; };  // includes zeros
  auto value = [](int r, int s, int k, int c) { return (float)(1000 * r + 100 * s + 10 * k + c); };
  Mailbox box(D);
  std::vector<ThreadCollective> coll;
  for (int r = 0; r < D; r++) coll.emplace_back(box, r);
  run_ranks(D, [&](int r) {
    AllToAllDispatcher disp(cpu_backend(), coll[r], L, d);
    std::vector<int> send_rows(D * L);
    std::vector<float> send;
    for (int s = 0; s < D * L; s++) {
      send_rows[s] = cnt(r, s);
      for (int k = 0; k < cnt(r, s); k++)
        for (int c = 0; c < d; c++) send.push_back(value(r, s, k, c));
    }
    disp.plan(send_rows);
    EXPECT_EQ(disp.sent_rows(), (int64_t)send.size() / d);
    std::vector<float> want;
    std::vector<int> want_rows(L, 0);
    for (int i = 0; i < L; i++)
      for (int src = 0; src < D; src++)
        for (int k = 0; k < cnt(src, r * L + i); k++) {
          want_rows[i]++;
          for (int c = 0; c < d; c++) want.push_back(value(src, r * L + i, k, c));
        }
    EXPECT_EQ(disp.expert_rows(), want_rows) << "rank " << r;
    ASSERT_EQ(disp.received_rows(), (int64_t)want.size() / d);
    const float* got = disp.dispatch(send.data());
    for (size_t i = 0; i < want.size(); i++) ASSERT_EQ(got[i], want[i]) << "rank " << r << " float " << i;
    // experts answer with their input + 0.5; combine brings the answers home in send order
    std::vector<float> answer(got, got + want.size());
    for (float& v : answer) v += 0.5f;
    const float* back = disp.combine(answer.data());
    for (size_t i = 0; i < send.size(); i++) ASSERT_EQ(back[i], send[i] + 0.5f) << "rank " << r << " float " << i;
    // backward: the same movements, in their own buffers (the forward results stay valid)
    const float* dback = disp.dispatch_backward(disp.combine_backward(send.data()));
    for (size_t i = 0; i < send.size(); i++) ASSERT_EQ(dback[i], send[i]) << "rank " << r << " float " << i;
    for (size_t i = 0; i < want.size(); i++) ASSERT_EQ(got[i], want[i]) << "forward rows overwritten";
  });
  for (auto& c : coll) EXPECT_EQ(c.calls, 5);  // counts + 4 row exchanges, on every rank
}

// The thread collective's all-reduce and broadcast (the semantics of dist/mpi_collective.h's).
TEST(ThreadCollective, AllreduceSumsAndBroadcastCopies) {
  const int D = 3;
  Mailbox box(D);
  std::vector<ThreadCollective> coll;
  for (int r = 0; r < D; r++) coll.emplace_back(box, r);
  run_ranks(D, [&](int r) {
    std::vector<float> f = {(float)r, 10.0f * r};
    std::vector<double> g = {0.5 * r};
    coll[r].allreduce_sum(f.data(), 2);
    coll[r].allreduce_sum(g.data(), 1);
    EXPECT_EQ(f, (std::vector<float>{3.0f, 30.0f})) << "rank " << r;
    EXPECT_EQ(g[0], 1.5) << "rank " << r;
    int v = r == 1 ? 42 : -1;
    coll[r].broadcast(&v, sizeof v, 1);
    EXPECT_EQ(v, 42) << "rank " << r;
  });
}

// ------------------------------------------------------------------ expert slots
TEST(ExpertSlots, AllSizeGivesEveryRankOneExpertOfEachWidthPair) {
  MoeConfig m;
  m.kind = MoeKind::mohge, m.router = RouterKind::two_level;
  m.num_expert_groups = 4, m.experts_per_group = 2, m.num_experts = 8;
  m.expert_widths = {8, 8, 12, 12, 16, 16, 20, 20};
  // slots 0..7 hold g0i0, g3i0, g1i0, g2i0, g0i1, g3i1, g1i1, g2i1 (SPEC §5, π = 0,3,1,2); D = 4
  // takes two slots each; each rank lists its experts in ascending id
  ExpertSlots s = expert_slots(m, {std::nullopt, 4, 0});
  EXPECT_EQ(s.expert, (std::vector<int>{0, 6, 2, 4, 1, 7, 3, 5}));
  EXPECT_EQ(s.per_rank, 2);
  EXPECT_EQ(s.experts_of(2), (std::vector<int>{1, 7}));
  for (int e = 0; e < 8; e++) EXPECT_EQ(s.expert[s.slot[e]], e);
  // one rank: slot s is expert s, whatever the policy
  for (auto p : {PlacementPolicy::contiguous, PlacementPolicy::pairing, PlacementPolicy::all_size})
    EXPECT_EQ(expert_slots(m, {p, 1, 0}).expert, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(expert_slots(m, {PlacementPolicy::contiguous, 2, 1}).experts_of(1), (std::vector<int>{4, 5, 6, 7}));
}

TEST(ExpertSlots, DefaultsAndErrors) {
  EXPECT_EQ(default_placement(MoeKind::mohge), PlacementPolicy::all_size);
  EXPECT_EQ(default_placement(MoeKind::hmoe), PlacementPolicy::pairing);
  EXPECT_EQ(default_placement(MoeKind::moe), PlacementPolicy::contiguous);
  MoeConfig m;
  m.num_experts = 8, m.expert_widths.assign(8, 16);
  EXPECT_ERROR(expert_slots(m, {std::nullopt, 2, 2}), "rank 2 outside [0, 2)");
  EXPECT_ERROR(expert_slots(m, {std::nullopt, 3, 0}), "8 experts do not split evenly over D = 3");
}

// ------------------------------------------------------------------ the layer over D ranks
ModelConfig layer_config(const std::string& kind) {
  ModelConfig c;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.init_std = 0.1;
  c.ffn_kind = kind == "mohge" ? FfnKind::mohge : FfnKind::hmoe;
  MoeConfig& m = c.moe;
  m.num_experts = 8;
  if (kind == "mohge") {  // 4 groups × 2, arithmetic widths: all_size balances D = 2 and 4
    m.kind = MoeKind::mohge, m.router = RouterKind::two_level;
    m.num_expert_groups = 4, m.experts_per_group = 2;
    m.expert_widths = {8, 8, 12, 12, 16, 16, 20, 20};
    m.topk_group = 2, m.num_experts_per_tok = 2;
    m.shared_expert_width = 8;
  } else if (kind == "hmoe_top_k") {
    m.kind = MoeKind::hmoe, m.router = RouterKind::top_k;
    m.expert_widths = {8, 10, 12, 14, 16, 18, 20, 22};
    m.num_experts_per_tok = 2;
  } else {  // hmoe_top_p
    m.kind = MoeKind::hmoe, m.router = RouterKind::top_p;
    m.expert_widths = {8, 10, 12, 14, 16, 18, 20, 22};
    m.top_p = 0.6, m.max_experts_per_tok = 3;
  }
  c.validate();
  return c;
}

struct EpRun {
  PlacementPolicy placement;
  int D;
  std::vector<int> tokens;   // [D] tokens of each rank, in order (rank 0 the first ones)
  std::vector<int> starved;  // experts the router never picks
};

// Layer outputs and gradients of one or more ranks, gathered per tensor.
struct LayerResult {
  std::vector<float> out, dx;                  // [N,d] over all tokens, rank slices in order
  std::map<std::string, std::vector<float>> grad;  // summed over the ranks that hold the tensor
  std::map<std::string, int> holders;          // how many ranks hold each tensor
  std::vector<int> tokens_per_expert;          // summed over ranks
};

void randomize(ParamTable& p, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& info : p.infos()) {
    const bool router = info.name.find("gate.weight") != std::string::npos &&
                        info.name.find("gate_proj") == std::string::npos;
    float* w = p.data(p.find(info.name));
    for (int64_t i = 0; i < info.numel; i++) w[i] = (router ? 0.5f : 0.25f) * nd(rng);
  }
}

// Runs the layer on D ranks (D = 1 with no communicator: the single-process layer), weights copied
// by name from `weights`.
LayerResult run_layer(const ModelConfig& cfg, const ParamTable& weights, const EpRun& run, const std::vector<float>& x,
                      const std::vector<float>& dout, std::vector<int>* exchanges = nullptr) {
  const int D = run.D, d = cfg.hidden_size;
  std::vector<int> begin(D + 1, 0);
  for (int r = 0; r < D; r++) begin[r + 1] = begin[r] + run.tokens[r];
  const int N = begin[D];
  Mailbox box(D);
  std::vector<ThreadCollective> coll;
  for (int r = 0; r < D; r++) coll.emplace_back(box, r);
  std::vector<ParamTable> params;
  params.reserve(D);  // the layers hold references
  std::vector<std::unique_ptr<MoeFfn>> layer(D);
  for (int r = 0; r < D; r++) {
    params.emplace_back(cpu_backend());
    ModelConfig c = cfg;
    c.expert_parallel = {run.placement, D, r};
    layer[r] = std::make_unique<MoeFfn>(c, params[r], "mlp", D > 1 ? &coll[r] : nullptr);
    params[r].allocate();
    for (auto& info : params[r].infos()) {
      const int id = weights.find(info.name);
      EXPECT_GE(id, 0) << info.name;
      std::copy_n(weights.data(id), info.numel, params[r].data(params[r].find(info.name)));
    }
    params[r].zero_grad();
  }
  LayerResult res;
  res.out.assign((size_t)N * d, 0.0f), res.dx.assign((size_t)N * d, 0.0f);
  run_ranks(D, [&](int r) {
    const size_t o = (size_t)begin[r] * d;
    layer[r]->forward(res.out.data() + o, x.data() + o, run.tokens[r], 0, Mode::train);
    layer[r]->backward(res.dx.data() + o, dout.data() + o, x.data() + o, run.tokens[r], 1.0f);
  });
  res.tokens_per_expert.assign(cfg.moe.num_experts, 0);
  for (int r = 0; r < D; r++) {
    for (auto& info : params[r].infos()) {
      auto& g = res.grad[info.name];
      g.resize(info.numel, 0.0f);
      const float* gr = params[r].grad(params[r].find(info.name));
      for (int64_t i = 0; i < info.numel; i++) g[i] += gr[i];
      res.holders[info.name]++;
    }
    for (int e = 0; e < cfg.moe.num_experts; e++) res.tokens_per_expert[e] += layer[r]->routing()->last_tokens_per_expert[e];
  }
  if (exchanges)
    for (auto& c : coll) exchanges->push_back(c.calls);
  return res;
}

void expect_close(const std::vector<float>& ours, const std::vector<float>& ref, const std::string& what) {
  ASSERT_EQ(ours.size(), ref.size()) << what;
  double scale = 0;
  for (float v : ref) scale = std::max(scale, (double)std::abs(v));
  int bad = 0;
  for (size_t i = 0; i < ref.size(); i++)
    if (std::abs(ours[i] - ref[i]) > 1e-5 * scale + 1e-5 * std::abs(ref[i]) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: " << "ranks " << ours[i] << " vs single process " << ref[i];
  EXPECT_EQ(bad, 0) << what;
}

// The D-rank layer against the single-process one on the same N tokens and weights.
void expect_ep_equals_single(const std::string& kind, const EpRun& run) {
  ModelConfig cfg = layer_config(kind);
  const int d = cfg.hidden_size, E = cfg.moe.num_experts;
  int N = 0;
  for (int n : run.tokens) N += n;
  // the reference layer owns every expert; its weights are the ranks' too
  ParamTable weights(cpu_backend());
  MoeFfn single(cfg, weights, "mlp");
  weights.allocate();
  std::mt19937_64 rng(1234 + run.D);
  randomize(weights, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x((size_t)N * d), dout((size_t)N * d);
  for (auto& v : x) v = nd(rng);
  for (auto& v : dout) v = nd(rng);
  // starve experts: a large positive first feature meets a large negative router weight
  for (int t = 0; t < N; t++) x[(size_t)t * d] = 2.0f + std::abs(x[(size_t)t * d]);
  for (int e : run.starved) weights.data(weights.find("mlp.gate.weight"))[(size_t)e * d] = -40.0f;

  const LayerResult ref = run_layer(cfg, weights, {run.placement, 1, {N}, {}}, x, dout);
  std::vector<int> exchanges;
  const LayerResult ep = run_layer(cfg, weights, run, x, dout, &exchanges);

  int routed = 0;
  for (int e = 0; e < E; e++) {
    routed += ref.tokens_per_expert[e] > 0;
    if (std::count(run.starved.begin(), run.starved.end(), e)) {
      ASSERT_EQ(ref.tokens_per_expert[e], 0) << "expert " << e;
    }
  }
  ASSERT_GE(routed, 2) << "routing degenerate";
  EXPECT_EQ(ep.tokens_per_expert, ref.tokens_per_expert);
  for (int c : exchanges) EXPECT_EQ(c, 5) << "every rank enters every exchange";
  expect_close(ep.out, ref.out, "out");
  expect_close(ep.dx, ref.dx, "dinput");
  // every tensor: router and shared expert on every rank, each expert on exactly one
  for (auto& [name, g] : ref.grad) {
    ASSERT_TRUE(ep.grad.count(name)) << name << " on no rank";
    const bool expert = name.find(".experts.") != std::string::npos;
    EXPECT_EQ(ep.holders.at(name), expert ? 1 : run.D) << name;
    expect_close(ep.grad.at(name), g, name);
  }
  EXPECT_EQ(ep.grad.size(), ref.grad.size());
}

struct EpCase {
  const char* kind;
  PlacementPolicy placement;
  int D;
};

class MoeLayerOverRanks : public ::testing::TestWithParam<EpCase> {};

TEST_P(MoeLayerOverRanks, EqualsSingleProcessLayer) {
  const EpCase& c = GetParam();
  std::vector<int> tokens(c.D);
  for (int r = 0; r < c.D; r++) tokens[r] = 5 + 3 * r;  // uneven slices
  expect_ep_equals_single(c.kind, {c.placement, c.D, tokens, {}});
}

std::vector<EpCase> all_cases() {
  std::vector<EpCase> v;
  for (const char* kind : {"mohge", "hmoe_top_k", "hmoe_top_p"})
    for (auto p : {PlacementPolicy::contiguous, PlacementPolicy::pairing, PlacementPolicy::all_size})
      for (int D : {2, 4}) v.push_back({kind, p, D});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Placements, MoeLayerOverRanks, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  return std::string(info.param.kind) + "_" + to_string(info.param.placement) + "_D" + std::to_string(info.param.D);
});

// all_size, D = 4: rank 3 owns experts 3 and 5 (g1i1, g2i1), which the router never picks: it
// receives no rows but still enters every exchange, and its experts' gradients are zero.
TEST(MoeLayerOverRanks, RankReceivingNoRows) {
  expect_ep_equals_single("mohge", {PlacementPolicy::all_size, 4, {6, 7, 5, 8}, {3, 5}});
}

// A rank with no tokens of its own still serves its experts.
TEST(MoeLayerOverRanks, RankWithoutTokens) {
  expect_ep_equals_single("hmoe_top_k", {PlacementPolicy::pairing, 4, {9, 0, 7, 6}, {}});
  expect_ep_equals_single("mohge", {PlacementPolicy::contiguous, 2, {0, 14}, {}});
}

// Single experts without rows beside busy ones on the same rank.
TEST(MoeLayerOverRanks, ExpertsReceivingNoRows) {
  expect_ep_equals_single("hmoe_top_k", {PlacementPolicy::contiguous, 2, {8, 8}, {1, 6}});
  expect_ep_equals_single("hmoe_top_p", {PlacementPolicy::all_size, 4, {4, 4, 4, 4}, {0, 2}});
}

TEST(MoeLayerOverRanks, RegistersOnlyItsOwnExpertsUnderGlobalNames) {
  ModelConfig c = layer_config("mohge");
  c.expert_parallel = {std::nullopt, 4, 2};  // all_size: rank 2 owns g0i1, g3i1 = experts 1, 7
  Mailbox box(4);
  ThreadCollective coll(box, 2);
  ParamTable p(cpu_backend());
  MoeFfn layer(c, p, "model.layers.3.mlp", &coll);
  EXPECT_EQ(layer.experts().ids(), (std::vector<int>{1, 7}));
  for (int e = 0; e < 8; e++)
    EXPECT_EQ(p.find("model.layers.3.mlp.experts." + std::to_string(e) + ".down_proj.weight") >= 0, e == 1 || e == 7)
        << "expert " << e;
  EXPECT_GE(p.find("model.layers.3.mlp.gate.weight"), 0);
  EXPECT_GE(p.find("model.layers.3.mlp.shared_experts.up_proj.weight"), 0);
}

TEST(MoeLayerOverRanks, ErrorsNameTheProblem) {
  ModelConfig c = layer_config("hmoe_top_k");
  ParamTable p1(cpu_backend()), p2(cpu_backend()), p3(cpu_backend());
  c.expert_parallel = {std::nullopt, 2, 0};
  EXPECT_ERROR(MoeFfn(c, p1, "mlp"), "expert parallel over 2 ranks needs a communicator");
  Mailbox box(4);
  ThreadCollective coll(box, 1);
  EXPECT_ERROR(MoeFfn(c, p2, "mlp", &coll), "rank 0 of 2 given, but the communicator is rank 1 of 4");
  c.expert_parallel = {PlacementPolicy::all_size, 3, 0};
  EXPECT_ERROR(MoeFfn(c, p3, "mlp", &coll), "do not split evenly over D = 3");
}

}  // namespace
}  // namespace mohge
