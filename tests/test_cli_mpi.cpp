// `mpirun -np P mohge train` (issue 9), through the real launcher: only rank 0 prints and writes,
// a run saved at P = 2 resumes in one process, and the errors of a [parallel] config that does not
// fit the job are one `error:` line. Skipped, visibly, where mohge was built without MPI.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace fs = std::filesystem;
using namespace mohge;

namespace {

const bool kSingleThreaded = test::single_threaded_unless_set();
constexpr auto q = test::shell_quote;

std::vector<std::string> error_lines(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string l;
  while (std::getline(ss, l))
    if (l.rfind("error:", 0) == 0) v.push_back(l);
  return v;
}

// `mpirun -np np mohge <args>` on localhost (more ranks than cores; allowed as root)
test::CommandResult mpirun(int np, const std::string& args) {
  return test::run_command(fmt::format("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun "
                                       "--oversubscribe -np {} {} {}",
                                       np, q(MOHGE_BINARY), args));
}

const test::CorpusFixture& data() {
  static const test::CorpusFixture d = [] {
    std::string text;  // words of two syllables: enough distinct pieces for a 300-token vocabulary
    const char* syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "go", "hi", "ja", "pe"};
    uint64_t x = 7;
    for (int i = 0; i < 6000; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      text += std::string(syl[(x >> 40) % 15]) + syl[(x >> 20) % 15] + (i % 40 == 39 ? "\n\n" : " ");
    }
    return test::make_corpus_fixture(text, {.val_fraction = 0.1, .tag = "cli_mpi"});
  }();
  return d;
}

std::string sets(const std::string& out) {
  const test::CorpusFixture& d = data();
  return " --set model.vocab_size=320 --set model.hidden_size=16 --set model.num_layers=2 --set model.num_heads=2"
         " --set model.num_kv_heads=1 --set model.intermediate_size=32 --set model.max_seq_len=16"
         " --set model.ffn_kind=mohge --set moe.num_expert_groups=2 --set moe.experts_per_group=2"
         " --set 'moe.group_widths=[8, 16]' --set moe.topk_group=1 --set moe.num_experts_per_tok=2"
         " --set train.routing_devices=2 --set train.batch_size=4 --set train.seq_len=16 --set train.eval_every=0"
         " --set train.eval_batches=2 --set train.log_every=1 --set run.threads=1 --set data.dir=" +
         q(d.data_dir) + " --set data.tokenizer=" + q(d.tokenizer) + " --set train.out_dir=" + q(out);
}

bool built_with_mpi() {
#ifdef MOHGE_MPI_BUILT
  return true;
#else
  return false;
#endif
}

// DP 1 × EP 2, then the same run resumed in one process: rank 0 alone prints (one progress line per
// step, one summary) and writes; the checkpoint holds every expert.
TEST(CliMpi, TrainsOverTwoRanksAndResumesInOneProcess) {
  if (!built_with_mpi()) GTEST_SKIP() << "mohge built without MPI";
  test::TmpDir d;
  const std::string run = d / "run";
  auto r = mpirun(2, "train --stop-after 2 --set train.steps=4 --set parallel.expert_parallel=2" + sets(run));
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  size_t summaries = 0, steps = 0;
  for (size_t at = 0; (at = r.out.find("step ", at)) != std::string::npos; at++) steps += r.out.compare(at, 10, "step      ") == 0;
  for (size_t at = 0; (at = r.out.find("trained 2 steps", at)) != std::string::npos; at++) summaries++;
  EXPECT_EQ(summaries, 1u) << r.out;
  EXPECT_EQ(steps, 2u) << r.out;
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step_00000002/model.safetensors"));
  r = test::run_mohge("train -q --resume --set train.steps=4" + sets(run), 120);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("trained 4 steps"), std::string::npos) << r.out;
}

// Under a launcher (which sets OMPI_COMM_WORLD_SIZE) the binary loads MPI from its module
// (core/parallel_job.h): a module that does not load is one `error:` line naming its path and why.
TEST(CliMpi, AMissingMpiModuleIsOneErrorLine) {
  if (!built_with_mpi()) GTEST_SKIP() << "mohge built without MPI";
  auto r = test::run_mohge("train", 60, "OMPI_COMM_WORLD_SIZE=1 MOHGE_MPI_MODULE=/nonexistent/libmohge_mpi.so");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.err, "error: cannot load the MPI module /nonexistent/libmohge_mpi.so: cannot open shared object file: "
                   "No such file or directory (set MOHGE_MPI_MODULE to its path)\n");
  const std::string other = std::string(MOHGE_BINARY_DIR) + "/libmohge_http.so";  // a module, but not MPI's
  r = test::run_mohge("train", 60, "OMPI_COMM_WORLD_SIZE=1 MOHGE_MPI_MODULE=" + q(other));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.err, "error: cannot load the MPI module " + other +
                       ": undefined symbol: mohge_mpi_job_new (set MOHGE_MPI_MODULE to its path)\n");
}

TEST(CliMpi, RanksNotMatchingTheConfigAreOneErrorLine) {
  if (!built_with_mpi()) GTEST_SKIP() << "mohge built without MPI";
  test::TmpDir d;
  auto r = mpirun(2, "train --set parallel.data_parallel=2 --set parallel.expert_parallel=2" + sets(d / "run"));
  EXPECT_NE(r.rc, 0);
  auto e = error_lines(r.err);
  ASSERT_EQ(e.size(), 1u) << r.err;
  EXPECT_NE(e[0].find("2 × 2 = 4 ranks, but the job has 2"), std::string::npos) << e[0];
  r = test::run_mohge("train --set parallel.data_parallel=2" + sets(d / "run"));
  e = error_lines(r.err);
  ASSERT_EQ(e.size(), 1u) << r.err;
  EXPECT_NE(e[0].find("start the run with `mpirun -np 2"), std::string::npos) << e[0];
}

// A rank stopped (SIGSTOP: hung) or killed mid-run ends the job: with the stopped rank, the other
// one's watchdog gives one `error:` line naming its rank and the call after parallel.timeout_s; a
// killed rank is named at once by the other (its process is gone; long before the timeout, 60 s
// here), and mpirun ends the job. Never a hang.
TEST(CliMpi, AStoppedOrKilledRankEndsTheJob) {
  if (!built_with_mpi()) GTEST_SKIP() << "mohge built without MPI";
  for (const char* sig : {"STOP", "KILL"}) {
    test::TmpDir d;
    const std::string job =
        fmt::format("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 {} train -q "
                    "--set train.steps=1000000 --set parallel.data_parallel=2 --set parallel.timeout_s={} {}",
                    q(MOHGE_BINARY), std::string(sig) == "STOP" ? 2 : 60, sets(d / "run"));
    // the ranks are mpirun's children; the last started one gets the signal once training runs (the
    // first step is logged; at most 20 s, then regardless)
    const std::string script =
        fmt::format("{} & M=$!; for i in $(seq 100); do [ -s {} ] && break; sleep 0.2; done; sleep 1; "
                    "kill -{} $(pgrep -P $M | tail -n 1); wait $M",
                    job, q(d / "run/log.jsonl"), sig);
    auto r = test::run_command("timeout 60 bash -c " + q(script));
    SCOPED_TRACE(sig);
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.rc, 124) << "the job hung";
    EXPECT_LT(r.seconds, 30.0);
    auto e = error_lines(r.err);
    if (std::string(sig) == "STOP") {
      ASSERT_EQ(e.size(), 1u) << r.err;
      EXPECT_NE(e[0].find("waited more than 2 s (parallel.timeout_s)"), std::string::npos) << e[0];
      EXPECT_NE(e[0].find("rank 0 of 2: MPI_"), std::string::npos) << e[0];
    } else {
      ASSERT_EQ(e.size(), 1u) << r.err;
      EXPECT_NE(e[0].find("of 2: rank "), std::string::npos) << e[0];
      EXPECT_NE(e[0].find(" ended (killed or crashed)"), std::string::npos) << e[0];
    }
  }
}

}  // namespace
