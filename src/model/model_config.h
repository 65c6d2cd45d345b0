// defines: ModelConfig, model_config_read (TOML [model] + [moe]), HF config.json conversion
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/toml_config.h"
#include "kernels/gemm.h"
#include "moe/moe_config.h"

namespace mohge {

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
  std::string ffn_kind = "dense";  // dense | moe | hmoe | mohge
  int first_dense_layers = 0;      // the first n layers keep a dense FFN
  MoeConfig moe;                   // used when ffn_kind != dense
  // How the model runs, not what it is: not part of config.json (a checkpoint trained in bf16
  // loads in fp32 and vice versa). Routers always run in fp32.
  Precision matmul_precision = Precision::fp32;

  int head_dim() const { return hidden_size / num_heads; }
  bool is_moe() const { return ffn_kind != "dense"; }
  bool layer_is_moe(int l) const { return is_moe() && l >= first_dense_layers; }
  void validate() const;  // clear errors for sizes <= 0, heads not dividing the width, ...
};

// Reads [model] and [moe] (all keys optional; defaults above). Validates.
ModelConfig model_config_read(TomlDoc& doc);
nlohmann::json model_config_to_json(const ModelConfig& c);  // HF-style config.json
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace mohge
