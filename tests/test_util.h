// defines: mohge::test — helpers shared by the test programs: TmpDir (a fresh directory per test or
// per tag, removed afterwards), EXPECT_ERROR (a statement must throw mohge::Error naming something),
// single_threaded_unless_set (OpenMP on one thread unless OMP_NUM_THREADS says otherwise),
// shell_quote / run_command / run_mohge (a shell command or the `mohge` binary, output captured),
// CorpusFixture / make_corpus_fixture (a synthetic corpus -> a small SentencePiece tokenizer ->
// prepared token shards) and tiny_model_config (a small dense or mohge model over a 320-token vocab).
// Header-only: each test program is one translation unit.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <type_traits>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fileio.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "model/model_config.h"

// `stmt` must throw mohge::Error whose message contains `substr`.
#define EXPECT_ERROR(stmt, substr)                                                    \
  do {                                                                                \
    try {                                                                             \
      (void)(stmt);                                                                   \
      ADD_FAILURE() << "expected mohge::Error (\"" << (substr) << "\") from: " #stmt; \
    } catch (const mohge::Error& e) {                                                 \
      EXPECT_NE(std::string(e.what()).find(substr), std::string::npos)               \
          << "message: " << e.what() << "\nexpected to contain: " << (substr);        \
    } catch (const std::exception& e) {                                               \
      ADD_FAILURE() << "wrong exception type from " #stmt ": " << e.what();           \
    }                                                                                 \
  } while (0)

namespace mohge::test {

// The build machine is small and shared: OpenMP's spinning barriers crawl when several test
// processes compete for 2 cores, so test programs that run threaded code call this once (at static
// initialization) to run single-threaded, unless OMP_NUM_THREADS is set.
inline bool single_threaded_unless_set() {
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
  return true;
}

// A fresh directory <tmp>/mohge_test_<pid>_<name>_<n>, removed by the destructor. <name> is `tag`,
// or the current test's suite and name (outside a test: "suite").
class TmpDir {
 public:
  explicit TmpDir(const std::string& tag = "") {
    std::string name = tag;
    if (name.empty()) {
      const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
      name = info ? std::string(info->test_suite_name()) + "." + info->name() : "suite";
    }
    std::replace(name.begin(), name.end(), '/', '_');
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("mohge_test_{}_{}_{}", ::getpid(), name, counter_++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TmpDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TmpDir(const TmpDir&) = delete;
  TmpDir& operator=(const TmpDir&) = delete;

  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  static inline int counter_ = 0;
};

// Single-quoted for the shell.
inline std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

struct CommandResult {
  int rc = -1;          // exit status; 128 + signal when killed
  std::string out, err;  // err is empty with merge_stderr (it went into out)
  double seconds = 0;    // wall time
};

// Runs `cmd` with the shell, stdin from /dev/null, stdout and stderr captured through files in a
// per-process temporary directory; with merge_stderr, stderr goes into `out` as well.
inline CommandResult run_command(const std::string& cmd, bool merge_stderr = false) {
  static TmpDir io("io");
  static int n = 0;
  const std::string o = io / fmt::format("out{}", n), e = io / fmt::format("err{}", n);
  n++;
  const std::string redirect =
      " >" + shell_quote(o) + (merge_stderr ? std::string(" 2>&1") : " 2>" + shell_quote(e)) + " </dev/null";
  const auto t0 = std::chrono::steady_clock::now();
  const int st = std::system((cmd + redirect).c_str());
  CommandResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = std::filesystem::exists(o) ? read_file_text(o) : "";
  r.err = std::filesystem::exists(e) ? read_file_text(e) : "";
  return r;
}

#ifdef MOHGE_BINARY
// Runs `[env] timeout <timeout_s> mohge <args>` (args already shell-quoted), output captured.
inline CommandResult run_mohge(const std::string& args, int timeout_s = 60, const std::string& env = "") {
  return run_command((env.empty() ? "" : env + " ") + fmt::format("timeout {} ", timeout_s) +
                     shell_quote(MOHGE_BINARY) + " " + args);
}
#endif

// A corpus fixture (build it once per process, in a function-local static): <dir>/corpus.txt holds
// the text, <dir>/tok.model is a SentencePiece tokenizer trained on it with one thread (vocab 300 by
// default: with byte fallback SentencePiece needs >= 261), and, when val_fraction >= 0,
// <dir>/data/{train,val}.bin are its prepared shards. A test's own fixture can derive from it (more
// files in `dir`) and be built with make_corpus_fixture<ItsType>.
struct CorpusFixture {
  std::shared_ptr<TmpDir> dir;  // removed at exit
  std::string corpus, tokenizer;
  std::string data_dir;  // empty without shards
  int vocab = 0;         // the tokenizer's
};

struct CorpusOptions {
  int vocab_size = 300;
  double val_fraction = -1;  // < 0: no shards
  uint64_t split_seed = 1337;
  std::string tag = "corpus";  // names the directory
};

template <class Fixture = CorpusFixture>
Fixture make_corpus_fixture(const std::string& text, const CorpusOptions& o = {}) {
  static_assert(std::is_base_of_v<CorpusFixture, Fixture>);
  Fixture f;
  f.dir = std::make_shared<TmpDir>(o.tag);
  f.corpus = *f.dir / "corpus.txt";
  std::ofstream(f.corpus) << text;
  TokenizerTrainOptions opt;
  opt.vocab_size = o.vocab_size;
  opt.num_threads = 1;
  tokenizer_train({f.corpus}, *f.dir / "tok", opt);
  f.tokenizer = *f.dir / "tok.model";
  const Tokenizer tok = Tokenizer::load(f.tokenizer);
  f.vocab = tok.vocab_size();
  if (o.val_fraction >= 0) {
    f.data_dir = *f.dir / "data";
    data_prepare({f.corpus}, tok, f.data_dir, o.val_fraction, o.split_seed, false);
  }
  return f;
}

// A tiny model: vocab 320 (a 300-piece tokenizer fits), d 16, 2 layers, 4 heads / 2 kv heads, FFN 32;
// "mohge": a dense first layer, then 2 groups of 2 experts (widths 8, 8, 16, 16), one group and 2
// experts per token, a shared expert of width 8, group and intra-group loss coefficients aux_coef.
inline ModelConfig tiny_model_config(const std::string& kind, int max_seq_len, double aux_coef = 0.0) {
  ModelConfig c;
  c.vocab_size = 320;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.intermediate_size = 32;
  c.max_seq_len = max_seq_len;
  c.ffn_kind = ffn_kind_from_string(kind);
  if (kind == "mohge") {
    MoeConfig& m = c.moe;
    m.kind = MoeKind::mohge;
    m.router = RouterKind::two_level;
    m.num_expert_groups = 2, m.experts_per_group = 2, m.num_experts = 4;
    m.expert_widths = {8, 8, 16, 16};
    m.topk_group = 1, m.num_experts_per_tok = 2, m.max_experts_per_tok = 2;
    m.shared_expert_width = 8;
    m.group_coef = aux_coef, m.intra_coef = aux_coef;
    c.first_dense_layers = 1;
  }
  c.validate();
  return c;
}

}  // namespace mohge::test
