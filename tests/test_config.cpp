// Tests of the config schemas (core/config_schema.h; the [model], [moe], [data], [train] and [run]
// sections): every key's type and range checked with section.key in the message — reals finite,
// sizes bounded, long values shortened (issue 12) —, moved keys, derived defaults, the resolved
// TOML, the config.json round trip with today's Hugging Face names and values, and the reference.
#include <gtest/gtest.h>

#include <cmath>

#include "core/config_schema.h"
#include "core/toml_config.h"
#include "kernels/backend.h"
#include "test_util.h"
#include "train/train_config.h"

using namespace mohge;
using test::TmpDir;

namespace {

struct Key {
  std::string name, type;  // "model.vocab_size", "integer"
};

std::vector<Key> all_keys() {
  std::vector<Key> keys;
  for (const ConfigSection* s : run_config_sections())
    for (const KeyInfo& k : s->keys) keys.push_back({s->name + "." + k.name, k.type});
  return keys;
}

// The message run_config_read throws for these overrides ("" when it accepts them).
std::string error_of(const std::vector<std::string>& sets) {
  try {
    run_config_read("", sets);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text) << "\nexpected: " << (part)

const std::vector<std::string> kTiny = {
    "model.vocab_size=64",        "model.hidden_size=16",     "model.num_heads=2",       "model.num_kv_heads=1",
    "model.num_layers=2",         "model.intermediate_size=32", "model.max_seq_len=32", "train.seq_len=32",
    "model.rope_theta=500000",    "model.init_std=0.05",      "model.tie_word_embeddings=true"};

std::vector<std::string> tiny(std::vector<std::string> extra) {
  std::vector<std::string> s = kTiny;
  s.insert(s.end(), extra.begin(), extra.end());
  return s;
}

const std::vector<std::string> kMohge = {
    "model.ffn_kind=mohge",   "model.first_dense_layers=1",  "moe.num_expert_groups=2",  "moe.experts_per_group=2",
    "moe.group_widths=[8, 16]", "moe.topk_group=1",          "moe.num_experts_per_tok=2", "moe.shared_expert_width=8",
    "moe.group_coef=0.01",    "moe.intra_group_coef=0.02",   "moe.group_delta=16.0",     "moe.group_loss_start_step=5",
    "moe.gate_norm=renorm",   "moe.global_batch_stats=true"};
const std::vector<std::string> kHmoe = {
    "model.ffn_kind=hmoe",  "moe.num_experts=4",          "moe.router=top_p",         "moe.top_p=0.7",
    "moe.max_experts_per_tok=3", "moe.total_width=64",    "moe.p_penalty_coef=0.1",   "moe.entropy_coef=0.03",
    "moe.load_balance_coef=0.01"};

}  // namespace

// ------------------------------------------------------------------------------- value rules
TEST(ConfigValues, EveryRealKeyMustBeFinite) {
  int reals = 0;
  for (const Key& k : all_keys()) {
    if (k.type != "float") continue;
    reals++;
    for (const char* v : {"inf", "-inf", "nan"}) {
      const std::string msg = error_of({k.name + "=" + v});
      EXPECT_CONTAINS(msg, k.name + " = " + v + " must be");
    }
  }
  EXPECT_EQ(reals, 18);  // model 3, moe 7, train 7, parallel 1
}

TEST(ConfigValues, TheIssueCasesNameTheirKey) {
  EXPECT_CONTAINS(error_of({"model.init_std=inf"}), "model.init_std = inf must be finite and > 0");
  EXPECT_CONTAINS(error_of({"train.eps=inf"}), "train.eps = inf must be finite and > 0");
  EXPECT_CONTAINS(error_of({"model.rope_theta=inf"}), "model.rope_theta = inf must be finite and > 0");
  EXPECT_CONTAINS(error_of({"train.min_lr=nan"}), "train.min_lr = nan must be finite and >= 0");
  // an lr error, not a router error after NaN weights
  std::vector<std::string> mohge_lr = tiny(kMohge);
  mohge_lr.push_back("train.lr=inf");
  EXPECT_CONTAINS(error_of(mohge_lr), "train.lr = inf must be finite and > 0");
  EXPECT_CONTAINS(error_of({"run.threads=200000"}), "run.threads = 200000 must be in [0, 1024]");
  EXPECT_CONTAINS(error_of({"model.ffn_kind=mohge", "moe.num_expert_groups=100000", "moe.experts_per_group=2"}),
                  "moe.num_expert_groups = 100000 must be in [1, 1024]");
  // each factor within its bound, the product not
  EXPECT_CONTAINS(error_of({"model.ffn_kind=mohge", "moe.num_expert_groups=1000", "moe.experts_per_group=1000"}),
                  "moe.num_expert_groups × experts_per_group = 1000 × 1000 = 1000000 exceeds the 1024 experts");
  // and the experts of all layers together: 1024 layers of 1024 experts would be 3 M tensors
  EXPECT_CONTAINS(error_of({"model.ffn_kind=moe", "model.num_layers=1024", "moe.num_experts=1024"}),
                  "(model.num_layers − first_dense_layers) × moe.num_experts = 1024 × 1024 = 1048576 experts; "
                  "at most 16384");
  // derived widths are checked as well: 384 + 1023 × 1048576 overflows no int and exceeds the bound
  EXPECT_CONTAINS(error_of({"model.ffn_kind=mohge", "moe.num_expert_groups=1024", "moe.experts_per_group=1",
                            "moe.group_width_step=1048576"}),
                  "moe.expert_widths[1] = 1048960 must be in [1, 1048576]");
}

TEST(ConfigValues, EverySizeHasAnUpperBound) {
  const std::string huge = "1099511627776";  // 2^40
  int bounded = 0;
  for (const Key& k : all_keys()) {
    if (k.type == "integer") {
      const std::string msg = error_of({k.name + "=" + huge});
      if (k.name == "train.seed" || k.name == "moe.group_loss_start_step") {
        EXPECT_EQ(msg, "") << k.name << ": any non-negative 64-bit value is fine";
        continue;
      }
      EXPECT_CONTAINS(msg, k.name + " = " + huge + " must be in [");
      bounded++;
    } else if (k.type == "integer list") {
      EXPECT_CONTAINS(error_of({k.name + "=[8, " + huge + "]"}), k.name + "[1] = " + huge + " must be in [1, ");
      std::string many = "[8";
      for (int i = 0; i < 1024; i++) many += ", 8";
      EXPECT_CONTAINS(error_of({k.name + "=" + many + "]"}), k.name + " has 1025 entries; at most 1024 are allowed");
      bounded++;
    }
  }
  EXPECT_EQ(bounded, 36);
}

TEST(ConfigValues, WrongTypesNameTheKey) {
  for (const Key& k : all_keys()) {
    const std::string msg = error_of({k.name + "=[\"x\"]"});
    EXPECT_CONTAINS(msg, k.name + " must be ");
    EXPECT_CONTAINS(msg, "(got [");
  }
  EXPECT_CONTAINS(error_of({"model.hidden_size=1.5"}), "model.hidden_size must be an integer (got 1.5)");
  EXPECT_CONTAINS(error_of({"model.tie_word_embeddings=1"}), "model.tie_word_embeddings must be true or false (got 1)");
  EXPECT_CONTAINS(error_of({"moe.expert_widths=[8, 1.5]"}), "moe.expert_widths must be an array of integers");
}

TEST(ConfigValues, LongValuesAreShortenedInMessages) {
  const std::string digits = "1" + std::string(299, '0');  // overflows TOML's 64-bit integers
  std::string msg = error_of({"model.hidden_size=" + digits});
  EXPECT_CONTAINS(msg, "model.hidden_size must be an integer (got \"10000000000");
  EXPECT_CONTAINS(msg, "… (300 characters)");
  EXPECT_LT(msg.size(), 120u) << msg;
  msg = error_of({"run.backend=" + std::string(500, 'x')});
  EXPECT_CONTAINS(msg, "run.backend = \"xxxx");
  EXPECT_LT(msg.size(), 140u) << msg;
  msg = error_of({"model.rope_theta=1e300", "model.hidden_size=1e300"});  // a finite θ is fine
  EXPECT_CONTAINS(msg, "model.hidden_size must be an integer (got 1e");
  EXPECT_LT(msg.size(), 80u) << msg;
  msg = error_of({std::string(400, 'k') + ".x=1"});
  EXPECT_LT(msg.size(), 400u) << "an unknown section is named, not dumped";
}

// Fuzz find (fuzz/corpus/toml_config/malformed_bool_newline): toml++ quotes the offending bytes,
// newline included, so its description was two lines. Every mohge::Error is one line now.
TEST(ConfigValues, MessagesQuotingInputStayOneLine) {
  try {
    TomlDoc::parse_string("[train]\nx = t\n", "cfg.toml");
    FAIL() << "malformed TOML was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_CONTAINS(msg, "cfg.toml: malformed TOML at line 2");
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_EQ(single_line("a\nb\tc\r\x01\x7f é"), "a\\nb\\tc\\r\\x01\\x7f é");
  EXPECT_STREQ(Error("two\nlines").what(), "two\\nlines");
}

TEST(ConfigValues, ChoicesAndEnums) {
  EXPECT_CONTAINS(error_of({"model.ffn_kind=sparse"}), "model.ffn_kind = \"sparse\" must be one of dense, moe, hmoe, mohge");
  EXPECT_CONTAINS(error_of({"moe.gate_norm=sigmoid"}), "moe.gate_norm = \"sigmoid\" must be one of softmax, renorm");
  EXPECT_CONTAINS(error_of({"moe.width_strategy=linear"}),
                  "moe.width_strategy = \"linear\" must be one of arithmetic, geometric, hybrid");
  EXPECT_CONTAINS(error_of({"run.matmul_precision=fp16"}), "run.matmul_precision = \"fp16\" must be one of fp32, bf16");
  for (const char* kind : {"dense", "moe", "hmoe", "mohge"}) {
    RunConfig rc = run_config_read("", {std::string("model.ffn_kind=") + kind, "moe.num_expert_groups=2",
                                        "moe.experts_per_group=2"});
    EXPECT_EQ(rc.model.ffn_kind, ffn_kind_from_string(kind));
    EXPECT_STREQ(to_string(rc.model.ffn_kind), kind);
  }
  EXPECT_ERROR(ffn_kind_from_string("sparse"), "unknown ffn_kind 'sparse' (valid: dense, moe, hmoe, mohge)");
}

// --------------------------------------------------------------------------- the [parallel] section
std::vector<std::string> with(std::vector<std::string> sets, const std::vector<std::string>& more) {
  sets.insert(sets.end(), more.begin(), more.end());
  return sets;
}

TEST(ConfigParallel, RanksSplitTheBatchAndPlaceTheExperts) {
  RunConfig rc = run_config_read("", with(tiny(kMohge), {"parallel.data_parallel=2", "parallel.expert_parallel=2",
                                                          "parallel.placement=contiguous"}));
  EXPECT_EQ(rc.parallel.world(), 4);
  EXPECT_EQ(rc.model.expert_parallel.size, 2);
  EXPECT_EQ(rc.model.expert_parallel.placement, PlacementPolicy::contiguous);
  EXPECT_EQ(run_config_read("", tiny(kMohge)).model.expert_parallel.size, 1);
  EXPECT_CONTAINS(error_of(with(tiny(kMohge), {"train.batch_size=6", "parallel.data_parallel=4"})),
                  "train.batch_size = 6 must be divisible by the 4 ranks");
  EXPECT_CONTAINS(error_of({"parallel.expert_parallel=2", "train.batch_size=4"}),
                  "parallel.expert_parallel = 2 needs a mixture-of-experts model");
  EXPECT_CONTAINS(error_of(with(tiny(kMohge), {"parallel.expert_parallel=3", "train.batch_size=3"})),
                  "parallel.expert_parallel = 3: ");
  EXPECT_CONTAINS(error_of({"parallel.placement=random"}), "parallel.placement = \"random\" must be one of auto");
  EXPECT_TRUE(run_config_read("", {"parallel.zero1=true"}).parallel.zero1);  // one process: nothing to shard
}

// -------------------------------------------------------------------------------- the [run] section
TEST(ConfigRun, RunSettingsAndTheirOldPlaces) {
  RunConfig rc = run_config_read("", {"run.threads=3", "run.matmul_precision=bf16"});
  EXPECT_EQ(rc.run.threads, 3);
  EXPECT_EQ(rc.train.threads, 3);
  EXPECT_EQ(rc.run.matmul_precision, Precision::bf16);
  EXPECT_EQ(rc.model.matmul_precision, Precision::bf16);
  EXPECT_EQ(rc.run.backend, "cpu");
  EXPECT_CONTAINS(error_of({"model.matmul_precision=bf16"}), "model.matmul_precision moved to run.matmul_precision");
  EXPECT_CONTAINS(error_of({"train.threads=2"}), "train.threads moved to run.threads");
  std::string why_not;  // the registry's reason, where a backend cannot run
  if (backend_find("cuda", &why_not)) EXPECT_EQ(error_of({"run.backend=cuda"}), "");
  else EXPECT_CONTAINS(error_of({"run.backend=cuda"}), "run.backend = \"cuda\": " + why_not);
  EXPECT_CONTAINS(error_of({"run.backend=tpu"}), "run.backend = \"tpu\" must be one of cpu, cuda");
  EXPECT_CONTAINS(error_of({"run.ranks=2"}), "unknown config key 'run.ranks'");
}

// ------------------------------------------------------------------------- defaults and resolution
TEST(ConfigResolve, DerivedDefaults) {
  RunConfig rc = run_config_read("", {"model.num_heads=8", "data.dir=d"});
  EXPECT_EQ(rc.model.num_kv_heads, 8);
  EXPECT_EQ(rc.data.tokenizer, "d/tokenizer.model");
  rc = run_config_read("", {"model.ffn_kind=mohge", "moe.num_expert_groups=3", "moe.experts_per_group=2"});
  EXPECT_EQ(rc.model.moe.router, RouterKind::two_level);
  EXPECT_EQ(rc.model.moe.num_experts, 6);
  EXPECT_EQ(rc.model.moe.max_experts_per_tok, 6);
  EXPECT_EQ(rc.model.moe.expert_widths, (std::vector<int>{384, 384, 512, 512, 640, 640}));
  rc = run_config_read("", {"model.ffn_kind=hmoe"});
  EXPECT_EQ(rc.model.moe.router, RouterKind::top_k);
  EXPECT_EQ(rc.model.moe.expert_widths, (std::vector<int>{288, 352, 416, 480, 544, 608, 672, 736}));
  EXPECT_EQ(rc.model.moe.max_experts_per_tok, 8);
}

TEST(ConfigResolve, ResolvedTomlReadsBackToTheSameRun) {
  TmpDir d;
  for (const auto& extra : {std::vector<std::string>{}, kMohge, kHmoe,
                            std::vector<std::string>{"model.ffn_kind=moe", "moe.num_experts=4", "run.threads=2"}}) {
    RunConfig rc = run_config_read("", tiny(extra));
    const std::string path = d / "run.toml";
    write_file_atomic(path, rc.toml);
    RunConfig again = run_config_read(path, {});
    EXPECT_EQ(again.toml, rc.toml);
    EXPECT_EQ(model_config_to_json(again.model), model_config_to_json(rc.model));
    EXPECT_EQ(again.run.threads, rc.run.threads);
  }
}

// ------------------------------------------------------------------------------------ config.json
// Written by the engine before the schemas (commit b54b12f, `mohge init` with these overrides): the
// keys and values every existing checkpoint and tools/torch_ref.py read.
TEST(ConfigJson, HuggingFaceKeysAndValuesAreUnchanged) {
  const char* mohge = R"({
  "architectures": ["MohgeForCausalLM"],
  "aux_loss_coefs": {"group": 0.01, "intra_group": 0.02, "load_balance": 0.0, "p_penalty": 0.0, "router_entropy": 0.0},
  "expert_widths": [8, 8, 16, 16], "experts_per_group": 2, "ffn_kind": "mohge", "first_dense_layers": 1,
  "gate_norm": "renorm", "global_batch_stats": true, "group_loss_delta": 16.0, "group_loss_start_step": 5,
  "hidden_act": "silu", "hidden_size": 16, "initializer_range": 0.05, "intermediate_size": 32,
  "max_experts_per_tok": 4, "max_position_embeddings": 32, "model_type": "mohge", "num_attention_heads": 2,
  "num_expert_groups": 2, "num_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2,
  "num_key_value_heads": 1, "rms_norm_eps": 1e-06, "rope_theta": 500000.0, "router": "two_level",
  "shared_expert_width": 8, "tie_word_embeddings": true, "top_p": 0.6, "topk_group": 1,
  "torch_dtype": "float32", "vocab_size": 64})";
  const char* hmoe = R"({
  "architectures": ["MohgeForCausalLM"],
  "aux_loss_coefs": {"group": 0.0, "intra_group": 0.0, "load_balance": 0.01, "p_penalty": 0.1, "router_entropy": 0.03},
  "expert_widths": [8, 16, 16, 24], "experts_per_group": 0, "ffn_kind": "hmoe", "first_dense_layers": 0,
  "gate_norm": "softmax", "global_batch_stats": false, "group_loss_delta": 1024.0, "group_loss_start_step": 0,
  "hidden_act": "silu", "hidden_size": 16, "initializer_range": 0.05, "intermediate_size": 32,
  "max_experts_per_tok": 3, "max_position_embeddings": 32, "model_type": "mohge", "num_attention_heads": 2,
  "num_expert_groups": 1, "num_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2,
  "num_key_value_heads": 1, "rms_norm_eps": 1e-06, "rope_theta": 500000.0, "router": "top_p",
  "shared_expert_width": 0, "tie_word_embeddings": true, "top_p": 0.7, "topk_group": 1,
  "torch_dtype": "float32", "vocab_size": 64})";
  const char* dense = R"({
  "architectures": ["MohgeForCausalLM"], "ffn_kind": "dense", "first_dense_layers": 0, "hidden_act": "silu",
  "hidden_size": 16, "initializer_range": 0.05, "intermediate_size": 32, "max_position_embeddings": 32,
  "model_type": "mohge", "num_attention_heads": 2, "num_hidden_layers": 2, "num_key_value_heads": 1,
  "rms_norm_eps": 1e-06, "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "float32",
  "vocab_size": 64})";
  const std::pair<const char*, std::vector<std::string>> cases[] = {
      {mohge, kMohge}, {hmoe, kHmoe}, {dense, {"model.ffn_kind=dense"}}};
  for (auto& [text, extra] : cases) {
    const nlohmann::json expected = nlohmann::json::parse(text);
    const ModelConfig c = run_config_read("", tiny(extra)).model;
    // dump: the same keys, values and number types (16.0 stays a float)
    EXPECT_EQ(model_config_to_json(c).dump(), expected.dump());
    // and the file reads back to the same config
    EXPECT_EQ(model_config_to_json(model_config_from_json(expected, "x/config.json")).dump(), expected.dump());
  }
}

TEST(ConfigJson, MissingOptionalKeysTakeTheirDefaults) {
  auto j = nlohmann::json::parse(R"({"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 1,
                                     "num_attention_heads": 4, "intermediate_size": 8})");
  ModelConfig c = model_config_from_json(j, "x/config.json");
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.ffn_kind, FfnKind::dense);
  j["ffn_kind"] = "hmoe";
  j["expert_widths"] = {8, 16, 24};
  j["router"] = "top_p";
  c = model_config_from_json(j, "x/config.json");
  EXPECT_EQ(c.moe.num_experts, 3);
  EXPECT_EQ(c.moe.max_experts_per_tok, 3);
  EXPECT_EQ(c.moe.kind, MoeKind::hmoe);
  j.erase("router");
  EXPECT_ERROR(model_config_from_json(j, "x/config.json"), "x/config.json: config.json has no 'router'");
}

TEST(ConfigJson, ValuesAreCheckedUnderTheirJsonNames) {
  auto base = nlohmann::json::parse(R"({"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 1,
                                        "num_attention_heads": 4, "intermediate_size": 8, "ffn_kind": "moe",
                                        "expert_widths": [8, 8], "router": "top_k"})");
  auto bad = [&](const char* ptr, nlohmann::json v) {
    auto j = base;
    j[nlohmann::json::json_pointer(ptr)] = v;
    return j;
  };
  EXPECT_ERROR(model_config_from_json(bad("/rope_theta", INFINITY), "c.json"),
               "c.json: rope_theta = inf must be finite and > 0");
  EXPECT_ERROR(model_config_from_json(bad("/num_key_value_heads", 5000), "c.json"),
               "c.json: num_key_value_heads = 5000 must be in [1, 1024]");
  EXPECT_ERROR(model_config_from_json(bad("/aux_loss_coefs/group", -1), "c.json"),
               "c.json: aux_loss_coefs.group = -1 must be finite and >= 0");
  EXPECT_ERROR(model_config_from_json(bad("/expert_widths", {8, 0}), "c.json"),
               "c.json: expert_widths[1] = 0 must be in [1, 1048576]");
  EXPECT_ERROR(model_config_from_json(bad("/tie_word_embeddings", nullptr), "c.json"),
               "c.json: tie_word_embeddings must be true or false (got null)");
  EXPECT_ERROR(model_config_from_json(bad("/num_experts", 3), "c.json"), "expert_widths has 2 entries but num_experts = 3");
}

// ----------------------------------------------------------------------------- code-built configs
TEST(ConfigValidate, StructsBuiltInCodeAreCheckedByTheSameSchema) {
  ModelConfig c;
  c.init_std = INFINITY;
  EXPECT_ERROR(c.validate(), "model.init_std = inf must be finite and > 0");
  c = ModelConfig{};
  c.num_heads = 5000;
  EXPECT_ERROR(c.validate(), "model.num_heads = 5000 must be in [1, 1024]");
  c = test::tiny_model_config("mohge", 16);
  c.moe.group_delta = NAN;
  EXPECT_ERROR(c.validate(), "moe.group_delta = nan must be finite and > 0");
  c = test::tiny_model_config("mohge", 16);
  c.moe.kind = MoeKind::hmoe;
  EXPECT_ERROR(c.validate(), "does not match model.ffn_kind mohge");
}

// ---------------------------------------------------------------------------------- the reference
TEST(ConfigReference, ListsEveryKeyOnceWithItsConstraint) {
  const std::string md = run_config_reference();
  const auto keys = all_keys();
  for (const Key& k : keys) {
    const std::string row = "| `" + k.name + "` | " + k.type + " | ";
    const size_t at = md.find(row);
    ASSERT_NE(at, std::string::npos) << k.name;
    EXPECT_EQ(md.find(row, at + 1), std::string::npos) << k.name << " listed twice";
  }
  EXPECT_CONTAINS(md, "| `run.threads` | integer | `0` | in [0, 1024] | OpenMP threads; 0 = all cores |");
  EXPECT_CONTAINS(md, "| `model.num_layers` | integer | `4` | in [1, 1024] | decoder blocks "
                      "(config.json: `num_hidden_layers`, required) |");
  EXPECT_CONTAINS(md, "| `train.lr` | float | `0.001` | finite and > 0 |");
  EXPECT_CONTAINS(md, "| `model.ffn_kind` | string | `\"dense\"` | one of dense, moe, hmoe, mohge |");
  EXPECT_CONTAINS(md, "`model.matmul_precision` moved to `run.matmul_precision`.");
  // every key of the resolved config is in the reference, and nothing else
  toml::table resolved = toml::parse(run_config_read("", {}).toml);
  size_t n = 0;
  for (auto& [section, t] : resolved)
    for (auto& [key, v] : *t.as_table()) {
      EXPECT_NE(md.find("| `" + std::string(section.str()) + "." + std::string(key.str()) + "` |"), std::string::npos);
      n++;
    }
  EXPECT_EQ(n, keys.size());
}

// The GPU presets (configs/gpu, issue 10): MoHGE-3B's shapes, and moe_3b / dense_3b at the same
// activated FFN width per token (K × mean expert width + shared width = 7040), so the three cost
// the same per token.
TEST(GpuConfigs, HaveTheShapesOfIssue10) {
  auto read = [](const std::string& name) {
    return run_config_read(std::string(MOHGE_SOURCE_DIR) + "/configs/gpu/" + name + ".toml", {});
  };
  auto activated = [](const ModelConfig& m) {
    if (m.ffn_kind == FfnKind::dense) return (double)m.intermediate_size;
    const auto& w = m.moe.expert_widths;
    double mean = 0;
    for (int x : w) mean += (double)x / w.size();
    return m.moe.num_experts_per_tok * mean + m.moe.shared_expert_width;
  };
  const RunConfig mohge = read("mohge_3b"), moe = read("moe_3b"), dense = read("dense_3b");
  for (const RunConfig* rc : {&mohge, &moe, &dense}) {
    EXPECT_EQ(rc->model.hidden_size, 1024);
    EXPECT_EQ(rc->model.num_layers, 12);
    EXPECT_EQ(rc->model.num_heads, 16);
    EXPECT_EQ(rc->model.vocab_size, 32768);
    EXPECT_EQ(rc->train.seq_len, 2048);
    EXPECT_EQ(rc->train.batch_size, 8);
    EXPECT_EQ(rc->run.matmul_precision, Precision::bf16);
    EXPECT_EQ(rc->run.backend, "cpu") << "the backend is chosen on the command line, so the files validate anywhere";
    EXPECT_DOUBLE_EQ(activated(rc->model), 7040.0);
  }
  const MoeConfig& m = mohge.model.moe;
  EXPECT_EQ(mohge.model.first_dense_layers, 1);
  EXPECT_EQ(mohge.model.intermediate_size, 6144);
  EXPECT_EQ(m.num_expert_groups, 8);
  EXPECT_EQ(m.experts_per_group, 8);
  ASSERT_EQ(m.expert_widths.size(), 64u);
  EXPECT_EQ(m.expert_widths.front(), 384);
  EXPECT_EQ(m.expert_widths.back(), 1280);
  EXPECT_EQ(m.topk_group, 4);
  EXPECT_EQ(m.num_experts_per_tok, 6);
  EXPECT_EQ(m.shared_expert_width, 2048);
  EXPECT_EQ(moe.model.moe.expert_widths, std::vector<int>(64, 832));
  EXPECT_EQ(moe.model.moe.shared_expert_width, 2048);
}
