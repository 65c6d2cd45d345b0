// defines: trainer_state_to_json, trainer_state_parse
#include "train/trainer_state.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace mohge {

nlohmann::json trainer_state_to_json(const TrainerState& st) {
  return {{"step", st.step},
          {"loader_seed", st.loader.seed},
          {"loader_batches", st.loader.batches},
          {"tokens", st.tokens},
          {"elapsed_s", st.elapsed_s}};
}

TrainerState trainer_state_parse(const std::string& text, const std::string& path) {
  auto bad = [&](const std::string& why) { fail("{}: corrupt trainer state ({})", path, why); };
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) bad("not valid JSON");
  if (!j.is_object()) bad("not a JSON object");
  auto uint_at = [&](const char* key) -> uint64_t {
    if (!j.contains(key)) bad(fmt::format("missing \"{}\"", key));
    if (!j[key].is_number_unsigned()) bad(fmt::format("\"{}\" must be a non-negative integer", key));
    return j[key].get<uint64_t>();
  };
  auto real_at = [&](const char* key) -> double {
    if (!j.contains(key)) bad(fmt::format("missing \"{}\"", key));
    if (!j[key].is_number()) bad(fmt::format("\"{}\" must be a number", key));
    double v = j[key].get<double>();
    if (!(std::isfinite(v) && v >= 0)) bad(fmt::format("\"{}\" must be finite and >= 0", key));
    return v;
  };
  constexpr uint64_t kIntMax = std::numeric_limits<int32_t>::max();
  TrainerState st;
  const uint64_t step = uint_at("step");
  if (step > kIntMax) bad(fmt::format("step {} exceeds the largest train.steps, {}", step, kIntMax));
  st.step = (int64_t)step;
  st.loader.seed = uint_at("loader_seed");
  st.loader.batches = uint_at("loader_batches");
  if (st.loader.batches / std::max<uint64_t>(step, 1) > kIntMax)
    bad(fmt::format("{} loader batches for {} steps: a step draws at most 2^31 (train.grad_accum)", st.loader.batches,
                    step));
  st.tokens = real_at("tokens");
  st.elapsed_s = real_at("elapsed_s");
  return st;
}

}  // namespace mohge
