// defines: tests of `mohge analyze` (src/eval/analyze, report_html, svg_chart): the 1-D Wasserstein
// helper against hand-computed cases, log2 frequency buckets, a synthetic routing with known answers
// (balanced inside groups → equal all_size loads; rare tokens → large experts), end-to-end analysis of
// tiny mohge / hmoe (top-p) / moe checkpoints (files, JSON consistency with routing_metrics and the
// in-process model, training-log series), errors, the CLI, and a headless-Chromium render check.
// A small corpus, a SentencePiece tokenizer (vocab 300) and prepared shards are built once per process.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "data/dataloader.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "eval/analyze.h"
#include "eval/report_html.h"
#include "eval/svg_chart.h"
#include "model/model.h"
#include "model/model_io.h"
#include "moe/metrics.h"
#include "train/routing_log.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mohge;
using nlohmann::json;

namespace {

const bool kSingleThreaded = test::single_threaded_unless_set();

using test::TmpDir;
constexpr auto q = test::shell_quote;

// ------------------------------------------------------------------------------ shared fixture
std::string make_corpus(int docs, uint64_t seed) {
  static const char* common[] = {"the", "a", "of", "and", "to", "in", "is", "it"};
  static const char* words[] = {"cat",    "dog",   "bird",  "house",  "river",  "tree",   "child", "farmer",
                                "stone",  "book",  "garden", "window", "sees",   "finds",  "likes", "carries",
                                "quartz", "zephyr", "lichen", "fjord",  "oboe",   "sphinx", "kiosk", "nymph"};
  std::mt19937_64 rng(seed);
  std::string out;
  for (int d = 0; d < docs; d++) {
    const int n = 10 + (int)(rng() % 30);
    for (int w = 0; w < n; w++) {
      // Zipf-ish: common words often, the rest rarely (rarer the later in the list)
      std::string word = rng() % 2 ? common[rng() % std::size(common)]
                                   : words[std::min<size_t>(std::size(words) - 1, (rng() % 8) * (rng() % 4))];
      out += (w ? " " : "") + word;
    }
    out += ".\n\n";
  }
  return out;
}

ModelConfig tiny(const std::string& kind) {
  ModelConfig c;
  c.vocab_size = 320;
  c.hidden_size = 32;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.intermediate_size = 48;
  c.max_seq_len = 32;
  c.ffn_kind = ffn_kind_from_string(kind);
  MoeConfig& m = c.moe;
  if (kind == "mohge") {
    m.kind = MoeKind::mohge;
    m.router = RouterKind::two_level;
    m.num_expert_groups = 3, m.experts_per_group = 2, m.num_experts = 6;
    m.expert_widths = {8, 8, 16, 16, 24, 24};
    m.topk_group = 2, m.num_experts_per_tok = 3, m.max_experts_per_tok = 3;
    m.shared_expert_width = 8;
    c.first_dense_layers = 1;
  } else if (kind == "hmoe") {
    m.kind = MoeKind::hmoe;
    m.router = RouterKind::top_p;
    m.num_experts = 4;
    m.expert_widths = {8, 16, 24, 32};
    m.top_p = 0.6, m.max_experts_per_tok = 4;
  } else if (kind == "moe") {
    m.kind = MoeKind::moe;
    m.router = RouterKind::top_k;
    m.num_experts = 4;
    m.expert_widths = {16, 16, 16, 16};
    m.num_experts_per_tok = 2;
  }
  c.validate();
  return c;
}

struct Env : test::CorpusFixture {
  std::string mohge_run, mohge_ck, hmoe_ck, moe_ck, dense_ck;
  int log_records = 0;
};

// A run dir <run>/checkpoints/step_00000004 with a log.jsonl of real RoutingLog records (4 steps, a
// resumed duplicate of step 2, an eval record and a half-written last line).
void make_run(Env& v, const std::string& run, Model& m) {
  const std::string ck = run + "/checkpoints/step_00000004";
  fs::create_directories(ck);
  model_save(ck, m);
  fs::copy_file(v.tokenizer, ck + "/tokenizer.model");
  std::ofstream log(run + "/log.jsonl");
  Context ctx(m, Mode::train);
  RoutingLog rl(ctx, 2);
  DataLoader dl(v.data_dir + "/train.bin", 2, 16, 3);
  std::vector<int32_t> in(32), tg(32);
  for (int step : {1, 2, 2, 3, 4}) {
    m.begin_step();
    rl.begin_step();
    dl.next_batch(in.data(), tg.data());
    const double loss = m.forward(ctx, in.data(), tg.data(), 2, 16, step);
    rl.add_micro_batch();
    json rec = {{"step", step}, {"loss", loss}, {"lm_loss", loss}, {"lr", 1e-3}};
    json r = rl.step_record();
    r["step"] = step;
    rec["routing"] = r;
    log << rec.dump() << "\n";
    if (step == 2) log << json{{"step", 2}, {"val_loss", 5.5}, {"val_ppl", 245.0}, {"val_tokens", 64}}.dump() << "\n";
  }
  log << "{\"step\": 5, \"loss\": 1.2, \"rout";  // a job still writing
  v.log_records = 4;
}

const Env& env() {
  static Env e = [] {
    Env v = test::make_corpus_fixture<Env>(make_corpus(300, 7), {.val_fraction = 0.2, .tag = "env"});
    {
      Model m(tiny("mohge"));
      m.init_weights(11);
      v.mohge_run = *v.dir / "run_mohge";
      make_run(v, v.mohge_run, m);
      v.mohge_ck = v.mohge_run + "/checkpoints/step_00000004";
    }
    for (auto [kind, path] : {std::pair<std::string, std::string*>{"hmoe", &v.hmoe_ck}, {"moe", &v.moe_ck}, {"dense", &v.dense_ck}}) {
      *path = *v.dir / ("ck_" + kind);
      fs::create_directories(*path);
      Model m(tiny(kind));
      m.init_weights(kind.size());
      model_save(*path, m);
      if (kind != "moe") fs::copy_file(v.tokenizer, *path + "/tokenizer.model");  // moe: no tokenizer (ids only)
    }
    return v;
  }();
  return e;
}

AnalyzeOptions opts(const std::string& ck, const std::string& out, int batches = 3, int devices = 2) {
  AnalyzeOptions o;
  o.checkpoint = ck;
  o.data = env().data_dir;
  o.out_dir = out;
  o.batches = batches;
  o.batch_size = 2;
  o.seq_len = 16;
  o.devices = devices;
  return o;
}

std::vector<double> vec(const json& j) {
  std::vector<double> v;
  for (auto& x : j) v.push_back(x.is_number() ? x.get<double>() : NAN);
  return v;
}

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

// Every E×E matrix: symmetric, zero diagonal, non-negative (rows of unused experts are null).
void expect_distance_matrix(const json& m, int E, const std::string& what) {
  ASSERT_EQ((int)m.size(), E) << what;
  for (int a = 0; a < E; a++) {
    ASSERT_EQ((int)m[a].size(), E) << what;
    if (m[a][a].is_null()) continue;
    EXPECT_EQ(m[a][a].get<double>(), 0.0) << what << " diagonal " << a;
    for (int b = 0; b < E; b++) {
      if (m[a][b].is_null()) continue;
      EXPECT_GE(m[a][b].get<double>(), 0.0) << what;
      ASSERT_TRUE(m[b][a].is_number()) << what;
      EXPECT_DOUBLE_EQ(m[a][b].get<double>(), m[b][a].get<double>()) << what << " (" << a << "," << b << ")";
    }
  }
}

// ------------------------------------------------------------------------------- Wasserstein
TEST(Wasserstein, HandComputedCases) {
  EXPECT_DOUBLE_EQ(wasserstein1({1, 0, 0, 0}, {0, 0, 0, 1}), 3.0);            // δ0 vs δ3
  EXPECT_DOUBLE_EQ(wasserstein1({0.5, 0.5, 0, 0}, {0, 0, 0.5, 0.5}), 2.0);    // shift by 2
  EXPECT_DOUBLE_EQ(wasserstein1({1, 0, 0}, {0, 0.5, 0.5}), 1.5);              // CDFs: |1-0| + |1-.5|
  EXPECT_DOUBLE_EQ(wasserstein1({2, 2, 0, 0}, {0, 0, 7, 7}), 2.0);            // weights are normalised
  EXPECT_DOUBLE_EQ(wasserstein1({0.25, 0.5, 0.25}, {0.25, 0.5, 0.25}), 0.0);  // identical
  // uneven support: x = 0, 1, 10
  EXPECT_DOUBLE_EQ(wasserstein1({0, 1, 10}, {1, 0, 0}, {0, 0, 1}), 10.0);
  EXPECT_DOUBLE_EQ(wasserstein1({0, 1, 10}, {1, 1, 0}, {0, 1, 1}), 0.5 * 1 + 0.5 * 9);
  // symmetric
  EXPECT_DOUBLE_EQ(wasserstein1({0.1, 0.6, 0.3}, {0.5, 0.2, 0.3}), wasserstein1({0.5, 0.2, 0.3}, {0.1, 0.6, 0.3}));
  EXPECT_TRUE(std::isnan(wasserstein1({0, 0}, {1, 0})));  // no mass
  EXPECT_ERROR(wasserstein1({1, 0}, {1, 0, 0}), "weights");
  EXPECT_ERROR(wasserstein1({1, -1}, {1, 0}), "negative");
  EXPECT_ERROR(wasserstein1({0, 2, 1}, {1, 0, 0}, {0, 0, 1}), "ascending");
}

// For two samples of equal size, W1 = mean |sorted(a)_i − sorted(b)_i|.
TEST(Wasserstein, EqualsSortedSampleDistance) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 5; trial++) {
    std::vector<int> a(50), b(50);
    for (auto& x : a) x = (int)(rng() % 20);
    for (auto& x : b) x = (int)(rng() % 12) + 5;
    std::vector<double> ha(25, 0), hb(25, 0);
    for (int x : a) ha[x] += 1;
    for (int x : b) hb[x] += 1;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    double expect = 0;
    for (size_t i = 0; i < a.size(); i++) expect += std::abs(a[i] - b[i]) / 50.0;
    EXPECT_NEAR(wasserstein1(ha, hb), expect, 1e-12);
  }
}

TEST(Wasserstein, MatrixMatchesPairwise) {
  std::mt19937_64 rng(9);
  std::vector<double> x = {0, 0.5, 2, 2.5, 7};
  std::vector<std::vector<double>> d(4, std::vector<double>(5));
  for (auto& row : d)
    for (auto& v : row) v = (double)(rng() % 5);
  d[2].assign(5, 0.0);  // an expert that received nothing
  const auto m = wasserstein_matrix(x, d);
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++) {
      if (a == 2 || b == 2) {
        EXPECT_TRUE(std::isnan(m[a * 4 + b]));
        continue;
      }
      EXPECT_NEAR(m[a * 4 + b], wasserstein1(x, d[a], d[b]), 1e-12);
      EXPECT_EQ(m[a * 4 + b], m[b * 4 + a]);
    }
}

TEST(FrequencyBuckets, Log2Bins) {
  EXPECT_EQ(frequency_bucket_of(1), 0);
  EXPECT_EQ(frequency_bucket_of(2), 1);
  EXPECT_EQ(frequency_bucket_of(3), 1);
  EXPECT_EQ(frequency_bucket_of(4), 2);
  EXPECT_EQ(frequency_bucket_of(7), 2);
  EXPECT_EQ(frequency_bucket_of(8), 3);
  EXPECT_EQ(frequency_bucket_of(1023), 9);
  EXPECT_EQ(frequency_bucket_of(1024), 10);
  EXPECT_ERROR(frequency_bucket_of(0), "count");
}

TEST(SvgChart, EscapesLabelsAndNumbers) {
  EXPECT_EQ(svg::escape("<a & \"b\">'"), "&lt;a &amp; &quot;b&quot;&gt;&#39;");
  EXPECT_EQ(svg::fmt_num(1234567), "1.23M");
  EXPECT_EQ(svg::fmt_num(0.125), "0.125");
  EXPECT_EQ(svg::fmt_num(45000), "45k");
  svg::BarChart b;
  b.f = {"x<1>", "A & B", "x", "y", 400, 200, {}};
  b.labels = {"<0x0A>", "a"};
  b.values = {1, 2};
  const std::string s = svg::bar_chart(b);
  EXPECT_EQ(s.find("<0x0A>"), std::string::npos);
  EXPECT_NE(s.find("&lt;0x0A&gt;"), std::string::npos);
  EXPECT_NE(s.find("id=\"x&lt;1&gt;\""), std::string::npos);
  EXPECT_NE(s.find("A &amp; B"), std::string::npos);
  const auto t = svg::nice_ticks(0, 0.87);
  EXPECT_EQ(t.front(), 0.0);
  EXPECT_GE(t.back(), 0.87);
}

// ------------------------------------------------------------------- synthetic routing, known answers
// mohge 4 groups × 2 experts (widths 8, 16, 24, 32), one expert per token. Group g receives c_g tokens
// per expert (very uneven across groups, balanced inside each). Token ids are chosen so that group 0
// gets one very frequent token, group 3 only tokens seen once.
TEST(AnalyzeRouting, SyntheticBalancedGroupsAndFrequencyWidths) {
  ModelConfig c = tiny("mohge");
  c.first_dense_layers = 0;
  c.num_layers = 1;
  MoeConfig& m = c.moe;
  m.num_expert_groups = 4, m.experts_per_group = 2, m.num_experts = 8;
  m.expert_widths = {8, 8, 16, 16, 24, 24, 32, 32};
  m.topk_group = 1, m.num_experts_per_tok = 1;
  c.validate();
  const int counts[4] = {40, 12, 6, 3};
  Routing r;
  std::vector<int32_t> tokens;
  r.offsets = {0};
  r.tokens_per_expert.assign(8, 0);
  r.tokens_per_group.assign(4, 0);
  int unique = 100;
  for (int g = 0; g < 4; g++)
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < counts[g]; k++) {
        const int32_t id = g == 0 ? 10 : g == 1 ? 20 + k % 3 : g == 2 ? 30 + (i * 3 + k / 2) : unique++;
        tokens.push_back(id);
        r.expert.push_back(g * 2 + i);
        r.weight.push_back(1.0f);
        r.offsets.push_back((int)r.expert.size());
        r.tokens_per_expert[g * 2 + i]++;
        r.tokens_per_group[g]++;
      }
  r.T = (int)tokens.size();
  RoutingRecorder rec(c);
  rec.add_tokens(tokens.data(), r.T);  // what add() does after a real forward
  rec.add_layer(0, r, tokens.data());
  std::vector<double> freq(c.vocab_size, 0.0);
  for (int32_t t : tokens) freq[t] += 1;
  json a = analyze_routing(rec, freq, /*devices=*/2, nullptr);

  // shares
  const json& L = a["layers"][0];
  EXPECT_NEAR(sum(vec(L["expert_share"])), 1.0, 1e-12);
  EXPECT_NEAR(sum(vec(L["group_share"])), 1.0, 1e-12);
  EXPECT_NEAR(L["group_share"][0].get<double>(), 80.0 / 122.0, 1e-12);
  // activated params = routing_metrics on the same counts
  RoutingMetrics rm = routing_metrics(m, r, c.hidden_size, 2);
  EXPECT_DOUBLE_EQ(a["activated_params"]["experts_sum"].get<double>(), rm.activated_expert_params);
  // device loads: all_size balanced exactly (each device holds expert i of every group), contiguous not
  bool saw_all_size = false;
  for (auto& p : a["device_load"]["policies"]) {
    ASSERT_TRUE(p["ok"].get<bool>()) << p.dump();
    const auto rel = vec(p["relative_load"]);
    if (p["policy"] == "all_size") {
      saw_all_size = true;
      for (double v : rel) EXPECT_NEAR(v, 1.0, 1e-12);
      EXPECT_NEAR(p["max_over_mean"].get<double>(), 1.0, 1e-12);
    }
    if (p["policy"] == "contiguous") {
      EXPECT_GT(p["max_over_mean"].get<double>(), 1.3);
    }
  }
  EXPECT_TRUE(saw_all_size);

  // frequency buckets: group 3's tokens are seen once (bucket 0), group 2's twice (1), group 1's 8
  // times (3), group 0's one token 80 times (6) — and each bucket's width is its group's
  const json& fb = a["frequency_buckets"];
  ASSERT_EQ(fb["buckets"].size(), 4u) << fb["buckets"].dump();
  const int want_bucket[4] = {0, 1, 3, 6};
  const double want_width[4] = {32, 24, 16, 8};
  for (int i = 0; i < 4; i++) {
    EXPECT_EQ(fb["buckets"][i]["bucket"].get<int>(), want_bucket[i]);
    EXPECT_DOUBLE_EQ(fb["layers"][0]["mean_width_gate"][i].get<double>(), want_width[i]);
    EXPECT_DOUBLE_EQ(fb["layers"][0]["mean_width_assign"][i].get<double>(), want_width[i]);
    EXPECT_DOUBLE_EQ(fb["layers"][0]["experts_per_token"][i].get<double>(), 1.0);
    EXPECT_NEAR(sum(vec(fb["layers"][0]["expert_share"][i])), 1.0, 1e-12);
  }
  EXPECT_EQ(fb["buckets"][3]["analyzed_tokens"].get<double>(), 80.0);
  EXPECT_EQ(fb["buckets"][0]["distinct_tokens"].get<double>(), 6.0);

  // Wasserstein: both group-0 experts receive only token 10 → distance 0; group-0 vs group-3 experts
  // (most frequent vs unique tokens) are further apart than group 0 vs group 1
  const json& W = a["wasserstein"]["layers"][0]["matrix"];
  expect_distance_matrix(W, 8, "synthetic");
  EXPECT_EQ(W[0][1].get<double>(), 0.0);
  EXPECT_GT(W[0][6].get<double>(), W[0][2].get<double>());
  // x = log2(1 + rank): token 10 has rank 0 (x = 0); group-1 tokens ranks 1..3
  EXPECT_NEAR(a["wasserstein"]["expert_mean_log2_rank"][0]["mean_log2_rank"][0].get<double>(), 0.0, 1e-12);
}

TEST(AnalyzeRouting, DenseModelHasNothingToAnalyze) {
  EXPECT_ERROR(RoutingRecorder(tiny("dense")), "no MoE layers to analyze");
}

// ------------------------------------------------------------------------------- end to end
TEST(Analyze, MohgeCheckpointWritesConsistentReport) {
  const Env& e = env();
  TmpDir out;
  AnalyzeResult res = analyze_checkpoint(opts(e.mohge_run, out.str(), /*batches=*/1));  // run dir → newest ck
  const json& a = res.analysis;
  for (const char* f : {"report.html", "analysis.json", "activated_params.csv", "expert_share.csv", "group_share.csv",
                        "device_load.csv", "frequency_buckets.csv", "bucket_expert_share.csv", "wasserstein.csv",
                        "token_examples.csv", "training_params.csv", "training_expert_share.csv",
                        "training_group_share.csv", "training_load.csv"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
    EXPECT_GT(fs::file_size(out / f), 20u) << f;
  }
  EXPECT_EQ(json::parse(read_file_text(out / "analysis.json"))["charts"], a["charts"]);
  EXPECT_EQ(a["checkpoint"], e.mohge_ck);
  EXPECT_EQ(a["step"].get<int>(), 4);

  // the same batch in process: routing_metrics and the model's own activated-parameter count
  Model m(tiny("mohge"));
  model_load_weights(e.mohge_ck, m);
  DataLoader dl(e.data_dir + "/val.bin", 2, 16, 0);
  std::vector<int32_t> in(32), tg(32);
  ASSERT_TRUE(dl.next_eval_batch(in.data(), tg.data()));
  Context ctx(m, Mode::eval);
  m.forward(ctx, in.data(), tg.data(), 2, 16);
  ASSERT_EQ(a["layers"].size(), 2u);
  double experts_sum = 0;
  for (int s = 0; s < 2; s++) {
    const json& L = a["layers"][s];
    auto r = m.ffn(L["layer"].get<int>()).routing();
    ASSERT_TRUE(r);
    RoutingMetrics rm = routing_metrics(r->config, r->last(), m.cfg.hidden_size, 2);
    EXPECT_NEAR(L["activated_expert_params"].get<double>(), rm.activated_expert_params, 1e-9 * rm.activated_expert_params);
    EXPECT_NEAR(L["activated_layer_params"].get<double>(), rm.activated_layer_params, 1e-9 * rm.activated_layer_params);
    EXPECT_NEAR(sum(vec(L["expert_share"])), 1.0, 1e-9);
    EXPECT_NEAR(sum(vec(L["group_share"])), 1.0, 1e-9);
    for (int k = 0; k < 6; k++) EXPECT_DOUBLE_EQ(L["expert_share"][k].get<double>(), rm.expert_share[k]);
    experts_sum += rm.activated_expert_params;
    expect_distance_matrix(a["wasserstein"]["layers"][s]["matrix"], 6, "layer " + std::to_string(s));
    for (auto& row : a["frequency_buckets"]["layers"][s]["expert_share"]) EXPECT_NEAR(sum(vec(row)), 1.0, 1e-9);
  }
  expect_distance_matrix(a["wasserstein"]["mean"], 6, "mean");
  EXPECT_NEAR(a["activated_params"]["experts_sum"].get<double>(), experts_sum, 1e-9 * experts_sum);
  EXPECT_NEAR(a["activated_params"]["whole_model"].get<double>(), ctx.active_params_per_token(), 1e-6);
  EXPECT_EQ(a["activated_params"]["tokens"].get<double>(), 32.0);
  // E = 6 on D = 2: every policy places; D = 4 would be refused (tested below with the hmoe model)
  for (auto& p : a["device_load"]["policies"]) EXPECT_TRUE(p["ok"].get<bool>()) << p.dump();
  // the frequency buckets cover every analyzed token exactly once
  double analyzed = 0;
  for (auto& b : a["frequency_buckets"]["buckets"]) analyzed += b["analyzed_tokens"].get<double>();
  EXPECT_EQ(analyzed, 32.0);

  // training log: 4 distinct steps (duplicate step 2 and the half-written line dropped), eval record read
  const json& tr = a["training"];
  ASSERT_TRUE(tr.contains("step")) << tr.dump();
  EXPECT_EQ(tr["records"].get<int>(), e.log_records);
  EXPECT_EQ(tr["step"], json({1, 2, 3, 4}));
  EXPECT_EQ(tr["skipped_lines"].get<int>(), 1);
  EXPECT_EQ(tr["val"]["step"], json({2}));
  EXPECT_EQ(tr["devices"].get<int>(), 2);
  EXPECT_EQ(tr["layers"].size(), 2u);
  EXPECT_EQ(tr["layers"][0]["expert_share"].size(), 4u);

  // report: every chart once, self-contained, escaped
  const std::string html = read_file_text(out / "report.html");
  for (const char* id : {"activated-params", "expert-share-heatmap", "expert-share-L1", "expert-share-L2", "group-share",
                         "train-active-params", "train-expert-share", "train-group-share", "train-load", "freq-width",
                         "freq-params", "freq-expert-share", "token-examples", "wasserstein-last", "wasserstein-mean",
                         "expert-token-rank", "device-load"}) {
    EXPECT_NE(std::find(a["charts"].begin(), a["charts"].end(), json(id)), a["charts"].end()) << id;
  }
  for (auto& id : a["charts"]) {
    const std::string needle = "id=\"" + id.get<std::string>() + "\"";
    const size_t at = html.find(needle);
    EXPECT_NE(at, std::string::npos) << needle;
    EXPECT_EQ(html.find(needle, at + 1), std::string::npos) << "duplicate " << needle;
  }
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  EXPECT_EQ(html.find("<0x"), std::string::npos) << "unescaped byte-fallback piece";
  EXPECT_NE(res.summary.find("activated params/token"), std::string::npos);
  EXPECT_NE(res.summary.find("max/mean"), std::string::npos);
}

TEST(Analyze, HmoeTopPWithRefusedPlacementsAndNoLog) {
  const Env& e = env();
  TmpDir out;
  AnalyzeResult res = analyze_checkpoint(opts(e.hmoe_ck, out.str(), 2, /*devices=*/3));  // E = 4 on 3 devices
  const json& a = res.analysis;
  ASSERT_EQ(a["layers"].size(), 3u);
  for (auto& p : a["device_load"]["policies"]) {
    EXPECT_FALSE(p["ok"].get<bool>());
    EXPECT_FALSE(p["error"].get<std::string>().empty());
  }
  const std::string html = read_file_text(out / "report.html");
  EXPECT_NE(html.find("refused: "), std::string::npos);
  EXPECT_NE(a["training"]["note"].get<std::string>().find("no training log"), std::string::npos);
  EXPECT_NE(html.find("no training log"), std::string::npos);
  for (auto& L : a["layers"]) {
    EXPECT_NEAR(sum(vec(L["expert_share"])), 1.0, 1e-9);
    EXPECT_GE(L["experts_per_token"].get<double>(), 1.0);  // top-p: between 1 and 4
    EXPECT_LE(L["experts_per_token"].get<double>(), 4.0);
  }
  for (auto& L : a["wasserstein"]["layers"]) expect_distance_matrix(L["matrix"], 4, "hmoe");
  EXPECT_FALSE(fs::exists(out / "training_params.csv"));
}

TEST(Analyze, HomogeneousMoeWithoutTokenizerAndDefaultOutDir) {
  const Env& e = env();
  TmpDir tmp;
  const std::string ck = tmp / "ck";
  fs::copy(e.moe_ck, ck, fs::copy_options::recursive);
  AnalyzeOptions o = opts(ck, "", 2, 4);
  o.data = e.data_dir + "/val.bin";  // a shard, not a dir (so no tokenizer.model anywhere)
  AnalyzeResult res = analyze_checkpoint(o);
  EXPECT_EQ(res.out_dir, ck + "/analysis");
  EXPECT_TRUE(fs::exists(ck + "/analysis/report.html"));
  const json& a = res.analysis;
  // one width: every bucket's mean width is that width; all placements are balanced statically
  for (auto& L : a["frequency_buckets"]["layers"])
    for (auto& w : L["mean_width_gate"]) EXPECT_NEAR(w.get<double>(), 16.0, 1e-9);
  for (auto& p : a["device_load"]["policies"]) EXPECT_TRUE(p["ok"].get<bool>());
  EXPECT_TRUE(a["wasserstein"]["same_width_pairs_mean"].is_number());
  EXPECT_TRUE(a["wasserstein"]["different_width_pairs_mean"].is_null());
  EXPECT_FALSE(a["notes"].empty());  // "tokens shown by id"
  EXPECT_FALSE(a["token_examples"]["tokens"][0].contains("piece"));
}

TEST(Analyze, ErrorsAreClear) {
  const Env& e = env();
  TmpDir out;
  EXPECT_ERROR(analyze_checkpoint(opts(e.dense_ck, out.str())), "no MoE layers to analyze");
  AnalyzeOptions o = opts(e.mohge_ck, out.str());
  o.data = out / "missing.bin";
  EXPECT_ERROR(analyze_checkpoint(o), "does not exist");
  o.data = out.str();  // a dir without val.bin
  EXPECT_ERROR(analyze_checkpoint(o), "val.bin");
  EXPECT_ERROR(analyze_checkpoint(opts(out / "nope", out.str())), "does not exist");
  fs::create_directories(out / "empty_ck");
  EXPECT_ERROR(analyze_checkpoint(opts(out / "empty_ck", out.str())), "checkpoint");
  o = opts(e.mohge_ck, out.str());
  o.log = out / "no_log.jsonl";
  EXPECT_ERROR(analyze_checkpoint(o), "--log");
  // a broken checkpoint: config.json present, weights truncated
  const std::string bad = out / "bad_ck";
  fs::copy(e.mohge_ck, bad, fs::copy_options::recursive);
  fs::resize_file(bad + "/model.safetensors", 100);
  EXPECT_THROW(analyze_checkpoint(opts(bad, out.str())), mohge::Error);
}

// ---------------------------------------------------------------------------------------- CLI
TEST(AnalyzeCli, WritesReportAndPrintsSummary) {
  const Env& e = env();
  TmpDir out;
  test::CommandResult r = test::run_mohge(fmt::format("analyze {} --data {} --out {} --batches 2 --batch-size 2 "
                                                       "--seq-len 16 --devices 2 --threads 1",
                                                       q(e.mohge_ck), q(e.data_dir), q(out / "o")),
                                           120);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("activated params/token"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("device load max/mean (D=2"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(out / "o/report.html"));
  EXPECT_TRUE(fs::exists(out / "o/analysis.json"));

  r = test::run_mohge(fmt::format("analyze {} --data {}", q(e.dense_ck), q(e.data_dir)));
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("no MoE layers to analyze"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  r = test::run_mohge("analyze --help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("--devices"), std::string::npos);
}

// ------------------------------------------------------------------------- headless Chromium
TEST(AnalyzeRender, HeadlessChromiumRendersEveryChart) {
  TmpDir out;
  if (test::run_command("command -v chromium").rc != 0)
    GTEST_SKIP() << "chromium not installed (apt-get install chromium): skipping the render check";
  const Env& e = env();
  AnalyzeResult res = analyze_checkpoint(opts(e.mohge_ck, out / "report", 2));
  const std::string chrome = fmt::format("timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
                                         "--user-data-dir={} ",
                                         q(out / "profile"));
  test::CommandResult r = test::run_command(chrome + "--dump-dom " + q("file://" + res.report_html));
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string& dom = r.out;
  ASSERT_GT(dom.size(), 1000u) << r.err;
  for (auto& id : res.analysis["charts"]) {
    const std::string needle = "id=\"" + id.get<std::string>() + "\"";
    EXPECT_NE(dom.find(needle), std::string::npos) << "chart missing from the rendered DOM: " << needle;
  }
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t p = dom.find(s); p != std::string::npos; p = dom.find(s, p + 1)) n++;
    return n;
  };
  EXPECT_EQ(count("<svg class=\"chart\""), res.analysis["charts"].size());
  EXPECT_GT(count("<rect"), 100u);
  EXPECT_GT(count("<path"), 5u);

  const std::string png = out / "shot.png";
  r = test::run_command(chrome + "--screenshot=" + q(png) + " --window-size=1200,3000 " + q("file://" + res.report_html));
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(fs::exists(png)) << r.err;
  EXPECT_GT(fs::file_size(png), 20000u);
  const std::string head = read_file_text(png).substr(0, 8);
  EXPECT_EQ(head, std::string("\x89PNG\r\n\x1a\n", 8));
}

}  // namespace
