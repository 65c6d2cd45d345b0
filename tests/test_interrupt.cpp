// defines: end-to-end tests of how `mohge train` ends (MOHGE_BINARY, real processes): SIGINT,
// SIGTERM and SIGHUP save a checkpoint and exit 130 / 143 / 129, and the resumed run has exactly
// the uninterrupted losses; SIGINTs at random moments never crash it; a second run into the same
// out_dir is refused while the first holds it; resuming a finished run writes nothing; a log that
// cannot be written is an error; in-process, an InterruptScope records the signal it is sent.
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/signals.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mohge;
using test::TmpDir;
constexpr auto q = test::shell_quote;
using Clock = std::chrono::steady_clock;

extern char** environ;

namespace {

// `mohge <args>` (args already shell-quoted) started in the background, stdout and stderr into
// files; its SIGINT / SIGTERM / SIGHUP start at their default actions whatever this process inherited.
class Mohge {
 public:
  Mohge(const std::string& args, const std::string& out_prefix) : out_(out_prefix + ".out"), err_(out_prefix + ".err") {
    const std::string cmd = "exec " + q(MOHGE_BINARY) + " " + args + " >" + q(out_) + " 2>" + q(err_) + " </dev/null";
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t dfl;
    sigemptyset(&dfl);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&dfl, s);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    EXPECT_EQ(posix_spawn(&pid_, "/bin/sh", nullptr, &attr, const_cast<char**>(argv), environ), 0);
    posix_spawnattr_destroy(&attr);
  }
  ~Mohge() {
    if (pid_ > 0 && rc_ < 0) kill(pid_, SIGKILL), waitpid(pid_, nullptr, 0);
  }
  void signal(int sig) const { kill(pid_, sig); }
  // Exit status as a shell reports it (code, or 128 + signal); -1 and the process killed when it
  // has not ended within `limit_s`.
  int wait(double limit_s = 120) {
    if (pid_ <= 0) return -1;
    const auto end = Clock::now() + std::chrono::duration<double>(limit_s);
    int st = 0;
    while (waitpid(pid_, &st, WNOHANG) == 0) {
      if (Clock::now() > end) {
        ADD_FAILURE() << "mohge did not end within " << limit_s << " s";
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    rc_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return rc_;
  }
  std::string out() const { return fs::exists(out_) ? read_file_text(out_) : ""; }
  std::string err() const { return fs::exists(err_) ? read_file_text(err_) : ""; }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  int rc_ = -1;
};

// The step records of OUT/log.jsonl (not the validation records).
std::vector<nlohmann::json> step_records(const std::string& log) {
  std::vector<nlohmann::json> v;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("loss")) v.push_back(j);
  }
  return v;
}

// Waits until the run has logged `n` steps (it flushes every step); false after 60 s.
bool wait_for_steps(const std::string& log, size_t n) {
  const auto end = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < end) {
    if (step_records(log).size() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

const test::CorpusFixture& corpus() {
  static test::CorpusFixture f = [] {
    static const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house", "river"};
    std::mt19937_64 rng(5);
    std::string s;
    for (int d = 0; d < 200; d++) {
      for (int w = 0, n = 8 + (int)(rng() % 20); w < n; w++) s += std::string(w ? " " : "") + words[rng() % 12];
      s += ".\n\n";
    }
    return test::make_corpus_fixture(s, {.val_fraction = 0.1, .tag = "interrupt"});
  }();
  return f;
}

// `train` flags for a small dense run into `out` that lasts far longer than any test waits
// (100000 steps), one thread so that losses are reproducible bit for bit.
std::string train_args(const std::string& out, int threads = 1) {
  return fmt::format(
      "train -q --set model.vocab_size=320 --set model.hidden_size=32 --set model.num_layers=2"
      " --set model.num_heads=2 --set model.intermediate_size=64 --set model.max_seq_len=32"
      " --set train.batch_size=4 --set train.seq_len=32 --set train.steps=100000 --set train.eval_every=0"
      " --set train.eval_batches=2 --set train.checkpoint_every=0 --set run.threads={} --set data.dir={}"
      " --set data.tokenizer={} --set train.out_dir={}",
      threads, q(corpus().data_dir), q(corpus().tokenizer), q(out));
}

std::string checkpoint_of_step(const std::string& out, int64_t step) {
  return fmt::format("{}/checkpoints/step_{:08d}", out, step);
}

// ------------------------------------------------------------------------------------- signals
class InterruptSignal : public ::testing::TestWithParam<int> {};

TEST_P(InterruptSignal, SavesExitsWithTheSignalStatusAndResumesExactly) {
  const int sig = GetParam();
  TmpDir d;
  const std::string run = d / "run", ref = d / "ref";
  Mohge m(train_args(run), d / "run1");
  ASSERT_TRUE(wait_for_steps(run + "/log.jsonl", 2)) << m.err();
  m.signal(sig);
  EXPECT_EQ(m.wait(), 128 + sig) << m.err();
  const std::vector<nlohmann::json> logged = step_records(run + "/log.jsonl");
  ASSERT_GE(logged.size(), 2u);
  const int64_t k = logged.back()["step"].get<int64_t>();
  EXPECT_TRUE(fs::exists(checkpoint_of_step(run, k) + "/optimizer.safetensors")) << "step " << k;
  EXPECT_NE(m.out().find("interrupted by " + signal_name(sig)), std::string::npos) << m.out();
  EXPECT_EQ(m.out().find("trained"), std::string::npos) << m.out();
  EXPECT_TRUE(m.err().empty()) << m.err();

  test::CommandResult r = test::run_mohge(train_args(run) + " --resume --stop-after 3", 120);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = test::run_mohge(train_args(ref) + fmt::format(" --stop-after {}", k + 3), 120);
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto resumed = step_records(run + "/log.jsonl"), uninterrupted = step_records(ref + "/log.jsonl");
  ASSERT_EQ(resumed.size(), (size_t)k + 3);
  ASSERT_EQ(uninterrupted.size(), (size_t)k + 3);
  for (size_t i = 0; i < resumed.size(); i++) EXPECT_EQ(resumed[i]["loss"], uninterrupted[i]["loss"]) << "step " << i + 1;
}

INSTANTIATE_TEST_SUITE_P(Train, InterruptSignal, ::testing::Values(SIGINT, SIGTERM, SIGHUP),
                         [](const auto& info) { return std::string(sigabbrev_np(info.param)); });

// Ctrl-C used to crash one run in four (a handler ran on a oneDNN thread whose stack pointer was
// on the heap). A SIGINT at a random moment of start-up or training, two threads: every run ends
// with status 130, never an abort or a segfault, and quickly.
TEST(InterruptStress, TwentySigintsAtRandomMomentsNeverCrash) {
  TmpDir d;
  std::mt19937_64 rng(20261130);
  for (int i = 0; i < 20; i++) {
    const std::string run = d / fmt::format("run{}", i);
    Mohge m(train_args(run, 2), d / fmt::format("run{}", i));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 1500));
    m.signal(SIGINT);
    const auto t0 = Clock::now();
    EXPECT_EQ(m.wait(60), 130) << "run " << i << ": " << m.err();
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 30.0) << "run " << i;
    EXPECT_EQ(m.err().find("corrupted"), std::string::npos) << m.err();
  }
}

// ------------------------------------------------------------------------- the run directory
TEST(RunDirectory, ASecondRunIntoTheSameOutDirIsRefusedWhileTheFirstHoldsIt) {
  TmpDir d;
  const std::string run = d / "run";
  Mohge first(train_args(run), d / "first");
  ASSERT_TRUE(wait_for_steps(run + "/log.jsonl", 1)) << first.err();
  for (const char* extra : {"", " --resume"}) {
    test::CommandResult r = test::run_mohge(train_args(run) + extra, 60);
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_EQ(r.err, "error: " + run + " is in use by another training run (it holds " + run +
                         "/.lock): wait for it to end, or set another train.out_dir\n");
  }
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait(), 143) << first.err();
  // the lock ends with its process: the run continues
  test::CommandResult r = test::run_mohge(train_args(run) + " --resume --stop-after 1", 60);
  EXPECT_EQ(r.rc, 0) << r.err;
}

TEST(RunDirectory, ResumingAFinishedRunSaysSoAndWritesNothing) {
  TmpDir d;
  const std::string run = d / "run";
  const std::string args = train_args(run) + " --set train.steps=3";
  ASSERT_EQ(test::run_mohge(args, 120).rc, 0);
  auto listing = [&] {
    std::vector<std::string> v;
    for (auto& e : fs::recursive_directory_iterator(run))
      v.push_back(e.path().string() + (e.is_regular_file() ? fmt::format(" {} {}", e.file_size(),
                                                                         e.last_write_time().time_since_epoch().count())
                                                           : ""));
    std::sort(v.begin(), v.end());
    return v;
  };
  const auto before = listing();
  test::CommandResult r = test::run_mohge(args + " --resume", 120);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "run already complete: step 3 of 3, checkpoint " + checkpoint_of_step(run, 3) + "\n");
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_EQ(listing(), before);
}

// A full disk: the log is /dev/full, where every write fails with ENOSPC.
TEST(RunDirectory, ALogThatCannotBeWrittenIsAnError) {
  TmpDir d;
  const std::string run = d / "run";
  fs::create_directories(run);
  fs::create_symlink("/dev/full", run + "/log.jsonl");
  test::CommandResult r = test::run_mohge(train_args(run) + " --set train.steps=3", 120);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.err, "error: cannot write " + run + "/log.jsonl: No space left on device\n");
  EXPECT_EQ(r.out.find("trained"), std::string::npos) << r.out;
}

// Resuming onto a full disk: reading /dev/full never ends, so the log is read only when it is a
// regular file; the write then fails as in a fresh run (this resume used to hang).
TEST(RunDirectory, ResumingWithALogThatCannotBeWrittenIsAnError) {
  TmpDir d;
  const std::string run = d / "run";
  test::CommandResult r = test::run_mohge(train_args(run) + " --set train.steps=2", 120);
  ASSERT_EQ(r.rc, 0) << r.err;
  fs::remove(run + "/log.jsonl");
  fs::create_symlink("/dev/full", run + "/log.jsonl");
  r = test::run_mohge(train_args(run) + " --set train.steps=3 --resume", 60);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.err, "error: cannot write " + run + "/log.jsonl: No space left on device\n");
}

// A checkpoint write that fails midway (here: a file-size limit between the sizes of
// model.safetensors and optimizer.safetensors, with SIGXFSZ ignored so that write() fails with
// EFBIG, as on a full disk or quota) is one error line; the previous checkpoint stays intact, no
// partial directory is left, and the run resumes from it.
TEST(RunDirectory, ACheckpointThatCannotBeWrittenIsAnErrorAndKeepsTheLastOne) {
  TmpDir d;
  const std::string run = d / "run";
  ASSERT_EQ(test::run_mohge(train_args(run) + " --set train.steps=2", 120).rc, 0);
  const std::string ck2 = checkpoint_of_step(run, 2);
  const auto model_size = fs::file_size(ck2 + "/model.safetensors");
  const auto opt_size = fs::file_size(ck2 + "/optimizer.safetensors");
  ASSERT_LT(model_size + 4096, opt_size);
  const std::string model_bytes = read_file_text(ck2 + "/model.safetensors");
  const std::string opt_bytes = read_file_text(ck2 + "/optimizer.safetensors");
  // dash's ulimit -f counts 512-byte blocks
  const std::string limit = fmt::format("trap '' XFSZ; ulimit -f {}; ", (model_size + opt_size) / 2 / 512);
  test::CommandResult r = test::run_command(limit + "exec " + q(MOHGE_BINARY) + " " + train_args(run) +
                                            " --set train.steps=4 --resume");
  EXPECT_EQ(r.rc, 1) << r.out;
  const std::string tmp = run + "/checkpoints/.tmp_step_00000004";
  EXPECT_EQ(r.err, "error: cannot write " + tmp + "/optimizer.safetensors: File too large\n");
  EXPECT_EQ(r.out.find("trained"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(checkpoint_of_step(run, 4)));
  EXPECT_EQ(read_file_text(ck2 + "/model.safetensors"), model_bytes);
  EXPECT_EQ(read_file_text(ck2 + "/optimizer.safetensors"), opt_bytes);
  r = test::run_mohge(train_args(run) + " --set train.steps=4 --resume", 120);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::exists(checkpoint_of_step(run, 4) + "/optimizer.safetensors"));
}

// ---------------------------------------------------------------------------- signal component
// Inside an InterruptScope the first signal is recorded for polling, and the process goes on.
TEST(Signals, AnInterruptScopeRecordsTheFirstSignal) {
  signals_take_over();
  InterruptScope scope;
  EXPECT_EQ(scope.signal(), 0);
  kill(getpid(), SIGTERM);
  const auto end = Clock::now() + std::chrono::seconds(10);
  while (scope.signal() == 0 && Clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(scope.signal(), SIGTERM);
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
}

}  // namespace
