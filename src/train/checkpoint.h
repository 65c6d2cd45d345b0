// defines: TrainerState, checkpoint_save, checkpoint_load_training — full training checkpoints
// Layout of <out_dir>/checkpoints/step_XXXXXXXX/:
//   config.json, model.safetensors   model (model_io.h; loadable on their own)
//   optimizer.safetensors            AdamW moments "m.<param>", "v.<param>"
//   trainer_state.json               step, data-loader position, counters
//   tokenizer.model                  the SentencePiece model the run trained with
//   run.toml                         the resolved run config
//   routing.json                     MoE routing metrics of the last step (MoE models only)
// The directory is written as .tmp_step_XXXXXXXX and renamed when complete, so a run killed at
// any moment leaves every earlier checkpoint intact and never a half-written one under step_*.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/model.h"
#include "train/optimizer.h"
#include "train/trainer_state.h"

namespace mohge {

// Returns the checkpoint directory written. Keeps the newest `keep` checkpoints.
std::string checkpoint_save(const std::string& out_dir, const Model& m, const AdamW& opt,
                            const TrainerState& st, const std::string& tokenizer_bytes,
                            const std::string& run_toml, int keep,
                            const nlohmann::json& routing = nullptr);
// opt must hold whole moments (AdamW::whole; a ZeRO-1 run gathers them first).
// Restores optimizer moments (the ranges opt owns) and trainer state from a checkpoint dir into opt/st. The state's step
// must be the one the directory is named after (step_00000200 holds step 200).
void checkpoint_load_training(const std::string& dir, const Model& m, AdamW& opt, TrainerState& st);

}  // namespace mohge
