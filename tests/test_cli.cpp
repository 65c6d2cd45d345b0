// defines: end-to-end tests of the `mohge` binary (MOHGE_BINARY): every bad input — config, checkpoint,
// token shard, token list, corpus, flags — exits non-zero with exactly one `error: ...` line on stderr
// naming the problem, quickly (each run under `timeout 60`); `--help` of every subcommand exits 0; and
// the positive paths of forward (.npy checked against the in-process model), grad, eval, generate,
// init/config, tokenizer train and data prepare.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "data/dataloader.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "eval/eval_loss.h"
#include "model/model.h"
#include "model/model_io.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mohge;

namespace {

const bool kSingleThreaded = test::single_threaded_unless_set();

using test::TmpDir;
using CliResult = test::CommandResult;
constexpr auto q = test::shell_quote;

// Runs `mohge <args>` (args already shell-quoted) with stdout/stderr captured, under `timeout 60`.
CliResult mohge(const std::string& args) { return test::run_mohge(args); }

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string l;
  while (std::getline(ss, l))
    if (!l.empty()) v.push_back(l);
  return v;
}

// The contract for every bad input: non-zero exit (not the timeout's 124), exactly one stderr line
// "error: ..." containing `what`, and a quick exit.
#define EXPECT_CLI_ERROR(args, what)                                                                \
  do {                                                                                              \
    CliResult r_ = mohge(args);                                                                     \
    SCOPED_TRACE(std::string("mohge ") + (args));                                                   \
    EXPECT_NE(r_.rc, 0) << "stdout: " << r_.out;                                                    \
    EXPECT_NE(r_.rc, 124) << "timed out";                                                           \
    auto l_ = lines(r_.err);                                                                        \
    ASSERT_EQ(l_.size(), 1u) << "stderr must be exactly one line, got:\n" << r_.err;                \
    EXPECT_EQ(l_[0].rfind("error: ", 0), 0u) << l_[0];                                              \
    EXPECT_NE(l_[0].find(what), std::string::npos) << l_[0] << "\nexpected to contain: " << (what); \
    EXPECT_LT(r_.seconds, 20.0);                                                                    \
  } while (0)

#define EXPECT_CLI_OK(r)                                                                   \
  do {                                                                                     \
    EXPECT_EQ((r).rc, 0) << "stderr: " << (r).err << "\nstdout: " << (r).out;              \
  } while (0)

// ------------------------------------------------------------------------------- shared fixture
// Built once per process: a tokenizer (vocab 300), a dense and a mohge checkpoint (vocab 320, with the
// tokenizer inside), a valid validation shard, a small corpus.
struct Env : test::CorpusFixture {
  std::string ck, ck_moe, shard;
  int V = 320;
};

std::string make_text(int docs, uint64_t seed) {
  static const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house",
                                "river", "green", "small", "bird", "sings", "every", "morning", "near", "tree"};
  std::mt19937_64 rng(seed);
  std::string s;
  for (int d = 0; d < docs; d++) {
    int n = 8 + (int)(rng() % 20);
    for (int w = 0; w < n; w++) s += std::string(w ? " " : "") + words[rng() % std::size(words)];
    s += ".\n\n";
  }
  return s;
}

// The fixture's models: max_seq_len 32, mohge with aux-loss coefficients 0.01.
ModelConfig cli_model(const std::string& kind) { return test::tiny_model_config(kind, 32, 0.01); }

const Env& env() {
  static Env e = [] {
    Env v = test::make_corpus_fixture<Env>(make_text(200, 1), {.tag = "env"});
    for (auto [kind, path] : {std::pair<std::string, std::string*>{"dense", &v.ck}, {"mohge", &v.ck_moe}}) {
      *path = *v.dir / ("ck_" + kind);
      fs::create_directories(*path);
      Model m(cli_model(kind));
      m.init_weights(kind == "dense" ? 1 : 2);
      model_save(*path, m);
      fs::copy_file(v.tokenizer, *path + "/tokenizer.model");
    }
    v.shard = *v.dir / "val.bin";
    ShardWriter w(v.shard, 300);
    std::mt19937_64 rng(3);
    std::vector<int32_t> t(400);
    for (auto& x : t) x = (int32_t)(rng() % 300);
    w.append(t);
    w.finish();
    return v;
  }();
  return e;
}

// A private copy of a fixture checkpoint, to corrupt.
std::string copy_ck(const TmpDir& d, const std::string& src) {
  std::string dst = d / "ck";
  fs::copy(src, dst, fs::copy_options::recursive);
  return dst;
}

std::vector<char> bytes_of(const std::string& p) { return read_file_bytes(p); }
void write_bytes(const std::string& p, const std::vector<char>& b, size_t n) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(b.data(), (std::streamsize)n);
}

// ----------------------------------------------------------------------------------------- help
// The libraries only some commands need are in modules loaded by those commands (core/module.h):
// the CUDA backend (kernels/cuda/CMakeLists.txt), whose runtime and cuBLAS would cost every CPU run
// ~230 MB of resident memory and most of a second at startup; MPI (libmohge_mpi.so, for `mpirun
// mohge train`) and cpp-httplib with OpenSSL (libmohge_http.so, for `mohge serve`), whose loading
// was most of every command's startup (docs/BENCHMARKS.md "Startup"). ldd lists the binary's
// libraries and theirs.
TEST(CliBinary, DoesNotLinkTheLibrariesOfItsModules) {
  test::CommandResult r = test::run_command("ldd " + test::shell_quote(MOHGE_BINARY));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("libc.so"), std::string::npos) << r.out;
  for (const char* lib : {"libcudart", "libcublas", "libcuda.so", "libmpi", "libopen-pal", "libopen-rte", "libhwloc",
                          "libevent", "libcpp-httplib", "libssl", "libcrypto", "libbrotli", "libdnnl", "libgomp",
                          "libOpenCL"})
    EXPECT_EQ(r.out.find(lib), std::string::npos) << lib << " in\n" << r.out;
}

// The engine's code and state of the mohge namespace (functions, globals, statics: nm types T D B R
// b d) defined in `file`, by mangled name.
std::set<std::string> engine_symbols(const std::string& file) {
  test::CommandResult r = test::run_command("nm --defined-only " + test::shell_quote(file));
  EXPECT_EQ(r.rc, 0) << r.err;
  std::set<std::string> names;
  std::stringstream ss(r.out);
  std::string address, type, name;
  while (ss >> address >> type >> name)
    if (type.size() == 1 && std::strchr("TDBRbd", type[0]) && name.find("5mohge") != std::string::npos)
      names.insert(name);
  return names;
}

// A module holds no copy of anything the binary defines (core/module.h): a second copy of a layer
// (its registries, caches, signal flags) would be state the binary never sees.
TEST(CliBinary, ModulesDefineNothingTheBinaryDefines) {
  const std::set<std::string> binary = engine_symbols(MOHGE_BINARY);
  ASSERT_GT(binary.size(), 100u);
  int modules = 0;
  for (const char* module : {"libmohge_mpi.so", "libmohge_http.so", "libmohge_cuda.so", "libmohge_onednn.so"}) {
    const std::string path = std::string(MOHGE_BINARY_DIR) + "/" + module;
    if (!fs::exists(path)) continue;  // not built here (MPI, CUDA)
    modules++;
    for (const std::string& name : engine_symbols(path))
      EXPECT_EQ(binary.count(name), 0u) << module << " defines " << name << ", which the binary defines too";
  }
  EXPECT_GE(modules, 2);  // the HTTP and oneDNN modules are always built
}

// A module that does not load is one `error:` line naming its path and why, before anything else
// (here: before the checkpoint, which does not exist either).
TEST(CliBinary, AMissingServerModuleIsOneErrorLine) {
  test::CommandResult r =
      test::run_mohge("serve --port 0 --checkpoint /nonexistent/ck", 60, "MOHGE_HTTP_MODULE=/nonexistent/libmohge_http.so");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.err, "error: cannot load the HTTP server module /nonexistent/libmohge_http.so: cannot open shared "
                   "object file: No such file or directory (set MOHGE_HTTP_MODULE to its path)\n");
  EXPECT_EQ(r.out, "");
}

// oneDNN is loaded at the first GEMM (kernels/gemm_library.h): a command that multiplies no matrix
// never loads it, and one whose product cannot load it is one `error:` line naming the path.
TEST(CliBinary, TheGemmModuleLoadsAtTheFirstProductAndAMissingOneIsOneErrorLine) {
  const std::string env = "MOHGE_ONEDNN_MODULE=/nonexistent/libmohge_onednn.so";
  test::CommandResult r = test::run_mohge("config --get model.ffn_kind", 60, env);
  EXPECT_EQ(r.rc, 0) << r.err;
  TmpDir d;
  r = test::run_mohge("init --out " + q(d / "ck") + " --set model.vocab_size=64 --set model.hidden_size=16 "
                      "--set model.num_heads=2 --set model.num_kv_heads=2 --set model.num_layers=1 "
                      "--set model.intermediate_size=16", 60, env);
  EXPECT_EQ(r.rc, 0) << r.err;
  r = test::run_mohge("forward --checkpoint " + q(d / "ck") + " --tokens 1,2,3 --out " + q(d / "l.npy"), 60, env);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.err, "error: cannot load the oneDNN GEMM module /nonexistent/libmohge_onednn.so: cannot open shared "
                   "object file: No such file or directory (set MOHGE_ONEDNN_MODULE to its path)\n");
  EXPECT_FALSE(fs::exists(d / "l.npy"));
}

TEST(CliHelp, EverySubcommandHelpExitsZero) {
  for (const char* sub : {"", "data", "data fetch", "data prepare", "tokenizer", "tokenizer train", "train",
                          "init", "config", "eval", "generate", "forward", "grad"}) {
    CliResult r = mohge(std::string(sub) + " --help");
    EXPECT_EQ(r.rc, 0) << "mohge " << sub << " --help: " << r.err;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << "mohge " << sub << " --help printed:\n" << r.out;
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
  CliResult r = mohge("--help-all");
  EXPECT_EQ(r.rc, 0);
}

TEST(CliFlags, UnknownOrMissingFlagsAreOneLineErrors) {
  EXPECT_CLI_ERROR("", "subcommand");
  EXPECT_CLI_ERROR("forward --tokens 1,2", "--checkpoint");
  EXPECT_CLI_ERROR("eval --checkpoint x --data y --bogus 1", "--bogus");
  EXPECT_CLI_ERROR("eval --checkpoint x --data y --batch-size 0", "batch-size");
  EXPECT_CLI_ERROR("train " + q("/nonexistent/run.toml"), "/nonexistent/run.toml");
}

// ------------------------------------------------------------------------------- config errors
TEST(CliConfig, MalformedToml) {
  TmpDir d;
  std::ofstream(d / "bad.toml") << "[model\nhidden_size = 64\n";
  EXPECT_CLI_ERROR("config " + q(d / "bad.toml"), "malformed TOML");
  EXPECT_CLI_ERROR("train " + q(d / "bad.toml"), "malformed TOML");
  std::ofstream(d / "bad2.toml") << "[model]\nhidden_size = = 3\n";
  EXPECT_CLI_ERROR("config " + q(d / "bad2.toml"), "line 2");
}

TEST(CliConfig, UnknownKeyAndUnknownSection) {
  EXPECT_CLI_ERROR("config --set train.lrr=1", "unknown config key 'train.lrr'");
  EXPECT_CLI_ERROR("train --set train.lrr=1", "unknown config key 'train.lrr'");
  EXPECT_CLI_ERROR("config --set optimizer.lr=1", "unknown config section or key 'optimizer'");
  TmpDir d;
  std::ofstream(d / "c.toml") << "[model]\nhidden_size = 64\n[trainer]\nlr = 1\n";
  EXPECT_CLI_ERROR("config " + q(d / "c.toml"), "'trainer'");
  std::ofstream(d / "c2.toml") << "[model]\nhiden_size = 64\n";
  EXPECT_CLI_ERROR("train " + q(d / "c2.toml"), "unknown config key 'model.hiden_size'");
  EXPECT_CLI_ERROR("config --set lr", "section.key=value");
}

TEST(CliConfig, NonPositiveSizes) {
  EXPECT_CLI_ERROR("config --set model.hidden_size=0", "model.hidden_size = 0 must be in [1, 65536]");
  EXPECT_CLI_ERROR("train --set model.hidden_size=0", "model.hidden_size = 0 must be in [1, 65536]");
  EXPECT_CLI_ERROR("config --set train.batch_size=-1", "train.batch_size = -1 must be in [1, 65536]");
  EXPECT_CLI_ERROR("config --set model.num_layers=-3", "model.num_layers = -3 must be in [1, 1024]");
  EXPECT_CLI_ERROR("config --set model.vocab_size=0", "model.vocab_size = 0 must be in [1, 2097152]");
  EXPECT_CLI_ERROR("config --set train.seq_len=0", "train.seq_len = 0 must be in [1, 1048576]");
  EXPECT_CLI_ERROR("config --set model.hidden_size=1.5", "model.hidden_size must be an integer");
  EXPECT_CLI_ERROR("config --set train.lr=fast", "train.lr must be a number");
}

TEST(CliConfig, UnknownMatmulPrecision) {
  EXPECT_CLI_ERROR("config --set run.matmul_precision=fp16", "run.matmul_precision = \"fp16\" must be one of fp32, bf16");
  EXPECT_CLI_ERROR("train --set run.matmul_precision=16", "run.matmul_precision must be a string (got 16)");
}

// issue 12: every real value finite, every size bounded, one line naming the key
TEST(CliConfig, OutOfRangeValuesNameTheKey) {
  EXPECT_CLI_ERROR("train --set run.threads=200000", "run.threads = 200000 must be in [0, 1024]");
  EXPECT_CLI_ERROR("train --set model.ffn_kind=mohge --set moe.num_expert_groups=100000",
                   "moe.num_expert_groups = 100000 must be in [1, 1024]");
  EXPECT_CLI_ERROR("train --set train.lr=inf", "train.lr = inf must be finite and > 0");
  EXPECT_CLI_ERROR("config --set model.init_std=inf", "model.init_std = inf must be finite and > 0");
  EXPECT_CLI_ERROR("config --set train.eps=nan", "train.eps = nan must be finite and > 0");
  EXPECT_CLI_ERROR("config --set model.hidden_size=1" + std::string(299, '0'), "(300 characters)");
}

TEST(CliConfig, RunSettingsLiveInTheRunSection) {
  EXPECT_CLI_ERROR("config --set model.matmul_precision=bf16", "model.matmul_precision moved to run.matmul_precision");
  EXPECT_CLI_ERROR("train --set train.threads=1", "train.threads moved to run.threads");
  EXPECT_CLI_ERROR("train --set run.backend=tpu", "run.backend = \"tpu\" must be one of cpu, cuda");
  CliResult r = mohge("config --set run.threads=2 --get run.threads");
  EXPECT_CLI_OK(r);
  EXPECT_EQ(lines(r.out), std::vector<std::string>{"2"});
}

// docs/CONFIG.md is the generated reference: regenerate it with `mohge config --keys > docs/CONFIG.md`
TEST(CliConfig, KeysReferenceIsDocsConfigMd) {
  CliResult r = mohge("config --keys");
  EXPECT_CLI_OK(r);
  EXPECT_EQ(r.out, read_file_text(std::string(MOHGE_SOURCE_DIR) + "/docs/CONFIG.md"))
      << "docs/CONFIG.md is stale: run `build/mohge config --keys > docs/CONFIG.md`";
}

TEST(CliConfig, HeadsNotDividingTheWidth) {
  EXPECT_CLI_ERROR("config --set model.hidden_size=100 --set model.num_heads=3", "model.num_heads = 3 does not divide hidden_size = 100");
  EXPECT_CLI_ERROR("config --set model.num_heads=8 --set model.num_kv_heads=3", "num_kv_heads = 3 does not divide num_heads = 8");
}

TEST(CliConfig, TopKLargerThanNumberOfExperts) {
  EXPECT_CLI_ERROR("config --set model.ffn_kind=moe --set moe.num_experts=4 --set moe.num_experts_per_tok=5",
                   "moe.num_experts_per_tok (K) = 5 must be in [1, num_experts = 4]");
  EXPECT_CLI_ERROR("config --set model.ffn_kind=moe --set moe.num_experts=4 --set moe.num_experts_per_tok=0",
                   "num_experts_per_tok");
}

TEST(CliConfig, TopGroupsLargerThanNumberOfGroups) {
  EXPECT_CLI_ERROR("config --set model.ffn_kind=mohge --set moe.num_expert_groups=4 --set moe.experts_per_group=2 "
                   "--set moe.topk_group=5",
                   "moe.topk_group (Kg) = 5 must be in [1, num_expert_groups = 4]");
  EXPECT_CLI_ERROR("config --set model.ffn_kind=mohge --set moe.num_expert_groups=4 --set moe.experts_per_group=2 "
                   "--set moe.topk_group=1 --set moe.num_experts_per_tok=3",
                   "num_experts_per_tok");
}

TEST(CliConfig, TopPOutsideZeroOne) {
  for (const char* p : {"1.5", "0", "-0.2"})
    EXPECT_CLI_ERROR(std::string("config --set model.ffn_kind=hmoe --set moe.router=top_p --set moe.top_p=") + p,
                     std::string("moe.top_p = ") + (std::string(p) == "0" ? "0" : p) + " must be in (0, 1]");
  EXPECT_CLI_ERROR("config --set model.ffn_kind=hmoe --set moe.router=top_q",
                   "moe.router = \"top_q\" must be one of top_k, top_p, two_level");
}

TEST(CliConfig, MohgeWidthsNotMatchingGroups) {
  EXPECT_CLI_ERROR("config --set model.ffn_kind=mohge --set moe.num_expert_groups=4 --set moe.experts_per_group=2 "
                   "--set 'moe.group_widths=[8, 16]'",
                   "moe.group_widths has 2 entries but num_expert_groups = 4");
  EXPECT_CLI_ERROR("config --set model.ffn_kind=mohge --set moe.num_expert_groups=2 --set moe.experts_per_group=2 "
                   "--set 'moe.expert_widths=[8, 16, 8, 16]'",
                   "constant inside a group");
  EXPECT_CLI_ERROR("config --set model.ffn_kind=mohge --set moe.num_expert_groups=2 --set moe.experts_per_group=2 "
                   "--set 'moe.expert_widths=[8, 8, 16]'",
                   "expert_widths");
}

TEST(CliConfig, ValidConfigResolvesAndInitWritesALoadableCheckpoint) {
  CliResult r = mohge("config --set model.ffn_kind=mohge --set moe.num_expert_groups=2 --set moe.experts_per_group=2 "
                      "--get model.ffn_kind");
  EXPECT_CLI_OK(r);
  EXPECT_EQ(lines(r.out), std::vector<std::string>{"mohge"});
  TmpDir d;
  r = mohge("init --out " + q(d / "ck") + " --set model.vocab_size=64 --set model.hidden_size=16 --set model.num_heads=2 "
            "--set model.num_kv_heads=2 --set model.num_layers=1 --set model.intermediate_size=16");
  EXPECT_CLI_OK(r);
  auto m = model_load(d / "ck");
  EXPECT_EQ(m->cfg.vocab_size, 64);
  EXPECT_EQ(m->cfg.hidden_size, 16);
}

// --------------------------------------------------------------------------- checkpoint errors
class CliBadCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override { ck_ = copy_ck(d_, env().ck); }
  // the same bad checkpoint through eval, forward and generate
  void expect_all_fail(const std::string& what) {
    EXPECT_CLI_ERROR("eval --checkpoint " + q(ck_) + " --data " + q(env().shard) + " --seq-len 16", what);
    EXPECT_CLI_ERROR("forward --checkpoint " + q(ck_) + " --tokens 1,2,3 --out " + q(d_ / "o.npy"), what);
    EXPECT_CLI_ERROR("generate --checkpoint " + q(ck_) + " --prompt 'the cat' --max-tokens 3", what);
    EXPECT_FALSE(fs::exists(d_ / "o.npy"));
  }
  TmpDir d_;
  std::string ck_;
};

TEST_F(CliBadCheckpoint, MissingCheckpointDirectory) {
  fs::remove_all(ck_);
  expect_all_fail("does not exist");
}

TEST_F(CliBadCheckpoint, MissingSafetensors) {
  fs::remove(ck_ + "/model.safetensors");
  expect_all_fail("model.safetensors");
}

TEST_F(CliBadCheckpoint, TruncatedSafetensors) {
  auto b = bytes_of(ck_ + "/model.safetensors");
  write_bytes(ck_ + "/model.safetensors", b, b.size() - 100);
  expect_all_fail("model.safetensors");
  write_bytes(ck_ + "/model.safetensors", b, 5);
  expect_all_fail("not a safetensors file");
}

TEST_F(CliBadCheckpoint, CorruptSafetensorsHeader) {
  auto b = bytes_of(ck_ + "/model.safetensors");
  b[9] = '@';
  write_bytes(ck_ + "/model.safetensors", b, b.size());
  expect_all_fail("corrupt safetensors header");
}

TEST_F(CliBadCheckpoint, ConfigDoesNotMatchTensors) {
  auto j = nlohmann::json::parse(read_file_text(ck_ + "/config.json"));
  j["intermediate_size"] = 48;
  write_file_atomic(ck_ + "/config.json", j.dump());
  expect_all_fail("the config implies");
}

TEST_F(CliBadCheckpoint, MalformedConfigJson) {
  write_file_atomic(ck_ + "/config.json", "{\"vocab_size\": ");
  expect_all_fail("malformed JSON");
}

TEST_F(CliBadCheckpoint, ConfigWithHeadsNotDividingWidth) {
  auto j = nlohmann::json::parse(read_file_text(ck_ + "/config.json"));
  j["num_attention_heads"] = 3;
  j["num_key_value_heads"] = 3;
  write_file_atomic(ck_ + "/config.json", j.dump());
  expect_all_fail("does not divide hidden_size");
}

TEST_F(CliBadCheckpoint, NotACheckpointDirectory) {
  fs::remove(ck_ + "/config.json");
  expect_all_fail("neither a checkpoint");
}

TEST_F(CliBadCheckpoint, GenerateWithoutTokenizer) {
  fs::remove(ck_ + "/tokenizer.model");
  EXPECT_CLI_ERROR("generate --checkpoint " + q(ck_) + " --prompt 'the cat' --max-tokens 3", "no tokenizer.model");
}

// generate loads the weights and the tokenizer on two threads (eval/inference_checkpoint.h): a
// broken tokenizer is named; with both broken, the one error line is the model's, as in turn.
TEST_F(CliBadCheckpoint, GenerateWithCorruptTokenizer) {
  write_file_atomic(ck_ + "/tokenizer.model", "not a SentencePiece model");
  const std::string gen = "generate --checkpoint " + q(ck_) + " --prompt 'the cat' --max-tokens 3";
  EXPECT_CLI_ERROR(gen, "tokenizer.model' is not a valid SentencePiece model");
  auto b = bytes_of(ck_ + "/model.safetensors");
  write_bytes(ck_ + "/model.safetensors", b, 5);
  EXPECT_CLI_ERROR(gen, "not a safetensors file");
}

// ---------------------------------------------------------------------------------- shard errors
class CliBadShard : public ::testing::Test {
 protected:
  void expect_eval_fails(const std::string& shard, const std::string& what) {
    EXPECT_CLI_ERROR("eval --checkpoint " + q(env().ck) + " --data " + q(shard) + " --seq-len 16", what);
  }
  TmpDir d_;
};

TEST_F(CliBadShard, MissingShard) { expect_eval_fails(d_ / "nope.bin", "nope.bin"); }

TEST_F(CliBadShard, TruncatedShard) {
  auto b = bytes_of(env().shard);
  write_bytes(d_ / "t.bin", b, b.size() - 3);
  expect_eval_fails(d_ / "t.bin", "is truncated");
  write_bytes(d_ / "h.bin", b, 20);
  expect_eval_fails(d_ / "h.bin", "smaller than the 64-byte header");
}

TEST_F(CliBadShard, CorruptMagicAndHeader) {
  auto b = bytes_of(env().shard);
  auto c = b;
  c[0] = 'X';
  write_bytes(d_ / "m.bin", c, c.size());
  expect_eval_fails(d_ / "m.bin", "bad magic");
  c = b;
  c[12] = 3;  // dtype
  write_bytes(d_ / "d.bin", c, c.size());
  expect_eval_fails(d_ / "d.bin", "invalid token dtype");
  c = b;
  c[40] = 1;  // reserved
  write_bytes(d_ / "r.bin", c, c.size());
  expect_eval_fails(d_ / "r.bin", "reserved");
}

TEST_F(CliBadShard, TokenIdsBeyondTheVocabulary) {
  // a token >= the shard's own vocab (corrupt payload)
  auto b = bytes_of(env().shard);
  b[64 + 2 * 17] = (char)0xff, b[64 + 2 * 17 + 1] = (char)0xff;
  write_bytes(d_ / "c.bin", b, b.size());
  expect_eval_fails(d_ / "c.bin", "token 65535 at index 17 is >= vocab size 300");
  // a valid shard of a larger vocabulary than the model's (320)
  {
    ShardWriter w(d_ / "big.bin", 1000);
    std::vector<int32_t> t(200, 5);
    t[50] = 999;
    w.append(t);
    w.finish();
  }
  expect_eval_fails(d_ / "big.bin", "vocab 1000 exceeds the model's 320");
}

TEST_F(CliBadShard, ShardShorterThanOneWindow) {
  ShardWriter w(d_ / "s.bin", 300);
  w.append(std::vector<int32_t>{1, 2, 3});
  w.finish();
  expect_eval_fails(d_ / "s.bin", "fewer than sequence length + 1");
}

// --------------------------------------------------------------------------------- token lists
TEST(CliForward, TokensOutsideTheVocabularyOrNotIntegers) {
  TmpDir d;
  const std::string base = "forward --checkpoint " + q(env().ck) + " --out " + q(d / "o.npy") + " --tokens ";
  EXPECT_CLI_ERROR(base + "1,99999", "token id 99999");
  EXPECT_CLI_ERROR(base + "1,99999", "outside the vocabulary");
  EXPECT_CLI_ERROR(base + "1,320", "token id 320 at position 1 is outside the vocabulary [0, 320)");
  EXPECT_CLI_ERROR(base + "1,-1", "token id -1");
  EXPECT_CLI_ERROR(base + "1,x", "'x' is not an integer");
  EXPECT_CLI_ERROR(base + "1,2x", "'2x' is not an integer");
  EXPECT_CLI_ERROR(base + "1,,2", "is not an integer");
  EXPECT_CLI_ERROR(base + "''", "no tokens given");
  // 2^32 + 1 must not wrap around to token 1
  EXPECT_CLI_ERROR(base + "1,4294967297", "4294967297");
  EXPECT_CLI_ERROR(base + "1,99999999999999999999999", "is not an integer");
  // longer than max_seq_len (32)
  std::string many = "1";
  for (int i = 0; i < 40; i++) many += ",2";
  EXPECT_CLI_ERROR(base + many, "exceeds model max_seq_len");
  EXPECT_FALSE(fs::exists(d / "o.npy"));
}

// ---------------------------------------------------------------------------------- data errors
TEST(CliData, EmptyCorpusAndMissingInputs) {
  TmpDir d;
  std::ofstream(d / "empty.txt") << "\n\n   \n\t\n";
  EXPECT_CLI_ERROR("data prepare --input " + q(d / "empty.txt") + " --tokenizer " + q(env().tokenizer) + " --out " + q(d / "out"),
                   "no documents");
  std::ofstream(d / "zero.txt").close();
  EXPECT_CLI_ERROR("data prepare --input " + q(d / "zero.txt") + " --tokenizer " + q(env().tokenizer) + " --out " + q(d / "out"),
                   "no documents");
  EXPECT_CLI_ERROR("data prepare --input " + q(d / "missing.txt") + " --tokenizer " + q(env().tokenizer) + " --out " + q(d / "out"),
                   "missing.txt");
  EXPECT_CLI_ERROR("data prepare --input " + q(env().corpus) + " --tokenizer " + q(d / "nope.model") + " --out " + q(d / "out"),
                   "nope.model");
  std::ofstream(d / "junk.model") << "this is not a sentencepiece model";
  EXPECT_CLI_ERROR("data prepare --input " + q(env().corpus) + " --tokenizer " + q(d / "junk.model") + " --out " + q(d / "out"),
                   "not a valid SentencePiece model");
  EXPECT_CLI_ERROR("tokenizer train --input " + q(d / "missing.txt") + " --out " + q(d / "tok") + " --vocab-size 300",
                   "missing.txt");
  EXPECT_CLI_ERROR("tokenizer train --input " + q(d / "empty.txt") + " --out " + q(d / "tok") + " --vocab-size 300",
                   "no text");
  EXPECT_FALSE(fs::exists(d / "out/train.bin"));
}

TEST(CliData, TokenizerTrainAndPrepareProduceUsableShards) {
  TmpDir d;
  CliResult r = mohge("tokenizer train --input " + q(env().corpus) + " --out " + q(d / "tok") + " --vocab-size 300");
  EXPECT_CLI_OK(r);
  EXPECT_TRUE(fs::exists(d / "tok.model"));
  r = mohge("data prepare --input " + q(env().corpus) + " --tokenizer " + q(d / "tok.model") + " --out " + q(d / "data") +
            " --val-fraction 0.1");
  EXPECT_CLI_OK(r);
  TokenShard tr(d / "data/train.bin"), va(d / "data/val.bin");
  EXPECT_GT(tr.size(), 1000u);
  EXPECT_GT(va.size(), 0u);
  EXPECT_EQ(tr.vocab_size(), 300);
}

// ------------------------------------------------------------------------------ positive paths
struct Npy {
  std::string descr;
  bool fortran = true;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

Npy read_npy(const std::string& path) {
  auto b = read_file_bytes(path);
  Npy n;
  EXPECT_GE(b.size(), 10u);
  EXPECT_EQ(std::string(b.data(), 6), std::string("\x93NUMPY", 6));
  EXPECT_EQ(b[6], 1);
  EXPECT_EQ(b[7], 0);
  uint16_t hl;
  std::memcpy(&hl, b.data() + 8, 2);
  const size_t data_off = 10 + hl;
  EXPECT_EQ(data_off % 64, 0u) << "header not 64-byte aligned";
  std::string h(b.data() + 10, hl);
  EXPECT_EQ(h.back(), '\n');
  std::smatch m;
  if (std::regex_search(h, m, std::regex("'descr':\\s*'([^']*)'"))) n.descr = m[1];
  if (std::regex_search(h, m, std::regex("'fortran_order':\\s*(True|False)"))) n.fortran = m[1] == "True";
  if (std::regex_search(h, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) {
    std::stringstream ss(m[1].str());
    std::string item;
    while (std::getline(ss, item, ','))
      if (item.find_first_not_of(' ') != std::string::npos) n.shape.push_back(std::stoll(item));
  }
  int64_t count = 1;
  for (auto s : n.shape) count *= s;
  EXPECT_EQ(b.size(), data_off + (size_t)count * 4) << "file size does not match the shape";
  n.data.resize((size_t)count);
  if (b.size() >= data_off + (size_t)count * 4) std::memcpy(n.data.data(), b.data() + data_off, (size_t)count * 4);
  return n;
}

class CliForwardOk : public ::testing::TestWithParam<const char*> {};

TEST_P(CliForwardOk, WritesNpyEqualToInProcessLogits) {
  const std::string ck = std::string(GetParam()) == "dense" ? env().ck : env().ck_moe;
  TmpDir d;
  const std::vector<int32_t> toks = {1, 17, 250, 3, 0, 319, 42};
  std::string list;
  for (size_t i = 0; i < toks.size(); i++) list += (i ? "," : "") + std::to_string(toks[i]);
  CliResult r = mohge("forward --checkpoint " + q(ck) + " --tokens " + list + " --out " + q(d / "logits.npy"));
  EXPECT_CLI_OK(r);
  EXPECT_TRUE(r.err.empty()) << r.err;
  Npy n = read_npy(d / "logits.npy");
  EXPECT_EQ(n.descr, "<f4");
  EXPECT_FALSE(n.fortran);
  ASSERT_EQ(n.shape, (std::vector<int64_t>{(int64_t)toks.size(), 320}));
  auto m = model_load(ck);
  Context ctx(*m, Mode::eval);
  m->forward(ctx, toks.data(), nullptr, 1, (int)toks.size());
  double scale = 0;
  for (size_t i = 0; i < n.data.size(); i++) {
    ASSERT_NEAR(n.data[i], ctx.logits()[i], 1e-5) << i;
    scale = std::max(scale, (double)std::abs(n.data[i]));
  }
  EXPECT_GT(scale, 0.0);
  // a run directory resolves to its newest checkpoint
  TmpDir run;
  fs::create_directories(run / "checkpoints");
  fs::copy(ck, run / "checkpoints/step_00000010", fs::copy_options::recursive);
  r = mohge("forward --checkpoint " + q(run.str()) + " --tokens " + list + " --out " + q(d / "l2.npy"));
  EXPECT_CLI_OK(r);
  EXPECT_EQ(read_file_bytes(d / "l2.npy"), read_file_bytes(d / "logits.npy"));
}

INSTANTIATE_TEST_SUITE_P(Kinds, CliForwardOk, ::testing::Values("dense", "mohge"),
                         [](const auto& info) { return std::string(info.param); });

TEST(CliGrad, WritesLossLogitsAndGradientsEqualToInProcess) {
  TmpDir d;
  const int B = 2, T = 5;
  std::vector<int32_t> tokens = {1, 5, 9, 200, 7, 3, 11, 12, 13, 14, 15, 299};
  {
    std::vector<TensorView> ts = {{"tokens", "I32", {B, T + 1}, tokens.data(), tokens.size() * 4}};
    safetensors_write(d / "tokens.safetensors", ts);
  }
  CliResult r = mohge("grad --checkpoint " + q(env().ck_moe) + " --tokens-file " + q(d / "tokens.safetensors") +
                      " --out " + q(d / "g.safetensors"));
  EXPECT_CLI_OK(r);
  auto g = SafetensorsFile::load(d / "g.safetensors");
  auto m = model_load(env().ck_moe);
  std::vector<int32_t> in, tg;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) in.push_back(tokens[b * (T + 1) + t]), tg.push_back(tokens[b * (T + 1) + t + 1]);
  m->params.zero_grad();
  Context ctx(*m, Mode::train);
  const double lm = m->forward(ctx, in.data(), tg.data(), B, T, 0);
  const double total = lm + ctx.aux_loss();
  EXPECT_GT(ctx.aux_loss(), 0.0);
  EXPECT_NEAR(*g.f32("loss", {1}), total, 1e-5);
  EXPECT_NEAR(*g.f32("lm_loss", {1}), lm, 1e-5);
  const float* lg = g.f32("logits", {B, T, 320});
  for (int i = 0; i < B * T * 320; i++) ASSERT_NEAR(lg[i], ctx.logits()[i], 1e-5);
  m->backward(ctx, 1.0f);
  for (auto& p : m->params.infos()) {
    const float* gg = g.f32("grad." + p.name, p.shape);
    const float* ours = m->params.all_grad() + p.offset;
    for (int64_t i = 0; i < p.numel; i++) ASSERT_NEAR(gg[i], ours[i], 1e-6 + 1e-4 * std::abs(ours[i])) << p.name;
  }
  // bad tokens files
  {
    std::vector<int32_t> t1 = {1, 2, 3};
    std::vector<TensorView> ts = {{"tokens", "I32", {3}, t1.data(), 12}};
    safetensors_write(d / "bad1.safetensors", ts);
  }
  EXPECT_CLI_ERROR("grad --checkpoint " + q(env().ck_moe) + " --tokens-file " + q(d / "bad1.safetensors") + " --out " +
                       q(d / "x.safetensors"),
                   "'tokens' must be I32 [B, T+1]");
  {
    std::vector<int32_t> t1 = {1, 2, 3, 4000};
    std::vector<TensorView> ts = {{"tokens", "I32", {1, 4}, t1.data(), 16}};
    safetensors_write(d / "bad2.safetensors", ts);
  }
  EXPECT_CLI_ERROR("grad --checkpoint " + q(env().ck_moe) + " --tokens-file " + q(d / "bad2.safetensors") + " --out " +
                       q(d / "x.safetensors"),
                   "target id 4000");
  EXPECT_CLI_ERROR("grad --checkpoint " + q(env().ck_moe) + " --tokens-file " + q(d / "none.safetensors") + " --out " +
                       q(d / "x.safetensors"),
                   "none.safetensors");
}

TEST(CliEval, ReportsTheInProcessValidationLoss) {
  CliResult r = mohge("eval --checkpoint " + q(env().ck) + " --data " + q(env().shard) + " --seq-len 16 --batch-size 4");
  EXPECT_CLI_OK(r);
  auto j = nlohmann::json::parse(r.out);
  auto m = model_load(env().ck);
  DataLoader loader(env().shard, 4, 16, 0);
  EvalResult e = evaluate_loss(*m, loader, 0);
  EXPECT_NEAR(j.at("loss").get<double>(), e.loss, 1e-5);
  EXPECT_EQ(j.at("tokens").get<uint64_t>(), e.tokens);
  EXPECT_NEAR(j.at("perplexity").get<double>(), std::exp(e.loss), 1e-3);
  EXPECT_NEAR(e.loss, std::log(320.0), 0.5);
}

TEST(CliGenerate, GreedyGenerationRuns) {
  CliResult r = mohge("generate --checkpoint " + q(env().ck) + " --prompt 'the cat' --max-tokens 5 --temperature 0");
  EXPECT_CLI_OK(r);
  EXPECT_EQ(r.out.rfind("the cat", 0), 0u) << r.out;
  CliResult r2 = mohge("generate --checkpoint " + q(env().ck) + " --prompt 'the cat' --max-tokens 5 --temperature 0");
  EXPECT_EQ(r.out, r2.out) << "greedy decoding must be deterministic";
  EXPECT_CLI_ERROR("generate --checkpoint " + q(env().ck) + " --prompt 'the cat' --top-p 1.5", "top-p");
}

// A frozen model's first GEMM can be attention over a prompt's rows (inside a parallel region for a
// long prompt, where an error cannot propagate: the module is loaded before the region), so a
// missing module is still one `error:` line, not std::terminate. A short prompt needs no GEMM.
TEST(CliGenerate, AMissingGemmModuleIsOneErrorLineWhenThePromptNeedsIt) {
  const std::string env_missing = "MOHGE_ONEDNN_MODULE=/nonexistent/libmohge_onednn.so";
  test::CommandResult r = test::run_mohge(
      "generate --checkpoint " + q(env().ck) + " --prompt 'a' --max-tokens 2 --temperature 0", 60, env_missing);
  EXPECT_EQ(r.rc, 0) << r.err;
  r = test::run_mohge("generate --checkpoint " + q(env().ck) + " --prompt 'the cat sat' --max-tokens 2 --temperature 0",
                      60, env_missing);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(r.err, "error: cannot load the oneDNN GEMM module /nonexistent/libmohge_onednn.so: cannot open shared "
                   "object file: No such file or directory (set MOHGE_ONEDNN_MODULE to its path)\n");
}

// ------------------------------------------------------------------------------------ end to end
// tokenizer train -> data prepare -> train (stop + resume) -> eval / forward / generate on the run dir.
TEST(CliEndToEnd, TrainResumeEvalGenerate) {
  TmpDir d;
  EXPECT_CLI_OK(mohge("tokenizer train --input " + q(env().corpus) + " --out " + q(d / "tok") + " --vocab-size 300"));
  EXPECT_CLI_OK(mohge("data prepare --input " + q(env().corpus) + " --tokenizer " + q(d / "tok.model") + " --out " +
                      q(d / "data") + " --val-fraction 0.1"));
  const std::string sets =
      " --set model.vocab_size=300 --set model.hidden_size=16 --set model.num_layers=1 --set model.num_heads=2"
      " --set model.num_kv_heads=1 --set model.intermediate_size=32 --set model.max_seq_len=16"
      " --set train.batch_size=2 --set train.seq_len=16 --set train.steps=6 --set train.eval_every=0"
      " --set train.eval_batches=2 --set run.threads=1 --set data.dir=" + q(d / "data") +
      " --set train.out_dir=" + q(d / "run");
  CliResult r = mohge("train -q --stop-after 3" + sets);
  EXPECT_CLI_OK(r);
  EXPECT_TRUE(fs::exists(d / "run/checkpoints/step_00000003/model.safetensors"));
  r = mohge("train -q --resume" + sets);
  EXPECT_CLI_OK(r);
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("trained 6 steps"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(d / "run/checkpoints/step_00000006/tokenizer.model"));
  r = mohge("eval --checkpoint " + q(d / "run") + " --data " + q(d / "data") + " --seq-len 16");
  EXPECT_CLI_OK(r);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("checkpoint").get<std::string>(), d / "run/checkpoints/step_00000006");
  EXPECT_LT(j.at("loss").get<double>(), std::log(300.0) + 0.5);
  r = mohge("generate --checkpoint " + q(d / "run") + " --prompt 'the cat' --max-tokens 4 --seed 3");
  EXPECT_CLI_OK(r);
  r = mohge("train -q --resume" + sets + " --set model.hidden_size=32");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("model config differs"), std::string::npos) << r.err;
}

}  // namespace
