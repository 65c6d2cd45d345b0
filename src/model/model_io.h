// defines: model_save, model_load, checkpoint_resolve — the HF-compatible part of a checkpoint
// A checkpoint directory holds config.json (HF-style keys) and model.safetensors (F32, names as
// in Hugging Face LLaMA/Mixtral conventions). Loading checks that every tensor the config
// implies is present with its exact shape and that no unknown tensor is there.
#pragma once
#include <memory>
#include <string>

#include "model/model.h"

namespace mohge {

void model_save(const std::string& dir, const Model& m);  // dir must exist; files written atomically
std::unique_ptr<Model> model_load(const std::string& dir, Backend& be = cpu_backend());
// Loads model.safetensors of dir into m (whose config must match the checkpoint's tensors).
// own_experts_only: m is one expert-parallel rank, holding only some of the checkpoint's experts
// (the others' tensors are skipped, not an error).
void model_load_weights(const std::string& dir, Model& m, bool own_experts_only = false);
nlohmann::json checkpoint_config_json(const std::string& dir);

// A checkpoint dir (has config.json) as is; a run dir -> its newest checkpoint. Clear error otherwise.
std::string checkpoint_resolve(const std::string& path);

}  // namespace mohge
