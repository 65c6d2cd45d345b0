#include "model/model_config.h"

#include "core/error.h"
#include "moe/expert_widths.h"

namespace mohge {

void ModelConfig::validate() const {
  auto positive = [](const char* key, long v) {
    MOHGE_CHECK(v > 0, "model.{} must be > 0 (got {})", key, v);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("num_layers", num_layers);
  positive("num_heads", num_heads);
  positive("num_kv_heads", num_kv_heads);
  positive("max_seq_len", max_seq_len);
  MOHGE_CHECK(hidden_size % num_heads == 0, "model.num_heads = {} does not divide hidden_size = {}",
              num_heads, hidden_size);
  MOHGE_CHECK(head_dim() % 2 == 0, "model: head dim hidden_size/num_heads = {} must be even for RoPE",
              head_dim());
  MOHGE_CHECK(num_heads % num_kv_heads == 0,
              "model.num_kv_heads = {} does not divide num_heads = {}", num_kv_heads, num_heads);
  MOHGE_CHECK(rms_norm_eps > 0, "model.rms_norm_eps must be > 0");
  MOHGE_CHECK(rope_theta > 0, "model.rope_theta must be > 0");
  MOHGE_CHECK(init_std > 0, "model.init_std must be > 0");
  MOHGE_CHECK(ffn_kind == "dense" || ffn_kind == "moe" || ffn_kind == "hmoe" || ffn_kind == "mohge",
              "model.ffn_kind = '{}': expected dense, moe, hmoe or mohge", ffn_kind);
  MOHGE_CHECK(first_dense_layers >= 0 && first_dense_layers <= num_layers,
              "model.first_dense_layers = {} must be in [0, num_layers = {}]", first_dense_layers,
              num_layers);
  if (!is_moe() || first_dense_layers > 0) positive("intermediate_size", intermediate_size);
  if (is_moe()) {
    moe.validate();
    MOHGE_CHECK(to_string(moe.kind) == ffn_kind, "moe kind {} does not match model.ffn_kind {}",
                to_string(moe.kind), ffn_kind);
    MOHGE_CHECK(moe.shared_expert_width >= 0, "moe.shared_expert_width must be >= 0");
  }
}

// [moe] keys by layout:
//   moe:   num_experts, expert_width (all equal)
//   hmoe:  num_experts, width_strategy (arithmetic|geometric|hybrid) + total_width, or expert_widths
//   mohge: num_expert_groups, experts_per_group, group_widths or group_width_start + group_width_step
static void read_moe(ModelConfig& c, TomlDoc& doc) {
  TomlSection s(doc, "moe");
  MoeConfig& m = c.moe;
  std::string router = c.ffn_kind == "mohge" ? "two_level" : "top_k", gate_norm = "softmax";
  std::string strategy = "arithmetic";
  int expert_width = 512, total_width = 4096, gw_start = 384, gw_step = 128, multiple = 8;
  std::vector<int> widths, group_widths;
  const bool explicit_num_experts = s.has("num_experts");
  s.get("num_experts", m.num_experts);
  s.get("expert_width", expert_width);
  s.get("width_strategy", strategy);
  s.get("total_width", total_width);
  s.get("width_multiple", multiple);
  s.get("expert_widths", widths);
  s.get("num_expert_groups", m.num_expert_groups);
  s.get("experts_per_group", m.experts_per_group);
  s.get("group_widths", group_widths);
  s.get("group_width_start", gw_start);
  s.get("group_width_step", gw_step);
  s.get("router", router);
  s.get("num_experts_per_tok", m.num_experts_per_tok);
  s.get("top_p", m.top_p);
  m.max_experts_per_tok = -1;  // default: no cap beyond E
  s.get("max_experts_per_tok", m.max_experts_per_tok);
  s.get("topk_group", m.topk_group);
  s.get("gate_norm", gate_norm);
  s.get("shared_expert_width", m.shared_expert_width);
  s.get("load_balance_coef", m.lb_coef);
  s.get("p_penalty_coef", m.pp_coef);
  s.get("entropy_coef", m.entropy_coef);
  s.get("group_coef", m.group_coef);
  s.get("group_delta", m.group_delta);
  s.get("group_loss_start_step", m.group_loss_start_step);
  s.get("intra_group_coef", m.intra_coef);
  s.get("global_batch_stats", m.global_batch_stats);
  s.finish();
  if (!c.is_moe()) return;
  auto default_max_k = [&] { if (m.max_experts_per_tok < 0) m.max_experts_per_tok = m.num_experts; };
  m.kind = moe_kind_from_string(c.ffn_kind);
  m.router = router_kind_from_string(router);
  m.gate_norm = gate_norm_from_string(gate_norm);
  if (m.kind == MoeKind::mohge) {
    MOHGE_CHECK(m.num_expert_groups > 0 && m.experts_per_group > 0,
                "moe.num_expert_groups and moe.experts_per_group must be > 0 for mohge");
    MOHGE_CHECK(!explicit_num_experts || m.num_experts == m.num_expert_groups * m.experts_per_group,
                "moe.num_experts = {} but num_expert_groups × experts_per_group = {}", m.num_experts,
                m.num_expert_groups * m.experts_per_group);
    m.num_experts = m.num_expert_groups * m.experts_per_group;
    auto gw = group_widths.empty() ? mohge_group_widths(m.num_expert_groups, gw_start, gw_step)
                                   : mohge_group_widths(group_widths);
    MOHGE_CHECK((int)gw.size() == m.num_expert_groups,
                "moe.group_widths has {} entries but num_expert_groups = {}", gw.size(),
                m.num_expert_groups);
    m.expert_widths = widths.empty() ? mohge_expert_widths(gw, m.experts_per_group) : widths;
    default_max_k();
  } else if (!widths.empty()) {
    MOHGE_CHECK(!explicit_num_experts || m.num_experts == (int)widths.size(),
                "moe.expert_widths has {} entries but moe.num_experts = {}", widths.size(), m.num_experts);
    m.expert_widths = widths;
    m.num_experts = (int)widths.size();
  } else if (m.kind == MoeKind::moe) {
    MOHGE_CHECK(m.num_experts > 0, "moe.num_experts must be > 0");
    m.expert_widths.assign(m.num_experts, expert_width);
  } else {
    m.expert_widths = hmoe_widths(strategy, m.num_experts, total_width, multiple);
  }
  default_max_k();
  s.set("num_experts", m.num_experts);
  s.set("max_experts_per_tok", m.max_experts_per_tok);
}

ModelConfig model_config_read(TomlDoc& doc) {
  ModelConfig c;
  TomlSection s(doc, "model");
  s.get("vocab_size", c.vocab_size);
  s.get("hidden_size", c.hidden_size);
  s.get("num_layers", c.num_layers);
  s.get("num_heads", c.num_heads);
  c.num_kv_heads = c.num_heads;
  s.get("num_kv_heads", c.num_kv_heads);
  s.get("intermediate_size", c.intermediate_size);
  s.get("rms_norm_eps", c.rms_norm_eps);
  s.get("rope_theta", c.rope_theta);
  s.get("tie_word_embeddings", c.tie_word_embeddings);
  s.get("max_seq_len", c.max_seq_len);
  s.get("init_std", c.init_std);
  s.get("ffn_kind", c.ffn_kind);
  s.get("first_dense_layers", c.first_dense_layers);
  std::string prec = precision_name(c.matmul_precision);
  s.get("matmul_precision", prec);
  c.matmul_precision = precision_from_string(prec, "model.matmul_precision");
  s.finish();
  read_moe(c, doc);
  c.validate();
  return c;
}

nlohmann::json model_config_to_json(const ModelConfig& c) {
  nlohmann::json j = {
      {"model_type", "mohge"},
      {"architectures", {"MohgeForCausalLM"}},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"intermediate_size", c.intermediate_size},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"max_position_embeddings", c.max_seq_len},
      {"initializer_range", c.init_std},
      {"hidden_act", "silu"},
      {"torch_dtype", "float32"},
      {"ffn_kind", c.ffn_kind},
      {"first_dense_layers", c.first_dense_layers},
  };
  if (c.is_moe()) {
    const MoeConfig& m = c.moe;
    j["expert_widths"] = m.expert_widths;
    j["num_experts"] = m.num_experts;
    j["num_expert_groups"] = m.num_expert_groups;
    j["experts_per_group"] = m.experts_per_group;
    j["router"] = to_string(m.router);
    j["num_experts_per_tok"] = m.num_experts_per_tok;
    j["top_p"] = m.top_p;
    j["max_experts_per_tok"] = m.max_experts_per_tok;
    j["topk_group"] = m.topk_group;
    j["gate_norm"] = to_string(m.gate_norm);
    j["shared_expert_width"] = m.shared_expert_width;
    j["aux_loss_coefs"] = {{"load_balance", m.lb_coef}, {"p_penalty", m.pp_coef},
                           {"router_entropy", m.entropy_coef}, {"group", m.group_coef},
                           {"intra_group", m.intra_coef}};
    j["group_loss_delta"] = m.group_delta;
    j["group_loss_start_step"] = m.group_loss_start_step;
    j["global_batch_stats"] = m.global_batch_stats;
  }
  return j;
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source) {
  ModelConfig c;
  try {
    c.vocab_size = j.at("vocab_size").get<int>();
    c.hidden_size = j.at("hidden_size").get<int>();
    c.num_layers = j.at("num_hidden_layers").get<int>();
    c.num_heads = j.at("num_attention_heads").get<int>();
    c.num_kv_heads = j.value("num_key_value_heads", c.num_heads);
    c.intermediate_size = j.at("intermediate_size").get<int>();
    c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
    c.rope_theta = j.value("rope_theta", 10000.0);
    c.tie_word_embeddings = j.value("tie_word_embeddings", false);
    c.max_seq_len = j.value("max_position_embeddings", 2048);
    c.init_std = j.value("initializer_range", 0.02);
    c.ffn_kind = j.value("ffn_kind", std::string("dense"));
    c.first_dense_layers = j.value("first_dense_layers", 0);
    if (c.is_moe()) {
      MoeConfig& m = c.moe;
      m.kind = moe_kind_from_string(c.ffn_kind);
      m.expert_widths = j.at("expert_widths").get<std::vector<int>>();
      m.num_experts = (int)m.expert_widths.size();
      m.num_expert_groups = j.value("num_expert_groups", 1);
      m.experts_per_group = j.value("experts_per_group", 0);
      m.router = router_kind_from_string(j.at("router").get<std::string>());
      m.num_experts_per_tok = j.value("num_experts_per_tok", 2);
      m.top_p = j.value("top_p", 0.6);
      m.max_experts_per_tok = j.value("max_experts_per_tok", m.num_experts);
      m.topk_group = j.value("topk_group", 1);
      m.gate_norm = gate_norm_from_string(j.value("gate_norm", std::string("softmax")));
      m.shared_expert_width = j.value("shared_expert_width", 0);
      auto coefs = j.value("aux_loss_coefs", nlohmann::json::object());
      m.lb_coef = coefs.value("load_balance", 0.0);
      m.pp_coef = coefs.value("p_penalty", 0.0);
      m.entropy_coef = coefs.value("router_entropy", 0.0);
      m.group_coef = coefs.value("group", 0.0);
      m.intra_coef = coefs.value("intra_group", 0.0);
      m.group_delta = j.value("group_loss_delta", 1024.0);
      m.group_loss_start_step = j.value("group_loss_start_step", (int64_t)0);
      m.global_batch_stats = j.value("global_batch_stats", false);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad config.json ({})", source, e.what());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return c;
}

}  // namespace mohge
