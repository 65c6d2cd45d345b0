// defines: TrainerState, trainer_state_to_json, trainer_state_parse — trainer_state.json of a checkpoint
// {"step": 200, "loader_seed": 1234, "loader_batches": 400, "tokens": 409600.0, "elapsed_s": 61.2}
// Parsing trusts nothing: each key must be present with its type (integers as JSON integers, not
// 1.5 or "7"), step in [0, 2^31) (train.steps is an int), at most 2^31 loader batches per step
// (grad_accum is an int), tokens and elapsed_s finite and non-negative.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "data/dataloader.h"

namespace mohge {

struct TrainerState {
  int64_t step = 0;  // optimizer steps completed
  LoaderState loader;
  double tokens = 0, elapsed_s = 0;
};

nlohmann::json trainer_state_to_json(const TrainerState& st);
// `text` is the file's content, `path` labels errors ("<path>: corrupt trainer state (...)").
TrainerState trainer_state_parse(const std::string& text, const std::string& path);

}  // namespace mohge
