// defines: tests of src/eval scoring tasks — batched log-likelihood scoring against a naive
// one-sequence-at-a-time loop (padding, mixed lengths, truncation, dense and MoE), the context /
// continuation tokenization boundary (with and without a dummy-prefix tokenizer), acc vs acc_norm,
// JSONL loader errors, minimal pairs, the cloze builder (held-out documents only, same-document
// distractors, determinism, agreement with data_prepare's val.bin) and `mohge eval` end to end.
#include <gtest/gtest.h>

#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "data/documents.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "eval/cloze.h"
#include "eval/score.h"
#include "eval/tasks.h"
#include "model/model.h"
#include "model/model_io.h"
#include "test_util.h"

namespace sentencepiece::logging {
int GetMinLogLevel();
void SetMinLogLevel(int v);
}  // namespace sentencepiece::logging

namespace fs = std::filesystem;
using namespace mohge;

namespace {

// Single-threaded unless OMP_NUM_THREADS is set (the shared machine is busy).
const bool kSingleThreaded = test::single_threaded_unless_set();

using test::TmpDir;
constexpr auto q = test::shell_quote;

// `mohge <args>` with one OpenMP thread, output captured.
test::CommandResult mohge_cli(const std::string& args) { return test::run_mohge(args, 60, "OMP_NUM_THREADS=1"); }

// ----------------------------------------------------------------------------- synthetic corpus
// Documents of 5-12 sentences from a small grammar; some sentences start a new line, so both
// separators occur. Every sentence has >= 4 words.
std::string make_corpus(int docs, uint64_t seed) {
  static const char* dets[] = {"the", "a", "every", "one"};
  static const char* adjs[] = {"red", "small", "old", "happy", "green", "quiet"};
  static const char* nouns[] = {"cat", "dog", "bird", "house", "river", "tree", "child", "farmer", "stone", "book"};
  static const char* verbs[] = {"sees", "finds", "likes", "carries", "watches", "follows"};
  std::mt19937_64 rng(seed);
  auto pick = [&](auto& arr) { return std::string(arr[rng() % std::size(arr)]); };
  std::string out;
  for (int d = 0; d < docs; d++) {
    const int n = 5 + (int)(rng() % 8);
    for (int s = 0; s < n; s++) {
      std::string sent = rng() % 2 ? pick(dets) + " " + pick(adjs) + " " + pick(nouns) + " " + pick(verbs) + " " +
                                         pick(dets) + " " + pick(nouns) + "."
                                   : pick(dets) + " " + pick(nouns) + " " + pick(verbs) + " " + pick(dets) + " " +
                                         pick(adjs) + " " + pick(nouns) + "?";
      sent[0] = (char)std::toupper(sent[0]);
      if (s) out += rng() % 4 == 0 ? "\n" : " ";
      out += sent;
    }
    out += "\n\n";
  }
  return out;
}

ModelConfig tiny_model(const std::string& kind, int max_seq_len = 64) { return test::tiny_model_config(kind, max_seq_len); }

// Built once per process: corpus (120 documents) -> tokenizer (vocab 300) -> a dense checkpoint
// with the tokenizer inside.
struct Env : test::CorpusFixture {
  std::string ck;
};

const Env& env() {
  static Env e = [] {
    Env v = test::make_corpus_fixture<Env>(make_corpus(120, 7), {.tag = "env"});
    v.ck = *v.dir / "ck";
    fs::create_directories(v.ck);
    Model m(tiny_model("dense"));
    m.init_weights(11);
    model_save(v.ck, m);
    fs::copy_file(v.tokenizer, v.ck + "/tokenizer.model");
    return v;
  }();
  return e;
}

const Tokenizer& tok() {
  static Tokenizer t = Tokenizer::load(env().tokenizer);
  return t;
}

// Σ log softmax over the continuation, one sequence, one forward of exactly its length, float64.
double naive_logprob(const Model& m, const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont) {
  std::vector<int32_t> full = ctx;
  full.insert(full.end(), cont.begin(), cont.end());
  const int T = (int)full.size() - 1, V = m.cfg.vocab_size;
  Context c(m, Mode::eval);
  m.forward(c, full.data(), nullptr, 1, T);
  const float* z = c.logits();
  double sum = 0;
  for (size_t i = ctx.size(); i < full.size(); i++) {
    const float* row = z + (i - 1) * V;
    double mx = row[0];
    for (int v = 1; v < V; v++) mx = std::max(mx, (double)row[v]);
    double se = 0;
    for (int v = 0; v < V; v++) se += std::exp((double)row[v] - mx);
    sum += (double)row[full[i]] - mx - std::log(se);
  }
  return sum;
}

std::vector<ScoreRequest> random_requests(int n, int max_ctx, int max_cont, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<ScoreRequest> reqs(n);
  for (auto& r : reqs) {
    r.context.resize(1 + rng() % max_ctx);
    r.continuation.resize(1 + rng() % max_cont);
    for (auto& t : r.context) t = (int32_t)(rng() % 320);
    for (auto& t : r.continuation) t = (int32_t)(rng() % 320);
  }
  return reqs;
}

// ------------------------------------------------------------------------------------ scoring
class EvalBatchedScoring : public ::testing::TestWithParam<std::string> {};

TEST_P(EvalBatchedScoring, EqualsOneSequenceAtATime) {
  Model m(tiny_model(GetParam()));
  m.init_weights(5);
  // lengths 2..40 (< max_seq_len 64): many different lengths, so most rows are padded
  auto reqs = random_requests(23, 30, 10, 99);
  std::vector<double> expect;
  for (auto& r : reqs) expect.push_back(naive_logprob(m, r.context, r.continuation));
  for (int bs : {1, 3, 8, 64}) {
    ScoreStats st;
    auto got = score_continuations(m, reqs, bs, &st);
    ASSERT_EQ(got.size(), reqs.size());
    EXPECT_EQ(st.batches, (reqs.size() + bs - 1) / bs);
    EXPECT_EQ(st.truncated, 0u);
    for (size_t i = 0; i < reqs.size(); i++) {
      EXPECT_NEAR(got[i].logprob, expect[i], 1e-4) << "request " << i << " batch size " << bs;
      EXPECT_EQ(got[i].tokens, (int)reqs[i].continuation.size());
      EXPECT_FALSE(got[i].truncated);
      EXPECT_LT(got[i].logprob, 0.0);
    }
    if (bs > 1) {
      EXPECT_GT(st.batch_tokens, st.scored_tokens) << "the batches must have been padded";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DenseAndMoe, EvalBatchedScoring, ::testing::Values("dense", "mohge"));

TEST(EvalScoring, LongSequencesKeepTheirLastMaxSeqLenPlusOneTokens) {
  Model m(tiny_model("dense", 16));
  m.init_weights(6);
  std::mt19937_64 rng(4);
  auto toks = [&](int n) {
    std::vector<int32_t> v(n);
    for (auto& t : v) t = (int32_t)(rng() % 320);
    return v;
  };
  std::vector<ScoreRequest> reqs = {{toks(30), toks(5)},   // context cut from the left
                                    {toks(3), toks(20)},   // the continuation itself is too long
                                    {toks(4), toks(3)}};   // fits
  auto got = score_continuations(m, reqs, 2);
  // 17 tokens kept: 12 context + 5 continuation
  std::vector<int32_t> ctx0(reqs[0].context.end() - 12, reqs[0].context.end());
  EXPECT_TRUE(got[0].truncated);
  EXPECT_EQ(got[0].tokens, 5);
  EXPECT_NEAR(got[0].logprob, naive_logprob(m, ctx0, reqs[0].continuation), 1e-4);
  // 17 tokens kept, all continuation: the first has nothing before it, 16 are scored
  std::vector<int32_t> c1(reqs[1].continuation.end() - 17, reqs[1].continuation.end());
  EXPECT_TRUE(got[1].truncated);
  EXPECT_EQ(got[1].tokens, 16);
  EXPECT_NEAR(got[1].logprob, naive_logprob(m, {c1[0]}, std::vector<int32_t>(c1.begin() + 1, c1.end())), 1e-4);
  EXPECT_FALSE(got[2].truncated);
  EXPECT_NEAR(got[2].logprob, naive_logprob(m, reqs[2].context, reqs[2].continuation), 1e-4);
}

TEST(EvalScoring, GreedyFlagAndBadRequests) {
  Model m(tiny_model("dense"));
  m.init_weights(8);
  std::vector<int32_t> ctx = {5, 9, 17};
  Context c(m, Mode::eval);
  m.forward(c, ctx.data(), nullptr, 1, 3);
  const float* z = c.logits() + 2 * 320;
  const int32_t best = (int32_t)(std::max_element(z, z + 320) - z);
  auto got = score_continuations(m, {{ctx, {best}}, {ctx, {(int32_t)((best + 1) % 320)}}}, 2);
  EXPECT_TRUE(got[0].greedy);
  EXPECT_FALSE(got[1].greedy);
  EXPECT_GT(got[0].logprob, got[1].logprob);
  EXPECT_ERROR(score_continuations(m, {{{}, {1}}}, 1), "empty context");
  EXPECT_ERROR(score_continuations(m, {{{1}, {}}}, 1), "empty continuation");
  EXPECT_ERROR(score_continuations(m, {{{1}, {999}}}, 1), "outside the vocabulary");
}

// ------------------------------------------------------------------------------- tokenization
TEST(EvalTokenization, ContextAndContinuationSplitAtTheWordBoundary) {
  const Tokenizer& t = tok();
  EXPECT_FALSE(adds_dummy_prefix(t));
  const int start = start_token_id(t, "eos");
  EXPECT_EQ(start, t.eos_id());
  EXPECT_EQ(start_token_id(t, "bos"), t.bos_id());
  for (auto [ctx, cont] : std::vector<std::pair<std::string, std::string>>{
           {"The old cat sees", " the red dog."}, {"A child finds a book.", " Every bird likes one tree."},
           {"The farmer", "\nOne stone follows the river."}}) {
    EncodedPair p = encode_pair(t, ctx, cont, start);
    ASSERT_FALSE(p.context.empty());
    EXPECT_EQ(p.context[0], start);
    std::vector<int32_t> ctx_only(p.context.begin() + 1, p.context.end());
    EXPECT_EQ(ctx_only, t.encode(ctx));
    EXPECT_EQ(p.continuation, t.encode(cont));
    std::vector<int32_t> all = ctx_only;
    all.insert(all.end(), p.continuation.begin(), p.continuation.end());
    EXPECT_EQ(t.decode(all), ctx + cont);
    EXPECT_EQ(all, t.encode(ctx + cont)) << "a space-led continuation starts a new piece";
  }
  // the context's trailing space moves to the continuation
  EncodedPair a = encode_pair(t, "The old cat ", "sees the dog.", start);
  EncodedPair b = encode_pair(t, "The old cat", " sees the dog.", start);
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.continuation, b.continuation);
  // empty context: the start token alone
  EncodedPair e = encode_pair(t, "", "The cat.", start);
  EXPECT_EQ(e.context, std::vector<int32_t>{start});
  EXPECT_ERROR(encode_pair(t, "", "The cat.", -1), "empty context");
  EXPECT_ERROR(encode_pair(t, "x", "", start), "no tokens");
}

TEST(EvalTokenization, DummyPrefixTokenizerGetsNoSpuriousSpace) {
  // A LLaMA-2-like model: add_dummy_prefix, identity normalization, byte fallback.
  TmpDir d;
  {
    std::ofstream f(d / "text.txt");
    f << make_corpus(60, 3);
  }
  int saved = sentencepiece::logging::GetMinLogLevel();
  sentencepiece::logging::SetMinLogLevel(2);
  auto st = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + d / "text.txt" + " --model_prefix=" + d / "sp" +
      " --vocab_size=300 --model_type=bpe --byte_fallback=true --normalization_rule_name=identity"
      " --remove_extra_whitespaces=false --add_dummy_prefix=true --num_threads=1");
  sentencepiece::logging::SetMinLogLevel(saved);
  ASSERT_TRUE(st.ok()) << st.ToString();
  Tokenizer t = Tokenizer::load(d / "sp.model");
  ASSERT_TRUE(adds_dummy_prefix(t));
  const std::string ctx = "The old cat sees", cont = " the red dog.";
  std::vector<int32_t> natural = t.encode(ctx + cont), ctx_enc = t.encode(ctx);
  ASSERT_TRUE(std::equal(ctx_enc.begin(), ctx_enc.end(), natural.begin()));
  const std::vector<int32_t> natural_cont(natural.begin() + (ptrdiff_t)ctx_enc.size(), natural.end());
  EXPECT_NE(t.encode(cont), natural_cont) << "plain encoding gives the continuation a second \"▁\"";
  EncodedPair p = encode_pair(t, ctx, cont, t.eos_id());
  EXPECT_EQ(p.continuation, natural_cont);
  EXPECT_EQ(std::vector<int32_t>(p.context.begin() + 1, p.context.end()), ctx_enc);
}

// ------------------------------------------------------------------------------------ metrics
McItem item(std::vector<std::string> choices, int label) {
  McItem it;
  it.context = "ctx";
  it.choices = std::move(choices);
  it.label = label;
  return it;
}

TEST(EvalMetrics, AccAndAccNormDiffer) {
  // item 0: " a" (2 bytes, -3.0 → -1.5/byte) vs " much longer choice" (19 bytes, -5.7 → -0.3/byte)
  // acc picks choice 0, acc_norm choice 1; the label is 1.
  // item 1: both pick choice 0 = label. item 2: both pick choice 2, label 0.
  std::vector<McItem> items = {item({" a", " much longer choice"}, 1), item({" xx", " yy", " zz"}, 0),
                               item({" one", " two", " six"}, 0)};
  std::vector<std::vector<double>> ll = {{-3.0, -5.7}, {-1.0, -2.0, -3.0}, {-9.0, -9.0, -1.0}};
  McMetrics m = mc_metrics(items, ll);
  EXPECT_EQ(m.n, 3u);
  EXPECT_DOUBLE_EQ(m.acc, 1.0 / 3);
  EXPECT_DOUBLE_EQ(m.acc_norm, 2.0 / 3);
  EXPECT_NEAR(m.acc_stderr, std::sqrt((1.0 / 3) * (2.0 / 3) / 2), 1e-12);
  // a tie goes to the first choice
  EXPECT_DOUBLE_EQ(mc_metrics({item({" p", " q"}, 0)}, {{-2.0, -2.0}}).acc, 1.0);
  EXPECT_DOUBLE_EQ(mc_metrics({item({" p", " q"}, 1)}, {{-2.0, -2.0}}).acc, 0.0);
  // UTF-8 bytes, not characters: " é" is 3 bytes
  McMetrics u = mc_metrics({item({" \xC3\xA9", " ab"}, 0)}, {{-3.0, -3.3}});
  EXPECT_DOUBLE_EQ(u.acc, 1.0);       // -3.0 > -3.3
  EXPECT_DOUBLE_EQ(u.acc_norm, 1.0);  // -1.0 > -1.1
  EXPECT_ERROR(mc_metrics(items, {{-1.0}}), "score lists");
}

TEST(EvalMetrics, EvaluateMcMatchesScoresComputedByHand) {
  auto model = model_load(env().ck);
  const Tokenizer& t = tok();
  std::vector<McItem> items = {
      item({" the red dog.", " a quiet farmer watches every green stone.", " one tree."}, 1),
      item({" finds a book?", " likes the river."}, 0),
      item({"\nA cat.", " Every old child follows one small bird."}, 1)};
  items[0].context = "The old cat sees";
  items[1].context = "A farmer ";
  items[2].context = "The happy house carries a tree.";
  TaskOptions opt;
  opt.batch_size = 4;
  opt.start_token = start_token_id(t, "eos");
  McEval r = evaluate_mc(*model, t, items, opt);
  ASSERT_EQ(r.loglik.size(), 3u);
  uint64_t hit = 0, hit_norm = 0;
  for (size_t i = 0; i < items.size(); i++) {
    size_t best = 0, best_norm = 0;
    for (size_t j = 0; j < items[i].choices.size(); j++) {
      EncodedPair p = encode_pair(t, items[i].context, items[i].choices[j], opt.start_token);
      const double ll = naive_logprob(*model, p.context, p.continuation);
      EXPECT_NEAR(r.loglik[i][j], ll, 1e-4);
      if (r.loglik[i][j] > r.loglik[i][best]) best = j;
      if (r.loglik[i][j] / items[i].choices[j].size() > r.loglik[i][best_norm] / items[i].choices[best_norm].size())
        best_norm = j;
    }
    hit += best == (size_t)items[i].label;
    hit_norm += best_norm == (size_t)items[i].label;
  }
  EXPECT_DOUBLE_EQ(r.metrics.acc, hit / 3.0);
  EXPECT_DOUBLE_EQ(r.metrics.acc_norm, hit_norm / 3.0);
  EXPECT_EQ(r.stats.sequences, 7u);
}

TEST(EvalMetrics, MinimalPairs) {
  EXPECT_DOUBLE_EQ(pairs_accuracy({-1, -5, -3, -2}, {-2, -4, -3, -9}), 0.5);  // a tie is not a win
  EXPECT_DOUBLE_EQ(pairs_accuracy({}, {}), 0.0);
  EXPECT_ERROR(pairs_accuracy({-1}, {}), "pairs_accuracy");

  auto model = model_load(env().ck);
  const Tokenizer& t = tok();
  std::vector<PairItem> items = {{"The cat sees the dog.", "The cat see the dog.", "a"},
                                 {"A child likes one book.", "A child like one book.", "b"},
                                 {"Every bird finds a tree.", "Every bird finds a tree.", "c"}};
  TaskOptions opt;
  opt.batch_size = 5;
  opt.start_token = start_token_id(t, "eos");
  PairsEval r = evaluate_pairs(*model, t, items, opt);
  ASSERT_EQ(r.n, 3u);
  int wins = 0;
  for (size_t i = 0; i < items.size(); i++) {
    double g = naive_logprob(*model, {opt.start_token}, t.encode(items[i].good));
    double b = naive_logprob(*model, {opt.start_token}, t.encode(items[i].bad));
    EXPECT_NEAR(r.good[i], g, 1e-4);
    EXPECT_NEAR(r.bad[i], b, 1e-4);
    wins += r.good[i] > r.bad[i];
  }
  EXPECT_EQ(r.good[2], r.bad[2]) << "identical sentences score identically";
  EXPECT_DOUBLE_EQ(r.acc, wins / 3.0);
  EXPECT_LE(r.acc, 2.0 / 3);
  opt.start_token = -1;
  EXPECT_ERROR(evaluate_pairs(*model, t, items, opt), "start token");
}

// ------------------------------------------------------------------------------------ loaders
TEST(EvalLoaders, MultipleChoiceJsonl) {
  TmpDir d;
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(d / name) << text;
    return d / name;
  };
  std::string ok = write("ok.jsonl",
                         "{\"context\": \"Q: 2+2?\\nA:\", \"choices\": [\" 4\", \" 5\"], \"label\": 0, \"id\": 7}\n"
                         "\n"
                         "{\"context\": \"\", \"choices\": [\"x y\", \"z\", \"w\"], \"label\": \"2\"}\r\n");
  auto items = load_mc_jsonl(ok);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].context, "Q: 2+2?\nA:");
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{" 4", " 5"}));
  EXPECT_EQ(items[1].label, 2);
  EXPECT_EQ(items[1].where, ok + ":3");

  const std::string good = "{\"context\": \"c\", \"choices\": [\" a\", \" b\"], \"label\": 1}\n";
  std::string f = write("malformed.jsonl", good + good + "{\"context\": \"c\", \"choices\": [\" a\"\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":3: malformed JSON");
  f = write("range.jsonl", good + "{\"context\": \"c\", \"choices\": [\" a\", \" b\"], \"label\": 2}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":2: label 2 out of range for 2 choices");
  f = write("neg.jsonl", "{\"context\": \"c\", \"choices\": [\" a\", \" b\"], \"label\": -1}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: label -1 out of range");
  f = write("empty_choices.jsonl", "{\"context\": \"c\", \"choices\": [], \"label\": 0}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: \"choices\" has 0 entries");
  f = write("empty_choice.jsonl", "{\"context\": \"c\", \"choices\": [\" a\", \"\"], \"label\": 0}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: choice 1 is an empty string");
  f = write("nonstring.jsonl", "{\"context\": \"c\", \"choices\": [\" a\", 3], \"label\": 0}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: choice 1 must be a string");
  f = write("nolabel.jsonl", "{\"context\": \"c\", \"choices\": [\" a\", \" b\"]}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: missing key \"label\"");
  f = write("floatlabel.jsonl", "{\"context\": \"c\", \"choices\": [\" a\", \" b\"], \"label\": 1.5}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: \"label\" must be an integer");
  f = write("nocontext.jsonl", "{\"choices\": [\" a\", \" b\"], \"label\": 0}\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: missing key \"context\"");
  f = write("array.jsonl", "[1, 2]\n");
  EXPECT_ERROR(load_mc_jsonl(f), f + ":1: expected a JSON object");
  f = write("blank.jsonl", "\n  \n");
  EXPECT_ERROR(load_mc_jsonl(f), "holds no items");
  EXPECT_ERROR(load_mc_jsonl(d / "missing.jsonl"), d / "missing.jsonl");
  EXPECT_ERROR(load_mc_jsonl(d.str()), "is a directory");

  // write -> load round trip, extras kept in the file but ignored by the loader
  write_mc_jsonl(d / "rt.jsonl", items, {{{"doc", 1}}, {{"doc", 2}}});
  auto back = load_mc_jsonl(d / "rt.jsonl");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].choices, items[1].choices);
  EXPECT_EQ(back[1].label, 2);
  EXPECT_NE(read_file_text(d / "rt.jsonl").find("\"doc\":2"), std::string::npos);
}

TEST(EvalLoaders, MinimalPairsJsonl) {
  TmpDir d;
  std::ofstream(d / "p.jsonl") << "{\"sentence_good\": \"A b.\", \"sentence_bad\": \"B a.\", \"UID\": \"x\"}\n";
  auto p = load_pairs_jsonl(d / "p.jsonl");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].good, "A b.");
  EXPECT_EQ(p[0].bad, "B a.");
  std::ofstream(d / "bad.jsonl") << "{\"sentence_good\": \"A b.\", \"sentence_bad\": \"B a.\"}\n"
                                 << "{\"sentence_good\": \"A b.\"}\n";
  EXPECT_ERROR(load_pairs_jsonl(d / "bad.jsonl"), d / "bad.jsonl" + ":2: missing key \"sentence_bad\"");
  std::ofstream(d / "bad2.jsonl") << "{\"sentence_good\": 3, \"sentence_bad\": \"B a.\"}\n";
  EXPECT_ERROR(load_pairs_jsonl(d / "bad2.jsonl"), ":1: \"sentence_good\" must be a string");
  std::ofstream(d / "bad3.jsonl") << "{\"sentence_good\": \"x\", \"sentence_bad\": \"B a.\"\n";
  EXPECT_ERROR(load_pairs_jsonl(d / "bad3.jsonl"), ":1: malformed JSON");
}

// -------------------------------------------------------------------------------------- cloze
TEST(EvalCloze, SentencesKeepLineStarts) {
  auto s = cloze_sentences("The cat sat. A dog ran!\nThe end came. Then more.");
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].text, "The cat sat.");
  EXPECT_TRUE(s[0].line_start);
  EXPECT_EQ(s[1].text, "A dog ran!");
  EXPECT_FALSE(s[1].line_start);
  EXPECT_EQ(s[2].text, "The end came.");
  EXPECT_TRUE(s[2].line_start);
}

TEST(EvalCloze, ItemsComeFromHeldOutDocumentsWithSameDocumentDistractors) {
  const double vf = 0.25;
  const uint64_t split_seed = 1337;
  std::ifstream in(env().corpus);
  const std::vector<std::string> docs = read_documents(in);
  ASSERT_EQ(docs.size(), 120u);

  // held_out_documents = exactly the documents is_val_document selects
  auto held = held_out_documents({env().corpus}, split_seed, vf);
  std::set<uint64_t> expect_val, got_val;
  for (uint64_t i = 0; i < docs.size(); i++)
    if (is_val_document(split_seed, i, vf)) expect_val.insert(i);
  for (auto& h : held) got_val.insert(h.index);
  EXPECT_EQ(got_val, expect_val);
  ASSERT_GE(expect_val.size(), 10u);

  ClozeOptions opt;
  opt.n = 40;
  opt.seed = 5;
  opt.split_seed = split_seed;
  opt.val_fraction = vf;
  auto items = build_cloze_from_corpus({env().corpus}, opt);
  ASSERT_EQ(items.size(), 40u);
  std::set<std::pair<uint64_t, int>> positions;
  std::set<uint64_t> docs_used;
  for (const auto& it : items) {
    SCOPED_TRACE(it.mc.where);
    EXPECT_TRUE(is_val_document(split_seed, it.doc_index, vf));
    docs_used.insert(it.doc_index);
    EXPECT_TRUE(positions.insert({it.doc_index, it.target}).second) << "a position used twice";
    const auto sents = cloze_sentences(docs.at(it.doc_index));
    ASSERT_EQ(it.mc.choices.size(), 4u);
    ASSERT_EQ(it.choice_sentences.size(), 4u);
    ASSERT_GE(it.mc.label, 0);
    ASSERT_LT(it.mc.label, 4);
    EXPECT_EQ(it.choice_sentences[it.mc.label], it.target);
    ASSERT_GE(it.target, 3);
    ASSERT_LT(it.target, (int)sents.size());
    // context: the 3 sentences before the target, joined as in the document
    std::string ctx = sents[it.target - 3].text;
    for (int j = it.target - 2; j < it.target; j++) ctx += (sents[j].line_start ? "\n" : " ") + sents[j].text;
    EXPECT_EQ(it.mc.context, ctx);
    const std::string sep = sents[it.target].line_start ? "\n" : " ";
    EXPECT_EQ(it.mc.choices[it.mc.label], sep + sents[it.target].text) << "the true sentence is a choice";
    std::set<std::string> texts;
    for (int c = 0; c < 4; c++) {
      const int s = it.choice_sentences[c];
      ASSERT_GE(s, 0);
      ASSERT_LT(s, (int)sents.size());
      EXPECT_EQ(it.mc.choices[c], sep + sents[s].text) << "every choice is a sentence of the same document";
      if (c != it.mc.label) {
        EXPECT_TRUE(s > it.target || s < it.target - 3) << "distractor from the context window";
      }
      texts.insert(it.mc.choices[c]);
    }
    EXPECT_EQ(texts.size(), 4u) << "choices are distinct";
  }
  EXPECT_GE(docs_used.size(), 5u) << "items are spread over documents";
  std::map<int, int> label_counts;
  for (auto& it : items) label_counts[it.mc.label]++;
  EXPECT_GE(label_counts.size(), 3u) << "the true sentence is not always in the same slot";

  // deterministic per seed; another seed gives other items
  auto again = build_cloze_from_corpus({env().corpus}, opt);
  ASSERT_EQ(again.size(), items.size());
  for (size_t i = 0; i < items.size(); i++) {
    EXPECT_EQ(again[i].mc.context, items[i].mc.context);
    EXPECT_EQ(again[i].mc.choices, items[i].mc.choices);
    EXPECT_EQ(again[i].mc.label, items[i].mc.label);
  }
  opt.seed = 6;
  auto other = build_cloze_from_corpus({env().corpus}, opt);
  int same = 0;
  for (size_t i = 0; i < std::min(other.size(), items.size()); i++)
    same += other[i].mc.choices == items[i].mc.choices;
  EXPECT_LT(same, 10);
  // more items than the held-out text allows: all of them, no error
  opt.n = 100000;
  auto all = build_cloze_from_corpus({env().corpus}, opt);
  EXPECT_GT(all.size(), 40u);
  EXPECT_LT(all.size(), 100000u);
}

TEST(EvalCloze, SplitMatchesDataPrepareValShard) {
  TmpDir d;
  // 3 documents: with this seed and fraction none is drawn for val, so data_prepare moves the last
  // one there; the cloze task must follow. Then the fixture corpus with the default fraction.
  std::ofstream(d / "small.txt") << "A b c d. E f g h.\n\nI j k l. M n o p.\n\nQ r s t. U v w x.\n";
  for (uint64_t i = 0; i < 3; i++) ASSERT_FALSE(is_val_document(1337, i, 0.01));
  auto small = held_out_documents({d / "small.txt"}, 1337, 0.01);
  ASSERT_EQ(small.size(), 1u);
  EXPECT_EQ(small[0].index, 2u);
  EXPECT_EQ(small[0].sentences.size(), 2u);
  for (auto [file, vf] : {std::pair<std::string, double>{d / "small.txt", 0.01}, {env().corpus, 0.05}}) {
    SCOPED_TRACE(file);
    data_prepare({file}, tok(), d / "prep", vf, 1337, false);
    TokenShard val(d / "prep/val.bin");
    std::vector<int32_t> shard(val.size());
    val.read(0, val.size(), shard.data());
    std::ifstream in(file);
    auto docs = read_documents(in);
    std::vector<int32_t> expect;
    for (auto& h : held_out_documents({file}, 1337, vf)) {
      auto e = tok().encode(docs.at(h.index));
      expect.insert(expect.end(), e.begin(), e.end());
      expect.push_back(tok().eos_id());
    }
    EXPECT_EQ(shard, expect);
  }
}

TEST(EvalCloze, Errors) {
  TmpDir d;
  EXPECT_ERROR(held_out_documents({d / "nope.txt"}, 1, 0.05), "nope.txt");
  std::ofstream(d / "short.txt") << "One two three four.\n\nFive six seven eight.\n";
  ClozeOptions opt;
  opt.val_fraction = 0.5;
  EXPECT_ERROR(build_cloze_from_corpus({d / "short.txt"}, opt), "no item can be built");
  opt.n = 0;
  EXPECT_ERROR(build_cloze({}, opt), "number of items");
}

// ---------------------------------------------------------------------------------- end to end
TEST(EvalEndToEnd, ClozeOnATinyModelInProcess) {
  auto model = model_load(env().ck);
  ClozeOptions co;
  co.n = 16;
  co.val_fraction = 0.25;
  auto items = build_cloze_from_corpus({env().corpus}, co);
  ASSERT_EQ(items.size(), 16u);
  std::vector<McItem> mc;
  for (auto& it : items) mc.push_back(it.mc);
  TaskOptions opt;
  opt.batch_size = 8;
  opt.start_token = start_token_id(tok(), "eos");
  McEval r = evaluate_mc(*model, tok(), mc, opt);
  EXPECT_EQ(r.metrics.n, 16u);
  EXPECT_GE(r.metrics.acc, 0.0);
  EXPECT_LE(r.metrics.acc, 1.0);
  EXPECT_GE(r.metrics.acc_norm, 0.0);
  EXPECT_LE(r.metrics.acc_norm, 1.0);
  EXPECT_EQ(r.stats.sequences, 64u);
  EXPECT_EQ(r.stats.batches, 8u);
  for (auto& row : r.loglik)
    for (double v : row) EXPECT_TRUE(std::isfinite(v) && v < 0);
}

TEST(EvalEndToEnd, Cli) {
  TmpDir d;
  const std::string ck = q(env().ck), corpus = q(env().corpus);
  // export only (no checkpoint)
  test::CommandResult w = mohge_cli("eval --task cloze --corpus " + corpus + " --val-fraction 0.25 --n 12 --seed 3 --write " +
                          q(d / "items.jsonl"));
  ASSERT_EQ(w.rc, 0) << w.err;
  auto wj = nlohmann::json::parse(w.out);
  EXPECT_EQ(wj.at("n").get<int>(), 12);
  auto items = load_mc_jsonl(d / "items.jsonl");
  ASSERT_EQ(items.size(), 12u);
  for (auto& it : items) EXPECT_EQ(it.choices.size(), 4u);

  // cloze on the checkpoint == mc on the exported file (same items, same scores)
  test::CommandResult c = mohge_cli("eval --checkpoint " + ck + " --task cloze --corpus " + corpus +
                          " --val-fraction 0.25 --n 12 --seed 3 --batch-size 5");
  ASSERT_EQ(c.rc, 0) << c.err;
  auto cj = nlohmann::json::parse(c.out);
  EXPECT_EQ(cj.at("task"), "cloze");
  EXPECT_EQ(cj.at("checkpoint").get<std::string>(), env().ck);
  EXPECT_EQ(cj.at("n").get<int>(), 12);
  const double acc = cj.at("metrics").at("acc").get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  test::CommandResult m = mohge_cli("eval --checkpoint " + ck + " --task mc --data " + q(d / "items.jsonl"));
  ASSERT_EQ(m.rc, 0) << m.err;
  auto mj = nlohmann::json::parse(m.out);
  EXPECT_EQ(mj.at("task"), "mc");
  EXPECT_EQ(mj.at("n").get<int>(), 12);
  EXPECT_DOUBLE_EQ(mj.at("metrics").at("acc").get<double>(), acc);
  EXPECT_DOUBLE_EQ(mj.at("metrics").at("acc_norm").get<double>(), cj.at("metrics").at("acc_norm").get<double>());

  // in-process evaluation of the same file agrees
  auto model = model_load(env().ck);
  TaskOptions opt;
  opt.start_token = start_token_id(tok(), "eos");
  EXPECT_NEAR(evaluate_mc(*model, tok(), items, opt).metrics.acc, acc, 1e-12);

  // pairs, and --n taking the first items
  std::ofstream(d / "pairs.jsonl") << "{\"sentence_good\": \"The cat sees a dog.\", \"sentence_bad\": \"The cat see a dog.\"}\n"
                                   << "{\"sentence_good\": \"A bird likes one tree.\", \"sentence_bad\": \"A bird like one tree.\"}\n";
  test::CommandResult p = mohge_cli("eval --checkpoint " + ck + " --task pairs --data " + q(d / "pairs.jsonl") + " --n 1");
  ASSERT_EQ(p.rc, 0) << p.err;
  auto pj = nlohmann::json::parse(p.out);
  EXPECT_EQ(pj.at("n").get<int>(), 1);
  const double pacc = pj.at("metrics").at("acc").get<double>();
  EXPECT_TRUE(pacc == 0.0 || pacc == 1.0);

  // cloze --data PREPARED_DIR: corpus, split seed and val fraction from its meta.json
  data_prepare({env().corpus}, tok(), d / "prep", 0.25, 99, false);
  test::CommandResult pd = mohge_cli("eval --task cloze --data " + q(d / "prep") + " --n 8 --write " + q(d / "prep_items.jsonl"));
  ASSERT_EQ(pd.rc, 0) << pd.err;
  auto pdj = nlohmann::json::parse(pd.out);
  EXPECT_EQ(pdj.at("split_seed").get<uint64_t>(), 99u);
  EXPECT_EQ(pdj.at("val_fraction").get<double>(), 0.25);
  ClozeOptions co;
  co.n = 8;
  co.split_seed = 99;
  co.val_fraction = 0.25;
  auto expect_items = build_cloze_from_corpus({fs::absolute(env().corpus).string()}, co);
  auto written = load_mc_jsonl(d / "prep_items.jsonl");
  ASSERT_EQ(written.size(), expect_items.size());
  for (size_t i = 0; i < written.size(); i++) EXPECT_EQ(written[i].choices, expect_items[i].mc.choices);

  // the loss task keeps its output, under the common keys too
  test::CommandResult l = mohge_cli("eval --checkpoint " + ck + " --data " + q(d / "prep") + " --seq-len 16 --batch-size 4");
  ASSERT_EQ(l.rc, 0) << l.err;
  auto lj = nlohmann::json::parse(l.out);
  EXPECT_EQ(lj.at("task"), "loss");
  EXPECT_EQ(lj.at("metrics").at("loss").get<double>(), lj.at("loss").get<double>());
  EXPECT_EQ(lj.at("n").get<uint64_t>(), lj.at("tokens").get<uint64_t>());
  EXPECT_NEAR(lj.at("loss").get<double>(), std::log(320.0), 0.5);

  // errors: one line, naming file:line
  std::ofstream(d / "bad.jsonl") << "{\"context\": \"c\", \"choices\": [\" a\", \" b\"], \"label\": 0}\n"
                                 << "{\"context\": \"c\", \"choices\": [\" a\", \" b\"], \"label\": 7}\n";
  test::CommandResult e = mohge_cli("eval --checkpoint " + ck + " --task mc --data " + q(d / "bad.jsonl"));
  EXPECT_EQ(e.rc, 1);
  EXPECT_EQ(e.err, "error: " + d / "bad.jsonl" + ":2: label 7 out of range for 2 choices\n");
  e = mohge_cli("eval --checkpoint " + ck + " --task mc --data " + q(d / "none.jsonl"));
  EXPECT_NE(e.err.find("none.jsonl"), std::string::npos) << e.err;
  e = mohge_cli("eval --checkpoint " + ck + " --task mc");
  EXPECT_NE(e.err.find("--data is required"), std::string::npos) << e.err;
  e = mohge_cli("eval --task cloze --corpus " + corpus);
  EXPECT_NE(e.err.find("--checkpoint is required"), std::string::npos) << e.err;
  e = mohge_cli("eval --checkpoint " + ck + " --task bogus --data x");
  EXPECT_NE(e.rc, 0);
  EXPECT_NE(e.err.find("--task"), std::string::npos) << e.err;
}

}  // namespace
