// fuzz target: a checkpoint's config.json -> ModelConfig (model_config_from_json and validate).
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_expect_clean([&] {
    // as checkpoint_config_json reads it: malformed JSON is a clean error
    nlohmann::json j = nlohmann::json::parse(std::string((const char*)data, size), nullptr, false);
    if (j.is_discarded()) return;
    mohge::ModelConfig c = mohge::model_config_from_json(j, "<fuzz>/config.json");
    c.validate();
    // a config that loads must round-trip
    if (mohge::model_config_to_json(mohge::model_config_from_json(mohge::model_config_to_json(c), "<rt>")) !=
        mohge::model_config_to_json(c))
      std::abort();
  });
  return 0;
}
