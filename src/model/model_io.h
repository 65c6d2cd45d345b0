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
// A checkpoint loaded to run it (generate, serve, bench_infer): weights only, no gradients; on a
// host-memory backend the weights are model.safetensors memory-mapped read-only when its layout is
// the model's (as model_save writes it), else copied; every tensor checked as model_load does
// (shapes, finite values, no unknown tensor); frozen for inference (Model::freeze_for_inference).
// weights_dtype: "fp32" or "bf16", the weights and matmul precision, overriding the checkpoint's
// (bf16 weights are converted at load; the --weights-dtype option); "" keeps the checkpoint's.
std::unique_ptr<Model> model_load_inference(const std::string& dir, Backend& be = cpu_backend(),
                                            const std::string& weights_dtype = "");
// Loads model.safetensors of dir into m (whose config must match the checkpoint's tensors).
// own_experts_only: m is one expert-parallel rank, holding only some of the checkpoint's experts
// (the others' tensors are skipped, not an error).
void model_load_weights(const std::string& dir, Model& m, bool own_experts_only = false);
nlohmann::json checkpoint_config_json(const std::string& dir);

// A checkpoint dir (has config.json) as is; a run dir -> its newest checkpoint. Clear error otherwise.
std::string checkpoint_resolve(const std::string& path);

}  // namespace mohge
