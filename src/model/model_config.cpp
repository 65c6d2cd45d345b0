// defines: the [model] schema, ModelConfig::validate, model_config_read, the config.json conversion
#include "model/model_config.h"

#include "core/config_schema.h"
#include "core/error.h"

namespace mohge {

const char* to_string(FfnKind k) {
  switch (k) {
    case FfnKind::dense: return "dense";
    case FfnKind::moe: return "moe";
    case FfnKind::hmoe: return "hmoe";
    case FfnKind::mohge: return "mohge";
  }
  return "?";
}

std::span<const FfnKind> enum_values(FfnKind) {
  static constexpr FfnKind v[] = {FfnKind::dense, FfnKind::moe, FfnKind::hmoe, FfnKind::mohge};
  return v;
}

FfnKind ffn_kind_from_string(std::string_view s) { return enum_from_string<FfnKind>(s, "ffn_kind"); }

// The expert layout of an MoE kind; none for dense.
static std::optional<MoeKind> moe_kind_of(FfnKind k) {
  switch (k) {
    case FfnKind::dense: return std::nullopt;
    case FfnKind::moe: return MoeKind::moe;
    case FfnKind::hmoe: return MoeKind::hmoe;
    case FfnKind::mohge: return MoeKind::mohge;
  }
  return std::nullopt;
}

// Upper bounds: far above any published decoder (LLaMA-3 405B: d = 16384, 126 layers, 128 heads,
// 128 k vocabulary), low enough that no single size can exhaust memory or overflow an index.
// kMaxExperts bounds the experts of all layers together (DeepSeek-V3: 58 × 256 = 14848): each is
// three tensors, and one bound per key would still allow 1024 layers of 1024 experts.
constexpr int kMaxVocab = 1 << 21, kMaxWidth = 1 << 16, kMaxLayers = 1024, kMaxHeads = 1024,
              kMaxFfnWidth = 1 << 20, kMaxSeqLen = 1 << 20, kMaxExperts = 16384;

const ConfigSchema<ModelConfig>& model_schema() {
  using C = ModelConfig;
  static const ConfigSchema<C> schema{
      "model",
      "What the model is: a decoder of RMSNorm, RoPE attention and SwiGLU FFNs (SPEC §1). Written to a "
      "checkpoint's config.json under the Hugging Face names.",
      {
          {"vocab_size", &C::vocab_size, closed(1, kMaxVocab),
           "token ids of the embedding and LM head (at least the tokenizer's)", {.json_required = true}},
          {"hidden_size", &C::hidden_size, closed(1, kMaxWidth), "model width d", {.json_required = true}},
          {"num_layers", &C::num_layers, closed(1, kMaxLayers), "decoder blocks",
           {.json = "num_hidden_layers", .json_required = true}},
          {"num_heads", &C::num_heads, closed(1, kMaxHeads),
           "attention heads; hidden_size / num_heads is the head dim (even, for RoPE)",
           {.json = "num_attention_heads", .json_required = true}},
          {"num_kv_heads", &C::num_kv_heads, closed(1, kMaxHeads),
           "key/value heads, dividing num_heads; fewer is grouped-query attention",
           {.json = "num_key_value_heads", .default_text = "num_heads"}},
          {"intermediate_size", &C::intermediate_size, closed(0, kMaxFfnWidth),
           "SwiGLU width of the dense FFNs (the dense kind, and the first_dense_layers)", {.json_required = true}},
          {"rms_norm_eps", &C::rms_norm_eps, greater(0), "RMSNorm ε"},
          {"rope_theta", &C::rope_theta, greater(0), "RoPE base θ"},
          {"tie_word_embeddings", &C::tie_word_embeddings, {}, "the LM head is the embedding matrix"},
          {"max_seq_len", &C::max_seq_len, closed(1, kMaxSeqLen), "the longest sequence (RoPE table, KV cache)",
           {.json = "max_position_embeddings"}},
          {"init_std", &C::init_std, greater(0), "standard deviation of the normal initialisation",
           {.json = "initializer_range"}},
          {"ffn_kind", &C::ffn_kind, {},
           "the FFN: dense SwiGLU, or a mixture of experts ([moe]): moe (equal widths), hmoe (heterogeneous), "
           "mohge (groups of equal width, two-level routing)"},
          {"first_dense_layers", &C::first_dense_layers, closed(0, kMaxLayers),
           "the first n layers keep a dense FFN (≤ num_layers)"},
      },
      {.in_json = true, .moved = {{"matmul_precision", "run.matmul_precision"}}}};
  return schema;
}

void ModelConfig::validate() const {
  model_schema().check(*this);
  MOHGE_CHECK(hidden_size % num_heads == 0, "model.num_heads = {} does not divide hidden_size = {}",
              num_heads, hidden_size);
  MOHGE_CHECK(head_dim() % 2 == 0, "model: head dim hidden_size/num_heads = {} must be even for RoPE",
              head_dim());
  MOHGE_CHECK(num_heads % num_kv_heads == 0,
              "model.num_kv_heads = {} does not divide num_heads = {}", num_kv_heads, num_heads);
  MOHGE_CHECK(first_dense_layers <= num_layers,
              "model.first_dense_layers = {} must be in [0, num_layers = {}]", first_dense_layers,
              num_layers);
  if (!is_moe() || first_dense_layers > 0)
    MOHGE_CHECK(intermediate_size > 0, "model.intermediate_size = {} must be > 0: the model has dense layers",
                intermediate_size);
  if (is_moe()) {
    MOHGE_CHECK(moe.kind == moe_kind_of(ffn_kind), "moe kind {} does not match model.ffn_kind {}",
                to_string(moe.kind), to_string(ffn_kind));
    moe.validate();
    const long experts = (long)(num_layers - first_dense_layers) * moe.num_experts;
    MOHGE_CHECK(experts <= kMaxExperts,
                "the model has (model.num_layers − first_dense_layers) × moe.num_experts = {} × {} = {} experts; "
                "at most {}", num_layers - first_dense_layers, moe.num_experts, experts, kMaxExperts);
  }
}

ModelConfig model_config_read(const TomlDoc& doc, toml::table& resolved) {
  ModelConfig c;
  const KeySet given = model_schema().read_section(doc.section("model"), c, doc.source());
  if (!given.count("num_kv_heads")) c.num_kv_heads = c.num_heads;
  toml::table moe;
  c.moe = moe_config_read(doc.section("moe"), moe_kind_of(c.ffn_kind), doc.source(), moe);
  c.validate();
  resolved.insert_or_assign("model", model_schema().to_toml(c));
  resolved.insert_or_assign("moe", std::move(moe));
  return c;
}

nlohmann::json model_config_to_json(const ModelConfig& c) {
  nlohmann::json j = {
      {"model_type", "mohge"},
      {"architectures", {"MohgeForCausalLM"}},
      {"hidden_act", "silu"},
      {"torch_dtype", "float32"},
  };
  model_schema().to_json(c, j);
  if (c.is_moe()) moe_schema().to_json(c.moe, j);
  return j;
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source) {
  MOHGE_CHECK(j.is_object(), "{}: config.json must be a JSON object", source);
  ModelConfig c;
  const KeySet given = model_schema().read_json(j, c, source);
  if (!given.count("num_kv_heads")) c.num_kv_heads = c.num_heads;
  if (auto kind = moe_kind_of(c.ffn_kind)) c.moe = moe_config_from_json(j, *kind, source);
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return c;
}

}  // namespace mohge
