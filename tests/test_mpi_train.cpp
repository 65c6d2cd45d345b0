// Training over MPI (issue 9): `train_run` on every rank of a data × expert parallel job against one
// process training on the same global batch. Runs under mpirun -np 2 and 4 (tests/CMakeLists.txt),
// linked into test_mpi (whose main starts MPI). Every rank runs every test.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "core/signals.h"
#include "data/dataloader.h"
#include "dist/mpi_job.h"
#include "eval/eval_loss.h"
#include "model/model_io.h"
#include "dist/mpi_collective.h"
#include "train/train_config.h"
#include "train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace mohge {
namespace {

const bool kThreads = test::single_threaded_unless_set();

std::string corpus_text() {
  static const char* words[] = {"the", "red", "cat", "sees", "a", "small", "dog", "river", "tree", "finds", "old", "bird"};
  std::string out;
  uint64_t x = 12345;
  for (int d = 0; d < 300; d++) {
    for (int w = 0; w < 20; w++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      out += std::string(words[(x >> 33) % 12]) + (w % 7 == 6 ? ". " : " ");
    }
    out += "\n\n";
  }
  return out;
}

// rank 0's string on every rank
std::string shared_string(Collective& world, std::string s) {
  int64_t n = (int64_t)s.size();
  world.broadcast(&n, sizeof n, 0);
  s.resize(n);
  world.broadcast(s.data(), n, 0);
  return s;
}

// The data (rank 0 builds it, every rank reads it) and a scratch directory of rank 0's.
struct Shared {
  test::CorpusFixture data;
  std::shared_ptr<test::TmpDir> scratch;
  std::string data_dir, tokenizer, root;
};

const Shared& shared(Collective& world) {
  static Shared s = [&] {
    Shared r;
    if (world.rank() == 0) {
      r.data = test::make_corpus_fixture(corpus_text(), {.val_fraction = 0.1, .tag = "mpi_train"});
      r.scratch = std::make_shared<test::TmpDir>("mpi_train_runs");
      r.data_dir = r.data.data_dir, r.tokenizer = r.data.tokenizer, r.root = r.scratch->str();
    }
    r.data_dir = shared_string(world, r.data_dir), r.tokenizer = shared_string(world, r.tokenizer);
    r.root = shared_string(world, r.root);
    return r;
  }();
  return s;
}

// A tiny model; mohge: 4 groups × 2 experts of widths 8, 12, 16, 20 (all_size balances 2 and 4
// ranks), global-batch balance statistics and every aux loss on.
RunConfig tiny(const Shared& sh, const std::string& out, const std::string& kind, int dp, int ep,
               std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {
      "model.vocab_size=320", "model.hidden_size=16", "model.num_layers=2", "model.num_heads=4",
      "model.num_kv_heads=2", "model.intermediate_size=32", "model.max_seq_len=16",
      "model.ffn_kind=\"" + kind + "\"", "data.dir=\"" + sh.data_dir + "\"", "data.tokenizer=\"" + sh.tokenizer + "\"",
      "train.batch_size=8", "train.seq_len=16", "train.grad_accum=2", "train.steps=4", "train.lr=3e-3",
      "train.min_lr=3e-4", "train.warmup_steps=1", "train.eval_every=0", "train.eval_batches=2",
      "train.checkpoint_every=0", "train.out_dir=\"" + out + "\"", "run.threads=1", "train.seed=7",
      "parallel.data_parallel=" + std::to_string(dp), "parallel.expert_parallel=" + std::to_string(ep)};
  if (kind == "mohge")
    for (const char* s : {"moe.num_expert_groups=4", "moe.experts_per_group=2", "moe.group_widths=[8, 12, 16, 20]",
                          "moe.topk_group=2", "moe.num_experts_per_tok=3", "moe.shared_expert_width=8",
                          "moe.group_coef=0.05", "moe.intra_group_coef=0.05",
                          "moe.group_delta=8.0", "moe.global_batch_stats=true", "train.routing_devices=2"})
      sets.push_back(s);
  for (auto& e : extra) sets.push_back(e);
  return run_config_read("", sets);
}

TrainOptions options(const ParallelGroups* groups, int stop_after = 0, bool resume = false) {
  TrainOptions o;
  o.progress = false;
  o.stop_after = stop_after;
  o.resume = resume;
  o.parallel = groups;
  o.validate = [](Model& m, DataLoader& l, uint64_t n) {
    EvalResult r = evaluate_loss(m, l, n);
    return ValLoss{r.loss, r.tokens};
  };
  return o;
}

std::vector<nlohmann::json> step_records(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::ifstream in(out + "/log.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (auto j = nlohmann::json::parse(line); j.contains("loss")) v.push_back(j);
  return v;
}

// max |a − b| over every tensor of two checkpoints' `file` (same names required)
double max_weight_difference(const std::string& a, const std::string& b, const std::string& file = "model.safetensors") {
  auto fa = SafetensorsFile::load(a + "/" + file), fb = SafetensorsFile::load(b + "/" + file);
  EXPECT_EQ(fa.tensors().size(), fb.tensors().size());
  double worst = 0;
  for (auto& t : fa.tensors()) {
    const float *x = fa.f32(t.name, t.shape), *y = fb.f32(t.name, t.shape);
    int64_t n = 1;
    for (auto s : t.shape) n *= s;
    for (int64_t i = 0; i < n; i++) worst = std::max(worst, (double)std::abs(x[i] - y[i]));
  }
  return worst;
}

struct Case {
  const char* kind;
  int ep;  // DP = P / EP
  const char* placement;
};

class TrainOverRanks : public ::testing::TestWithParam<Case> {};

// The P-rank run's losses, gradient norms and final weights equal one process's on the same global
// batch (float tolerance; the largest differences are printed).
TEST_P(TrainOverRanks, EqualsOneProcess) {
  const Case& c = GetParam();
  MpiJob job(interrupt_signal);
  const int P = job.size();
  if (P % c.ep != 0) GTEST_SKIP() << "EP " << c.ep << " does not divide " << P << " ranks";
  job.split(P / c.ep, c.ep, 120);
  Collective& world = *job.groups().world;
  const Shared& sh = shared(world);
  const std::string tag = fmt::format("{}_ep{}_{}_P{}", c.kind, c.ep, c.placement, P);
  const std::string one = sh.root + "/one_" + tag, many = sh.root + "/many_" + tag;
  if (job.rank() == 0) train_run(tiny(sh, one, c.kind, 1, 1), options(nullptr));
  const std::string placement = fmt::format("parallel.placement=\"{}\"", c.placement);
  TrainSummary s = train_run(tiny(sh, many, c.kind, P / c.ep, c.ep, {placement}), options(&job.groups()));
  if (job.rank() != 0) return;
  const auto a = step_records(one), b = step_records(many);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  double dloss = 0, dnorm = 0;
  for (size_t i = 0; i < a.size(); i++) {
    dloss = std::max(dloss, std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()));
    dnorm = std::max(dnorm, std::abs(a[i]["grad_norm"].get<double>() - b[i]["grad_norm"].get<double>()));
    EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-5) << "step " << i + 1;
    EXPECT_NEAR(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>(), 1e-4 * a[i]["grad_norm"].get<double>())
        << "step " << i + 1;
    if (a[i].contains("aux")) {
      for (auto& [k, v] : a[i]["aux"].items())
        EXPECT_NEAR(v.get<double>(), b[i]["aux"][k].get<double>(), 1e-5) << k << " at step " << i + 1;
    }
  }
  // every record measures every rank: its experts' load, the exchange's bytes (none without EP)
  for (auto& rec : b) {
    const auto& ranks = rec.at("ranks");
    ASSERT_EQ(ranks.at("expert_load").size(), (size_t)P);
    double load = 0;
    for (int r = 0; r < P; r++) {
      load += ranks["expert_load"][r].get<double>();
      EXPECT_EQ(ranks["exchange_bytes_sent"][r].get<double>() > 0, c.ep > 1) << "rank " << r;
    }
    EXPECT_EQ(load > 0, std::string(c.kind) != "dense");
    EXPECT_GE(ranks.at("expert_load_max_over_mean").get<double>(), 1.0);
  }
  const double dw = max_weight_difference(checkpoint_resolve(one), s.checkpoint);
  EXPECT_LT(dw, 1e-4);
  std::printf("[ max diff  ] %s over %d ranks (DP %d × EP %d), 4 steps: loss %.2e, grad norm %.2e, weights %.2e\n",
              c.kind, P, P / c.ep, c.ep, dloss, dnorm, dw);
}

INSTANTIATE_TEST_SUITE_P(Parallel, TrainOverRanks,
                         ::testing::Values(Case{"dense", 1, "auto"}, Case{"mohge", 1, "auto"},
                                           Case{"mohge", 2, "all_size"}, Case{"mohge", 2, "contiguous"},
                                           Case{"mohge", 4, "all_size"}, Case{"mohge", 4, "pairing"}),
                         [](const auto& info) {
                           return std::string(info.param.kind) + "_ep" + std::to_string(info.param.ep) + "_" +
                                  info.param.placement;
                         });

// A run saved at P ranks (DP 1 × EP P) resumes in one process and, from P = 4, on 2 ranks (EP 2)
// with the losses the uninterrupted one-process run has: the checkpoint does not depend on P.
TEST(TrainOverRanks, CheckpointResumesAtAnotherP) {
  MpiJob job(interrupt_signal);
  const int P = job.size();
  job.split(1, P, 120);
  Collective& world = *job.groups().world;
  const Shared& sh = shared(world);
  const std::string one = sh.root + fmt::format("/resume_one_P{}", P), saved = sh.root + fmt::format("/resume_P{}", P);
  if (job.rank() == 0) train_run(tiny(sh, one, "mohge", 1, 1), options(nullptr));
  train_run(tiny(sh, saved, "mohge", 1, P), options(&job.groups(), /*stop_after=*/2));
  const auto reference = job.rank() == 0 ? step_records(one) : std::vector<nlohmann::json>{};
  auto expect_resumed_like_reference = [&](const std::string& dir, int at_p) {
    const auto got = step_records(dir);
    ASSERT_EQ(got.size(), 4u) << "saved at P = " << P << ", resumed at P = " << at_p;
    for (size_t i = 0; i < 4; i++)
      EXPECT_NEAR(got[i]["loss"].get<double>(), reference[i]["loss"].get<double>(), 1e-5)
          << "step " << i + 1 << ", saved at P = " << P << ", resumed at P = " << at_p;
  };
  // resumed at P = 1 (a copy of the run directory, so the P = 2 resume below starts from step 2 too)
  if (job.rank() == 0) {
    fs::copy(saved, saved + "_at1", fs::copy_options::recursive);
    train_run(tiny(sh, saved + "_at1", "mohge", 1, 1), options(nullptr, 0, /*resume=*/true));
    expect_resumed_like_reference(saved + "_at1", 1);
  }
  if (P < 4) return;
  // resumed at P = 2: ranks 0 and 1 form the job, 2 and 3 wait
  MPI_Comm two = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, job.rank() < 2 ? 0 : MPI_UNDEFINED, job.rank(), &two);
  if (two != MPI_COMM_NULL) {
    MpiCollective w(two), ep(two), edp(MPI_COMM_SELF);
    const ParallelGroups g{&w, &ep, &edp};
    train_run(tiny(sh, saved, "mohge", 1, 2), options(&g, 0, /*resume=*/true));
    MPI_Comm_free(&two);
    if (job.rank() == 0) expect_resumed_like_reference(saved, 2);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// Validation split over the ranks (each scores its rows of every global batch, the sums all-reduced)
// gives one process's val_loss: over the whole validation shard, whose last global batch is partial
// (ranks past its last window run one uncounted forward, so the expert-parallel exchange is entered
// by all), for dense over DP = P and mohge over EP = P.
TEST(ValidationOverRanks, EqualsOneProcess) {
  for (auto [kind, ep] : {std::pair<const char*, int>{"dense", 1}, {"mohge", 0}}) {
    MpiJob job(interrupt_signal);
    const int P = job.size();
    if (ep == 0) ep = P;
    job.split(P / ep, ep, 120);
    const Shared& sh = shared(*job.groups().world);
    const std::string tag = fmt::format("{}_ep{}_P{}", kind, ep, P);
    const std::string one = sh.root + "/val_one_" + tag, many = sh.root + "/val_many_" + tag;
    // the whole shard, in windows of 12 tokens: 138 or 139, the last global batch of 8 partial
    const std::vector<std::string> eval = {"train.eval_every=2", "train.eval_batches=1000", "train.seq_len=12"};
    if (job.rank() == 0) train_run(tiny(sh, one, kind, 1, 1, eval), options(nullptr));
    train_run(tiny(sh, many, kind, P / ep, ep, eval), options(&job.groups()));
    if (job.rank() != 0) continue;
    auto val_records = [](const std::string& out) {
      std::vector<nlohmann::json> v;
      std::ifstream in(out + "/log.jsonl");
      std::string line;
      while (std::getline(in, line))
        if (auto j = nlohmann::json::parse(line); j.contains("val_loss")) v.push_back(j);
      return v;
    };
    const auto a = val_records(one), b = val_records(many);
    ASSERT_EQ(a.size(), 2u);
    ASSERT_EQ(b.size(), 2u);
    const uint64_t windows = DataLoader(sh.data_dir + "/val.bin", 8, 12, 0).eval_windows();
    EXPECT_NE(windows % 8, 0u) << "the validation shard should end in a partial global batch";
    double worst = 0;
    for (size_t i = 0; i < 2; i++) {
      EXPECT_EQ(a[i]["val_tokens"], b[i]["val_tokens"]);
      worst = std::max(worst, std::abs(a[i]["val_loss"].get<double>() - b[i]["val_loss"].get<double>()));
      EXPECT_NEAR(a[i]["val_loss"].get<double>(), b[i]["val_loss"].get<double>(), 1e-5) << "evaluation " << i;
    }
    std::printf("[ max diff  ] validation of %s over %d ranks (DP %d × EP %d), %llu windows (last batch %llu): val_loss %.2e\n",
                kind, P, P / ep, ep, (unsigned long long)windows, (unsigned long long)(windows % 8), worst);
  }
}

// ZeRO-1 (parallel.zero1): the same job with the AdamW moments sharded has the losses, gradient
// norms, weights and (gathered) moments of the job without, and each rank keeps 1/DP of the
// moments (1/P of the replicated tensors'). Dense and mohge over DP = P; mohge over DP P/2 × EP 2.
TEST(ZeroOne, EqualsUnshardedMomentsWithAShareOfTheState) {
  for (auto [kind, ep] : {std::pair<const char*, int>{"dense", 1}, {"mohge", 1}, {"mohge", 2}}) {
    MpiJob job(interrupt_signal);
    const int P = job.size();
    job.split(P / ep, ep, 120);
    const Shared& sh = shared(*job.groups().world);
    const std::string tag = fmt::format("{}_ep{}_P{}", kind, ep, P);
    const std::string off = sh.root + "/zero1_off_" + tag, on = sh.root + "/zero1_on_" + tag;
    train_run(tiny(sh, off, kind, P / ep, ep), options(&job.groups()));
    TrainSummary s = train_run(tiny(sh, on, kind, P / ep, ep, {"parallel.zero1=true"}), options(&job.groups()));
    if (job.rank() != 0) continue;
    SCOPED_TRACE(tag);
    const auto a = step_records(off), b = step_records(on);
    ASSERT_EQ(a.size(), 4u);
    ASSERT_EQ(b.size(), 4u);
    double dloss = 0, dnorm = 0;
    for (size_t i = 0; i < a.size(); i++) {
      dloss = std::max(dloss, std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()));
      dnorm = std::max(dnorm, std::abs(a[i]["grad_norm"].get<double>() - b[i]["grad_norm"].get<double>()) /
                                  a[i]["grad_norm"].get<double>());
    }
    EXPECT_LT(dloss, 1e-5);
    EXPECT_LT(dnorm, 1e-5);
    const std::string ck_off = checkpoint_resolve(off);
    const double dw = max_weight_difference(ck_off, s.checkpoint);
    const double dm = max_weight_difference(ck_off, s.checkpoint, "optimizer.safetensors");
    EXPECT_LT(dw, 1e-5);
    EXPECT_LT(dm, 1e-5);
    // the moments: every rank the same whole set without zero1; with it a shard, together the whole
    const auto& full = a.back()["ranks"]["optimizer_state_bytes"];
    const auto& shard = b.back()["ranks"]["optimizer_state_bytes"];
    double most = 0, whole = 0, total = 0;
    for (int r = 0; r < P; r++) {
      most = std::max(most, shard[r].get<double>()), whole = std::max(whole, full[r].get<double>());
      total += shard[r].get<double>();
    }
    const int dp = P / ep;
    EXPECT_LE(most, whole / dp + 8.0 * 64);  // a block is at most one float larger than 1/DP, per run
    if (ep == 1) {
      EXPECT_EQ(total, whole) << "the shards do not cover the moments exactly once";
    }
    std::printf("[ zero1     ] %s over %d ranks (DP %d × EP %d), 4 steps: max diff loss %.2e, grad norm (rel) %.2e, "
                "weights %.2e, moments %.2e; optimizer state per rank %.0f of %.0f bytes (%.3f)\n",
                kind, P, dp, ep, dloss, dnorm, dw, dm, most, whole, most / whole);
  }
}

// Checkpoints do not depend on zero1: a run saved with it resumes without it and the other way
// round, and a ZeRO-1 checkpoint saved at P resumes in one process and (from P = 4) at P = 2 with
// zero1, all with the losses of the uninterrupted one-process run.
TEST(ZeroOne, CheckpointsResumeWithAndWithoutAtAnotherP) {
  MpiJob job(interrupt_signal);
  const int P = job.size(), ep = 2, dp = P / 2;
  job.split(dp, ep, 120);
  const ParallelGroups& groups = job.groups();
  const Shared& sh = shared(*groups.world);
  const std::string one = sh.root + fmt::format("/zero1_resume_one_P{}", P);
  if (job.rank() == 0) train_run(tiny(sh, one, "mohge", 1, 1), options(nullptr));
  const auto reference = job.rank() == 0 ? step_records(one) : std::vector<nlohmann::json>{};
  auto expect_like_reference = [&](const std::string& dir, const std::string& how) {
    const auto got = step_records(dir);
    ASSERT_EQ(got.size(), 4u) << how;
    double worst = 0;
    for (size_t i = 0; i < 4; i++) {
      worst = std::max(worst, std::abs(got[i]["loss"].get<double>() - reference[i]["loss"].get<double>()));
      EXPECT_NEAR(got[i]["loss"].get<double>(), reference[i]["loss"].get<double>(), 1e-5) << "step " << i + 1 << ", " << how;
    }
    std::printf("[ zero1     ] %s: max loss diff to one process %.2e\n", how.c_str(), worst);
  };
  const std::string zero1 = "parallel.zero1=true", no_zero1 = "parallel.zero1=false";
  for (bool saved_with : {true, false}) {
    const std::string dir = sh.root + fmt::format("/zero1_saved_{}_P{}", saved_with, P);
    train_run(tiny(sh, dir, "mohge", dp, ep, {saved_with ? zero1 : no_zero1}), options(&groups, /*stop_after=*/2));
    if (job.rank() == 0 && saved_with) fs::copy(dir, dir + "_copy", fs::copy_options::recursive);
    MPI_Barrier(MPI_COMM_WORLD);
    train_run(tiny(sh, dir, "mohge", dp, ep, {saved_with ? no_zero1 : zero1}), options(&groups, 0, /*resume=*/true));
    if (job.rank() == 0)
      expect_like_reference(dir, fmt::format("saved at P = {} with zero1 {}, resumed with it {}", P, saved_with ? "on" : "off",
                                             saved_with ? "off" : "on"));
  }
  const std::string saved = sh.root + fmt::format("/zero1_saved_true_P{}_copy", P);
  if (job.rank() == 0) {
    fs::copy(saved, saved + "_at1", fs::copy_options::recursive);
    train_run(tiny(sh, saved + "_at1", "mohge", 1, 1, {zero1}), options(nullptr, 0, /*resume=*/true));
    expect_like_reference(saved + "_at1", fmt::format("saved at P = {} with zero1, resumed in one process", P));
  }
  if (P < 4) return;
  // saved at DP 2 × EP 2, resumed with zero1 at DP 2 × EP 1: ranks 0 and 1 form the job
  MPI_Comm two = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, job.rank() < 2 ? 0 : MPI_UNDEFINED, job.rank(), &two);
  if (two != MPI_COMM_NULL) {
    MpiCollective w(two), ex(MPI_COMM_SELF), edp(two);
    const ParallelGroups g2{&w, &ex, &edp};
    train_run(tiny(sh, saved, "mohge", 2, 1, {zero1}), options(&g2, 0, /*resume=*/true));
    MPI_Comm_free(&two);
    if (job.rank() == 0) expect_like_reference(saved, "saved at P = 4 (DP 2 × EP 2) with zero1, resumed at P = 2 (DP 2)");
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace mohge
