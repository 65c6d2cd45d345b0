// defines: FfnKind, ModelConfig, model_schema, model_config_read (TOML [model] + [moe]), HF
//          config.json conversion
#pragma once
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "core/toml_config.h"
#include "kernels/gemm.h"
#include "moe/expert_parallel.h"
#include "moe/moe_config.h"

namespace mohge {

enum class FfnKind { dense, moe, hmoe, mohge };  // the FFN of each layer; the last three: [moe]
const char* to_string(FfnKind k);
std::span<const FfnKind> enum_values(FfnKind);
FfnKind ffn_kind_from_string(std::string_view s);  // throws, listing the valid names

struct ModelConfig {
  int vocab_size = 8192;
  int hidden_size = 256;
  int num_layers = 4;
  int num_heads = 4;
  int num_kv_heads = 4;
  int intermediate_size = 1024;  // dense FFN width (and of the first_dense_layers)
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int max_seq_len = 256;
  double init_std = 0.02;
  FfnKind ffn_kind = FfnKind::dense;
  int first_dense_layers = 0;      // the first n layers keep a dense FFN
  MoeConfig moe;                   // used when ffn_kind != dense; moe.kind matches ffn_kind
  // How the model runs, not what it is (run.matmul_precision): not part of config.json (a
  // checkpoint trained in bf16 loads in fp32 and vice versa). Routers always run in fp32.
  Precision matmul_precision = Precision::fp32;
  // Also a run setting: this process's share of every MoE layer's experts (moe/expert_parallel.h).
  // The default, one rank holding all experts, is the single-process engine.
  ExpertParallel expert_parallel;

  int head_dim() const { return hidden_size / num_heads; }
  bool is_moe() const { return ffn_kind != FfnKind::dense; }
  bool layer_is_moe(int l) const { return is_moe() && l >= first_dense_layers; }
  // Every key within its range (model_schema, and moe_schema for MoE kinds), then the cross-key
  // rules (heads dividing the width, ...); errors name the keys.
  void validate() const;
};

const ConfigSchema<ModelConfig>& model_schema();  // [model]; config.json under the HF names

// Reads [model] and [moe] (all keys optional; defaults above), validates, and writes the
// resolved sections into `resolved`.
ModelConfig model_config_read(const TomlDoc& doc, toml::table& resolved);
// HF-style config.json: model_schema's and, for MoE kinds, moe_schema's keys; README "Checkpoints".
nlohmann::json model_config_to_json(const ModelConfig& c);
// Errors name the file and the json key; missing optional keys keep their defaults.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace mohge
