// defines: tests of src/train — overfitting one batch, loss falling on a synthetic corpus, exact
// resume (dense and mohge, grad_accum 2, the group loss switching on after the resume), checkpoint
// atomicity / pruning, the LR schedule, gradient clipping, AdamW's decoupled decay, determinism.
// A small synthetic English-like corpus is generated, a SentencePiece tokenizer trained on it and the
// shards prepared once per process (static fixture).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "kernels/backend.h"
#include "data/dataloader.h"
#include "data/shards.h"
#include "eval/eval_loss.h"
#include "model/model.h"
#include "model/model_io.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/train_config.h"
#include "train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mohge;

namespace {

// Single-threaded unless OMP_NUM_THREADS is set (see test_util.h); run.threads = 1 in every run
// below, for the same reason.
const bool kSingleThreaded = test::single_threaded_unless_set();

using test::TmpDir;

// ------------------------------------------------------------------------- synthetic corpus
// Sentences from a tiny grammar (determiner adjective noun verb determiner noun, with a few
// templates), so there is structure beyond unigram frequencies for a model to learn.
std::string make_corpus(int docs, uint64_t seed) {
  static const char* dets[] = {"the", "a", "every", "one"};
  static const char* adjs[] = {"red", "small", "old", "happy", "green", "quiet", "bright", "heavy"};
  static const char* nouns[] = {"cat", "dog", "bird", "house", "river", "tree", "child", "farmer",
                                "stone", "book", "garden", "window"};
  static const char* verbs[] = {"sees", "finds", "likes", "carries", "watches", "follows", "paints"};
  static const char* advs[] = {"slowly", "today", "again", "quietly"};
  std::mt19937_64 rng(seed);
  auto pick = [&](auto& arr) { return std::string(arr[rng() % std::size(arr)]); };
  std::string out;
  for (int d = 0; d < docs; d++) {
    const int sentences = 2 + (int)(rng() % 4);
    for (int s = 0; s < sentences; s++) {
      std::string sent;
      switch (rng() % 3) {
        case 0: sent = pick(dets) + " " + pick(adjs) + " " + pick(nouns) + " " + pick(verbs) + " " + pick(dets) + " " + pick(nouns) + "."; break;
        case 1: sent = pick(dets) + " " + pick(nouns) + " " + pick(verbs) + " " + pick(dets) + " " + pick(adjs) + " " + pick(nouns) + " " + pick(advs) + "."; break;
        default: sent = pick(dets) + " " + pick(nouns) + " is " + pick(adjs) + "."; break;
      }
      sent[0] = (char)std::toupper(sent[0]);
      out += (s ? " " : "") + sent;
    }
    out += "\n\n";
  }
  return out;
}

// Built once per process: corpus -> tokenizer (vocab 300) -> train.bin / val.bin.
const test::CorpusFixture& dataset() {
  static const test::CorpusFixture ds = test::make_corpus_fixture(make_corpus(400, 42), {.val_fraction = 0.1});
  return ds;
}

// Tiny run config through the real TOML path (run_config_read + --set overrides).
RunConfig tiny_run(const std::string& out_dir, const std::string& kind, std::vector<std::string> extra = {}) {
  const test::CorpusFixture& ds = dataset();
  std::vector<std::string> sets = {
      "model.vocab_size=320", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=4",
      "model.num_kv_heads=2", "model.intermediate_size=64", "model.max_seq_len=32",
      "model.ffn_kind=\"" + kind + "\"",
      "data.dir=\"" + ds.data_dir + "\"", "data.tokenizer=\"" + ds.tokenizer + "\"",
      "train.batch_size=4", "train.seq_len=32", "train.steps=20", "train.lr=3e-3", "train.min_lr=3e-4",
      "train.warmup_steps=3", "train.eval_every=0", "train.eval_batches=4", "train.checkpoint_every=0",
      "train.keep_checkpoints=3", "train.out_dir=\"" + out_dir + "\"", "run.threads=1", "train.seed=7"};
  if (kind == "moe") {
    for (const char* s : {"moe.num_experts=4", "moe.expert_width=16", "moe.num_experts_per_tok=2",
                          "moe.load_balance_coef=0.01"})
      sets.push_back(s);
  } else if (kind == "mohge") {
    for (const char* s : {"model.first_dense_layers=1", "moe.num_expert_groups=3", "moe.experts_per_group=2",
                          "moe.group_widths=[8, 16, 24]", "moe.topk_group=2", "moe.num_experts_per_tok=3",
                          "moe.shared_expert_width=16", "moe.group_coef=0.05", "moe.intra_group_coef=0.05",
                          "moe.group_delta=16.0", "train.routing_devices=2"})
      sets.push_back(s);
  }
  for (auto& e : extra) sets.push_back(e);
  return run_config_read("", sets);
}

TrainOptions quiet(int stop_after = 0, bool resume = false) {
  TrainOptions o;
  o.progress = false;
  o.stop_after = stop_after;
  o.resume = resume;
  o.validate = [](Model& m, DataLoader& l, uint64_t n) {
    EvalResult r = evaluate_loss(m, l, n);
    return ValLoss{r.loss, r.tokens};
  };
  return o;
}

std::vector<nlohmann::json> read_log(const std::string& out_dir) {
  std::ifstream in(out_dir + "/log.jsonl");
  std::vector<nlohmann::json> v;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) v.push_back(nlohmann::json::parse(line));
  return v;
}

// step -> training record (records with "loss")
std::map<int64_t, nlohmann::json> train_records(const std::string& out_dir) {
  std::map<int64_t, nlohmann::json> m;
  for (auto& j : read_log(out_dir))
    if (j.contains("loss")) {
      EXPECT_EQ(m.count(j.at("step").get<int64_t>()), 0u) << "duplicate step " << j.at("step");
      m[j.at("step").get<int64_t>()] = j;
    }
  return m;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> v;
  if (fs::is_directory(dir))
    for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

// --------------------------------------------------------------------------- overfit one batch
// Trains a tiny model of `kind` on one batch; returns {first loss, last loss, steps taken}.
struct OverfitResult { double first, last; int steps; };
OverfitResult overfit_one_batch(const std::string& kind, uint64_t loader_seed) {
  const test::CorpusFixture& ds = dataset();
  RunConfig rc = tiny_run(TmpDir().str(), kind);
  Model m(rc.model);
  m.init_weights(3);
  AdamW opt(m.params, {0.9, 0.95, 1e-8, 0.0, false});
  Context ctx(m, Mode::train);
  const int B = 2, T = 16;
  DataLoader loader(ds.data_dir + "/train.bin", B, T, loader_seed);
  std::vector<int32_t> in(B * T), tg(B * T);
  loader.next_batch(in.data(), tg.data());
  OverfitResult r{0, 0, 0};
  for (; r.steps < 400; r.steps++) {
    m.params.zero_grad();
    r.last = m.forward(ctx, in.data(), tg.data(), B, T);
    if (r.steps == 0) r.first = r.last;
    if (r.last < 0.02) break;
    m.backward(ctx, 1.0f);
    opt.step(m.params, 3e-3, r.steps + 1);
  }
  return r;
}

TEST(Training, OverfitsOneBatchToNearZeroLoss) {
  OverfitResult r = overfit_one_batch("dense", 5);
  EXPECT_NEAR(r.first, std::log(320.0), 0.5) << "initial loss should be about ln(V)";
  EXPECT_LT(r.last, 0.05) << "after " << r.steps << " steps on one batch";
}

// Same for a mixture-of-experts model (routing + aux loss in the loop).
TEST(Training, MohgeOverfitsOneBatch) {
  OverfitResult r = overfit_one_batch("mohge", 9);
  EXPECT_LT(r.last, 0.05) << "after " << r.steps << " steps on one batch";
}

// ---------------------------------------------------------------------------------- loss falls
double unigram_entropy(const std::string& shard_path) {
  TokenShard s(shard_path);
  std::map<int32_t, double> counts;
  for (uint64_t i = 0; i < s.size(); i++) counts[s[i]] += 1;
  double H = 0;
  for (auto& [t, c] : counts) {
    const double p = c / (double)s.size();
    H -= p * std::log(p);
  }
  return H;
}

TEST(Training, ValLossFallsBelowUnigramEntropy) {
  const test::CorpusFixture& ds = dataset();
  TmpDir out;
  RunConfig rc = tiny_run(out.str(), "dense", {"train.steps=60", "train.batch_size=8", "train.lr=1e-2",
                                                "train.min_lr=1e-3", "train.eval_every=30"});
  TrainSummary s = train_run(rc, quiet());
  const double H = unigram_entropy(ds.data_dir + "/train.bin");
  EXPECT_EQ(s.steps, 60);
  EXPECT_LT(s.val_loss, std::log((double)ds.vocab) - 1.0);
  EXPECT_LT(s.val_loss, H - 0.3) << "unigram entropy " << H;
  EXPECT_TRUE(std::isfinite(s.train_loss));
  auto recs = train_records(out.str());
  ASSERT_EQ(recs.size(), 60u);
  EXPECT_LT(recs.at(60).at("lm_loss").get<double>(), recs.at(1).at("lm_loss").get<double>() - 1.0);
  // val records at 30 and 60, the second lower
  std::vector<double> vals;
  for (auto& j : read_log(out.str()))
    if (j.contains("val_loss")) vals.push_back(j.at("val_loss").get<double>());
  ASSERT_EQ(vals.size(), 2u);
  EXPECT_LT(vals[1], vals[0]);
  EXPECT_DOUBLE_EQ(vals[1], s.val_loss);
  fmt::print("val loss {:.4f}, unigram entropy {:.4f}, ln V {:.4f}\n", s.val_loss, H, std::log((double)ds.vocab));
}

// Mixed precision through the config key: a bf16 run learns as the fp32 run does.
TEST(Training, Bf16RunLearnsAsFp32Does) {
  if (!bf16_supported()) GTEST_SKIP() << "no AVX512-BF16 on this CPU: bf16 training not run";
  const test::CorpusFixture& ds = dataset();
  double val[2];
  for (int k = 0; k < 2; k++) {
    TmpDir out;
    RunConfig rc = tiny_run(out.str(), "mohge", {"train.steps=60", "train.batch_size=8", "train.lr=1e-2",
                                                  "train.min_lr=1e-3", "train.eval_every=60",
                                                  k ? "run.matmul_precision=\"bf16\"" : "run.matmul_precision=\"fp32\""});
    ASSERT_EQ(rc.model.matmul_precision, k ? Precision::bf16 : Precision::fp32);
    val[k] = train_run(rc, quiet()).val_loss;
  }
  const double H = unigram_entropy(ds.data_dir + "/train.bin");
  fmt::print("mohge 60 steps: val loss fp32 {:.4f}, bf16 {:.4f}, unigram entropy {:.4f}\n", val[0], val[1], H);
  EXPECT_LT(val[1], H - 0.3);
  EXPECT_NEAR(val[1], val[0], 0.05);
}

// ------------------------------------------------------------------------------ exact resume
void expect_same_params(const std::string& ckpt_a, const std::string& ckpt_b) {
  auto a = SafetensorsFile::load(ckpt_a + "/model.safetensors");
  auto b = SafetensorsFile::load(ckpt_b + "/model.safetensors");
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (auto& t : a.tensors()) {
    const TensorView& u = b.get(t.name);
    ASSERT_EQ(t.shape, u.shape) << t.name;
    EXPECT_EQ(std::memcmp(t.data, u.data, t.nbytes), 0) << t.name << " differs";
  }
  auto oa = SafetensorsFile::load(ckpt_a + "/optimizer.safetensors");
  auto ob = SafetensorsFile::load(ckpt_b + "/optimizer.safetensors");
  for (auto& t : oa.tensors()) EXPECT_EQ(std::memcmp(t.data, ob.get(t.name).data, t.nbytes), 0) << t.name;
}

void resume_equality(const std::string& kind, std::vector<std::string> extra) {
  const int N = 6;
  extra.push_back("train.steps=" + std::to_string(2 * N));
  extra.push_back("train.grad_accum=2");
  extra.push_back("train.eval_every=4");
  TmpDir a, b;
  TrainSummary sa = train_run(tiny_run(a.str(), kind, extra), quiet());
  TrainSummary sb1 = train_run(tiny_run(b.str(), kind, extra), quiet(N));
  EXPECT_EQ(sb1.steps, N);
  EXPECT_TRUE(fs::exists(b / fmt::format("checkpoints/step_{:08d}", N)));
  EXPECT_EQ(train_records(b.str()).size(), (size_t)N);
  TrainSummary sb2 = train_run(tiny_run(b.str(), kind, extra), quiet(0, true));
  EXPECT_EQ(sa.steps, 2 * N);
  EXPECT_EQ(sb2.steps, 2 * N);

  auto ra = train_records(a.str()), rb = train_records(b.str());
  ASSERT_EQ(ra.size(), (size_t)(2 * N));
  ASSERT_EQ(rb.size(), (size_t)(2 * N));
  for (int s = 1; s <= 2 * N; s++) {
    // exact equality of the logged doubles, before and after the resume
    EXPECT_EQ(ra.at(s).at("loss").get<double>(), rb.at(s).at("loss").get<double>()) << kind << " step " << s;
    EXPECT_EQ(ra.at(s).at("lm_loss").get<double>(), rb.at(s).at("lm_loss").get<double>()) << "step " << s;
    EXPECT_EQ(ra.at(s).at("grad_norm").get<double>(), rb.at(s).at("grad_norm").get<double>()) << "step " << s;
    EXPECT_EQ(ra.at(s).at("lr").get<double>(), rb.at(s).at("lr").get<double>()) << "step " << s;
    if (ra.at(s).contains("aux")) {
      EXPECT_EQ(ra.at(s).at("aux"), rb.at(s).at("aux")) << "step " << s;
    }
  }
  EXPECT_EQ(sa.val_loss, sb2.val_loss);
  expect_same_params(sa.checkpoint, sb2.checkpoint);
}

TEST(Resume, DenseResumedRunEqualsUninterruptedRun) { resume_equality("dense", {}); }

TEST(Resume, Bf16ResumedRunEqualsUninterruptedRun) {
  if (!bf16_supported()) GTEST_SKIP() << "no AVX512-BF16 on this CPU: bf16 training not run";
  resume_equality("mohge", {"run.matmul_precision=\"bf16\""});
}

// mohge: the group loss switches on at step 9, inside the second half (after the resume at 6).
TEST(Resume, MohgeResumedRunEqualsUninterruptedRunWithGroupLossStartingAfterResume) {
  resume_equality("mohge", {"moe.group_loss_start_step=9"});
  // the switch-on is visible in the log: aux_loss jumps by the group term at step 10 (step index 9)
  TmpDir c;
  train_run(tiny_run(c.str(), "mohge", {"moe.group_loss_start_step=9", "train.steps=12", "train.grad_accum=2"}), quiet());
  auto r = train_records(c.str());
  const double coef = 0.05;
  for (int s = 1; s <= 12; s++) {
    const auto& j = r.at(s);
    const double expected = coef * j.at("aux").at("intra_group").get<double>() +
                            (s - 1 >= 9 ? coef * j.at("aux").at("group").get<double>() : 0.0);
    EXPECT_NEAR(j.at("aux_loss").get<double>(), expected, 1e-9) << "step " << s;
  }
}

// A run configured for a backend that cannot run here (cuda without a GPU) is refused in one line
// naming the reason before any work, rather than trained on the CPU behind the user's back.
TEST(Training, BackendsThatCannotRunHereAreRefusedInOneLine) {
  std::string why;
  if (backend_find("cuda", &why)) GTEST_SKIP() << "cuda runs here";
  TmpDir out;
  RunConfig rc = tiny_run(out.str(), "dense", {"train.steps=2"});
  rc.run.backend = "cuda";
  EXPECT_ERROR(train_run(rc, quiet()), why);
  EXPECT_FALSE(fs::exists(out / "log.jsonl")) << "the refused run wrote a log";
}

TEST(Resume, ResumeWithDifferentModelConfigIsAnError) {
  TmpDir out;
  train_run(tiny_run(out.str(), "dense", {"train.steps=4"}), quiet(2));
  EXPECT_ERROR(train_run(tiny_run(out.str(), "dense", {"train.steps=4", "model.intermediate_size=48"}), quiet(0, true)),
               "model config differs from the checkpoint");
}

// The trainer never overwrites an earlier run: training into an out_dir that holds checkpoints
// without --resume is an error that touches nothing; with it, the run continues.
TEST(Resume, OutDirWithCheckpointsNeedsResume) {
  TmpDir out;
  const std::vector<std::string> extra = {"train.steps=4"};
  TrainSummary first = train_run(tiny_run(out.str(), "dense", extra), quiet(2));
  ASSERT_EQ(first.steps, 2);
  const std::string ck2 = out / "checkpoints/step_00000002";
  ASSERT_TRUE(fs::exists(ck2 + "/model.safetensors"));
  const std::string weights = read_file_text(ck2 + "/model.safetensors");
  const auto log_before = read_log(out.str());
  ASSERT_EQ(train_records(out.str()).size(), 2u);

  EXPECT_ERROR(train_run(tiny_run(out.str(), "dense", extra), quiet()), "--resume");
  EXPECT_EQ(list_dir(out / "checkpoints"), std::vector<std::string>{"step_00000002"});
  EXPECT_EQ(read_file_text(ck2 + "/model.safetensors"), weights) << "the earlier checkpoint was overwritten";
  EXPECT_EQ(read_log(out.str()), log_before) << "the earlier log was changed";

  TrainSummary resumed = train_run(tiny_run(out.str(), "dense", extra), quiet(0, true));
  EXPECT_EQ(resumed.steps, 4);
  EXPECT_EQ(resumed.checkpoint, out / "checkpoints/step_00000004");
  auto recs = train_records(out.str());
  ASSERT_EQ(recs.size(), 4u);  // steps 1..2 kept, 3..4 appended
  EXPECT_EQ(recs.begin()->first, 1);
  EXPECT_EQ(recs.rbegin()->first, 4);
}

// ------------------------------------------------------------------ checkpoint atomicity/pruning
TEST(Checkpoints, AtomicSavePruningAndLeftoverTmpDirsAreIgnored) {
  TmpDir out;
  const std::string ck = out / "checkpoints";
  TrainSummary s = train_run(tiny_run(out.str(), "dense", {"train.steps=8", "train.checkpoint_every=2",
                                                             "train.keep_checkpoints=2"}), quiet());
  EXPECT_EQ(list_dir(ck), (std::vector<std::string>{"step_00000006", "step_00000008"}));
  EXPECT_EQ(s.checkpoint, ck + "/step_00000008");
  for (const auto& f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json",
                        "tokenizer.model", "run.toml"})
    EXPECT_TRUE(fs::exists(ck + "/step_00000008/" + f)) << f;
  for (const auto& f : list_dir(ck + "/step_00000008")) EXPECT_EQ(f.find(".tmp"), std::string::npos) << f;
  auto st = nlohmann::json::parse(read_file_text(ck + "/step_00000008/trainer_state.json"));
  EXPECT_EQ(st.at("step").get<int64_t>(), 8);
  // the checkpoint's run.toml reproduces the config
  RunConfig again = run_config_read(ck + "/step_00000008/run.toml", {});
  EXPECT_EQ(model_config_to_json(again.model), model_config_to_json(tiny_run(out.str(), "dense").model));

  // a run killed mid-save leaves .tmp_step_*: newer-looking, complete-looking, and still ignored
  fs::copy(ck + "/step_00000008", ck + "/.tmp_step_00000099", fs::copy_options::recursive);
  fs::create_directories(ck + "/.tmp_step_00000010");
  EXPECT_EQ(checkpoint_resolve(out.str()), ck + "/step_00000008");
  // a step_ dir without config.json (not a checkpoint) is ignored too
  fs::create_directories(ck + "/step_00000050");
  EXPECT_EQ(checkpoint_resolve(out.str()), ck + "/step_00000008");
  fs::remove_all(ck + "/step_00000050");

  TrainSummary r = train_run(tiny_run(out.str(), "dense", {"train.steps=12", "train.checkpoint_every=2",
                                                             "train.keep_checkpoints=2"}), quiet(0, true));
  EXPECT_EQ(r.steps, 12);
  auto recs = train_records(out.str());
  ASSERT_EQ(recs.size(), 12u);  // resumed at 8 (not 99): steps 1..8 kept, 9..12 appended
  EXPECT_EQ(recs.begin()->first, 1);
  EXPECT_EQ(recs.rbegin()->first, 12);
  auto names = list_dir(ck);
  EXPECT_TRUE(std::find(names.begin(), names.end(), "step_00000012") != names.end());
  EXPECT_TRUE(std::find(names.begin(), names.end(), "step_00000010") != names.end());
  EXPECT_TRUE(std::find(names.begin(), names.end(), "step_00000008") == names.end()) << "not pruned";
  EXPECT_TRUE(std::find(names.begin(), names.end(), ".tmp_step_00000010") == names.end())
      << "a save at step 10 must not leave its temporary directory";
}

TEST(Checkpoints, CheckpointSaveLeavesNoTemporaries) {
  TmpDir out;
  RunConfig rc = tiny_run(out.str(), "mohge");
  Model m(rc.model);
  m.init_weights(1);
  AdamW opt(m.params, {});
  TrainerState st;
  st.step = 3;
  std::string dir = checkpoint_save(out.str(), m, opt, st, "tok", rc.toml, 2);
  EXPECT_EQ(list_dir(out / "checkpoints"), std::vector<std::string>{"step_00000003"});
  for (const auto& f : list_dir(dir)) EXPECT_EQ(f.find(".tmp"), std::string::npos) << f;
  // saving the same step again replaces it
  st.step = 3;
  checkpoint_save(out.str(), m, opt, st, "tok", rc.toml, 2);
  EXPECT_EQ(list_dir(out / "checkpoints"), std::vector<std::string>{"step_00000003"});
  // load_training restores state; a corrupt trainer_state.json is a clear error
  TrainerState back;
  AdamW opt2(m.params, {});
  checkpoint_load_training(dir, m, opt2, back);
  EXPECT_EQ(back.step, 3);
  write_file_atomic(dir + "/trainer_state.json", "{\"step\": 3");
  EXPECT_ERROR(checkpoint_load_training(dir, m, opt2, back), "corrupt trainer state");
}

// ------------------------------------------------------------------------------- LR schedule
TEST(Optimizer, LrScheduleLinearWarmupThenCosineToMinLr) {
  const double lr = 1e-3, min_lr = 1e-4;
  const int64_t total = 100, warmup = 10;
  for (int64_t s = 0; s < warmup; s++)
    EXPECT_NEAR(lr_schedule(s, total, warmup, lr, min_lr), lr * (s + 1) / warmup, 1e-15) << s;
  EXPECT_NEAR(lr_schedule(warmup, total, warmup, lr, min_lr), lr, 1e-15);
  EXPECT_NEAR(lr_schedule(warmup + (total - warmup) / 2, total, warmup, lr, min_lr), (lr + min_lr) / 2, 1e-12);
  EXPECT_NEAR(lr_schedule(total, total, warmup, lr, min_lr), min_lr, 1e-15);
  EXPECT_NEAR(lr_schedule(total + 50, total, warmup, lr, min_lr), min_lr, 1e-15);
  // the last trained step (total-1) is within one step of the end of the cosine
  const double last = lr_schedule(total - 1, total, warmup, lr, min_lr);
  EXPECT_GT(last, min_lr);
  EXPECT_LT(last - min_lr, (lr - min_lr) * 1e-3);
  double prev = lr;
  for (int64_t s = warmup; s <= total; s++) {
    const double v = lr_schedule(s, total, warmup, lr, min_lr);
    EXPECT_LE(v, prev + 1e-18) << "not monotone at " << s;
    EXPECT_GE(v, min_lr - 1e-18);
    prev = v;
  }
  // no warmup: starts at lr
  EXPECT_NEAR(lr_schedule(0, total, 0, lr, min_lr), lr, 1e-15);
}

TEST(Optimizer, TrainerLogsTheScheduledLr) {
  TmpDir out;
  train_run(tiny_run(out.str(), "dense", {"train.steps=10", "train.warmup_steps=4"}), quiet());
  auto r = train_records(out.str());
  for (int s = 1; s <= 10; s++)
    EXPECT_DOUBLE_EQ(r.at(s).at("lr").get<double>(), lr_schedule(s - 1, 10, 4, 3e-3, 3e-4)) << s;
}

// ---------------------------------------------------------------------------- gradient clipping
TEST(Optimizer, GradClippingScalesTheNormToTheClipValue) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> g(10007);
  for (auto& v : g) v = nd(rng);
  double ref = 0;
  for (float v : g) ref += (double)v * v;
  ref = std::sqrt(ref);
  const double norm = grad_global_norm(mohge::cpu_backend(), g.data(), (int64_t)g.size());
  EXPECT_NEAR(norm, ref, 1e-9 * ref);
  ASSERT_GT(norm, 1.0);
  EXPECT_FLOAT_EQ(grad_clip_factor(norm, 1.0), (float)(1.0 / norm));
  EXPECT_EQ(grad_clip_factor(norm, 2 * norm), 1.0f);  // under the clip value: untouched
  EXPECT_EQ(grad_clip_factor(norm, 0.0), 1.0f);       // clipping off
  // tiny and empty inputs
  float one = -4.0f;
  EXPECT_DOUBLE_EQ(grad_global_norm(mohge::cpu_backend(), &one, 1), 4.0);
  EXPECT_DOUBLE_EQ(grad_global_norm(mohge::cpu_backend(), nullptr, 0), 0.0);
}

// AdamW with the clip factor folded in equals the textbook update on explicitly scaled gradients
// (double precision, element by element), for decayed and non-decayed tensors alike.
TEST(Optimizer, AdamWStepMatchesScalarReferenceWithClipFactor) {
  RunConfig rc = tiny_run(TmpDir().str(), "mohge");
  Model m(rc.model);
  m.init_weights(4);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  const double lr = 3e-3, wd = 0.1, b1 = 0.9, b2 = 0.95, eps = 1e-8;
  AdamW opt(m.params, {b1, b2, eps, wd, false});
  const int64_t n = m.params.total();
  std::vector<double> w(m.params.all_data(), m.params.all_data() + n), mm(n, 0.0), vv(n, 0.0);
  std::vector<uint8_t> decay(n, 0);
  for (auto& p : m.params.infos()) std::fill_n(decay.begin() + (int64_t)p.offset, p.numel, p.decay);
  for (int t = 1; t <= 3; t++) {
    for (auto& p : m.params.infos())
      for (int64_t i = 0; i < p.numel; i++) m.params.all_grad()[p.offset + i] = nd(rng);
    const float mult = t == 2 ? 1.0f : 0.25f * t;
    for (int64_t i = 0; i < n; i++) {
      const double g = (double)m.params.all_grad()[i] * mult;
      mm[i] = b1 * mm[i] + (1 - b1) * g;
      vv[i] = b2 * vv[i] + (1 - b2) * g * g;
      const double mh = mm[i] / (1 - std::pow(b1, t)), vh = vv[i] / (1 - std::pow(b2, t));
      w[i] -= lr * mh / (std::sqrt(vh) + eps) + (decay[i] ? lr * wd * w[i] : 0.0);
    }
    opt.step(m.params, lr, t, mult);
  }
  for (auto& p : m.params.infos())
    for (int64_t i = 0; i < p.numel; i++) {
      const size_t k = p.offset + i;
      ASSERT_NEAR(m.params.all_data()[k], w[k], 1e-6 + 1e-5 * std::abs(w[k])) << p.name << "[" << i << "]";
      ASSERT_NEAR(opt.m.data()[k], mm[k], 1e-5 * std::abs(mm[k]) + 1e-8) << p.name << "[" << i << "]";
    }
}

// The trainer logs the pre-clip norm; with clipping on, the update uses the clipped gradient. With
// AdamW the first update is ≈ lr·sign(g) either way, so check the norm it logs against a direct
// computation of the first step's gradient.
TEST(Optimizer, TrainerLogsGlobalGradNormOfTheFirstStep) {
  const test::CorpusFixture& ds = dataset();
  TmpDir out;
  RunConfig rc = tiny_run(out.str(), "dense", {"train.steps=1", "train.grad_clip=0.5"});
  train_run(rc, quiet());
  auto r = train_records(out.str());
  Model m(rc.model);
  m.init_weights(rc.train.seed);
  DataLoader loader(ds.data_dir + "/train.bin", rc.train.batch_size, rc.train.seq_len, rc.train.seed);
  std::vector<int32_t> in(rc.train.batch_size * rc.train.seq_len), tg(in.size());
  loader.next_batch(in.data(), tg.data());
  m.params.zero_grad();
  Context ctx(m, Mode::train);
  const double loss = m.forward(ctx, in.data(), tg.data(), rc.train.batch_size, rc.train.seq_len, 0);
  m.backward(ctx, 1.0f);
  EXPECT_EQ(r.at(1).at("lm_loss").get<double>(), loss);
  EXPECT_NEAR(r.at(1).at("grad_norm").get<double>(), grad_global_norm(m.params.backend(), m.params.all_grad(), m.params.total()), 1e-9);
}

// ------------------------------------------------------------------------------ AdamW decay
TEST(Optimizer, AdamWDecoupledDecaySkipsNormsAndEmbeddingsByDefault) {
  RunConfig rc = tiny_run(TmpDir().str(), "mohge");
  for (bool decay_all : {false, true}) {
    Model m(rc.model);
    m.init_weights(2);
    std::vector<float> w0(m.params.all_data(), m.params.all_data() + m.params.total());
    m.params.zero_grad();  // zero gradient: Adam's step is exactly 0, only the decay moves weights
    const double lr = 0.01, wd = 0.1;
    AdamW opt(m.params, {0.9, 0.95, 1e-8, wd, decay_all});
    opt.step(m.params, lr, 1);
    int decayed = 0, kept = 0;
    for (auto& p : m.params.infos()) {
      const bool is_norm = p.name.find("norm") != std::string::npos;
      const bool is_embed = p.name == "model.embed_tokens.weight";
      EXPECT_EQ(p.decay, !(is_norm || is_embed)) << p.name;
      const bool expect_decay = decay_all || p.decay;
      for (int64_t i = 0; i < p.numel; i += 7) {
        const float a = w0[p.offset + i], b = m.params.all_data()[p.offset + i];
        if (expect_decay)
          ASSERT_NEAR(b, a - (float)(lr * wd) * a, 3e-7f * std::abs(a) + 1e-12f) << p.name;
        else
          ASSERT_EQ(b, a) << p.name << " decayed";
      }
      (expect_decay ? decayed : kept)++;
    }
    EXPECT_GT(decayed, 0);
    if (decay_all)
      EXPECT_EQ(kept, 0);
    else
      EXPECT_GT(kept, 0);
  }
}

TEST(Optimizer, AdamWFirstStepIsLrTimesSignAndBiasCorrected) {
  ParamTable p(mohge::cpu_backend());
  int id = p.add("w", {4}, ParamInit::normal, 0.1f, false);
  p.allocate();
  float* w = p.data(id);
  float* g = p.grad(id);
  const float g0[4] = {0.5f, -2.0f, 1e-3f, 0.0f};
  std::copy_n(g0, 4, g);
  AdamW opt(p, {0.9, 0.999, 1e-8, 0.0, false});
  opt.step(p, 0.1, 1);
  EXPECT_NEAR(w[0], -0.1f, 1e-6);
  EXPECT_NEAR(w[1], 0.1f, 1e-6);
  EXPECT_NEAR(w[2], -0.1f, 1e-4);
  EXPECT_EQ(w[3], 0.0f);
  // second step with the same gradient: still ≈ lr·sign (bias correction), total ≈ 2·lr
  opt.step(p, 0.1, 2);
  EXPECT_NEAR(w[0], -0.2f, 1e-5);
  EXPECT_NEAR(w[1], 0.2f, 1e-5);
}

// ------------------------------------------------------------------------------- determinism
std::vector<nlohmann::json> without_timing(std::vector<nlohmann::json> log) {
  for (auto& j : log) {
    j.erase("tokens_per_s");
    j.erase("elapsed_s");
  }
  return log;
}

TEST(Determinism, SameSeedGivesIdenticalLogs) {
  TmpDir a, b, c;
  std::vector<std::string> extra = {"train.steps=8", "train.eval_every=4"};
  train_run(tiny_run(a.str(), "moe", extra), quiet());
  train_run(tiny_run(b.str(), "moe", extra), quiet());
  auto la = without_timing(read_log(a.str())), lb = without_timing(read_log(b.str()));
  ASSERT_EQ(la.size(), 10u);  // 8 steps + 2 evals
  EXPECT_EQ(la, lb);
  EXPECT_TRUE(la[0].contains("routing"));
  // a different seed gives a different run
  extra.push_back("train.seed=8");
  train_run(tiny_run(c.str(), "moe", extra), quiet());
  auto lc = without_timing(read_log(c.str()));
  EXPECT_NE(la[0].at("loss").get<double>(), lc[0].at("loss").get<double>());
}

// -------------------------------------------------------------------------------- config errors
TEST(TrainConfigErrors, BadValuesNameTheKey) {
  EXPECT_ERROR(run_config_read("", {"train.lrr=1"}), "unknown config key 'train.lrr'");
  EXPECT_ERROR(run_config_read("", {"optim.lr=1"}), "optim");
  EXPECT_ERROR(run_config_read("", {"train.batch_size=-1"}), "train.batch_size = -1 must be in [1, 65536]");
  EXPECT_ERROR(run_config_read("", {"train.grad_accum=0"}), "train.grad_accum = 0 must be in [1, 65536]");
  EXPECT_ERROR(run_config_read("", {"train.seq_len=512"}), "exceeds model.max_seq_len");
  EXPECT_ERROR(run_config_read("", {"train.beta2=1.0"}), "beta2");
  EXPECT_ERROR(run_config_read("", {"train.lr=\"fast\""}), "train.lr must be a number");
}

TEST(TrainErrors, TokenizerLargerThanModelVocab) {
  TmpDir out;
  EXPECT_ERROR(train_run(tiny_run(out.str(), "dense", {"model.vocab_size=100"}), quiet()),
               "has 300 tokens but model.vocab_size is 100");
}

}  // namespace
