#include "train/routing_log.h"

#include "moe/metrics.h"

namespace mohge {

void RoutingLog::begin_step() {
  active_ = ffn_active_ = 0;
  micro_ = 0;
}

void RoutingLog::add_micro_batch() {
  micro_++;
  active_ += model_.active_params_per_token();
  ffn_active_ += model_.ffn_active_params_per_token();
}

nlohmann::json RoutingLog::step_record() const {
  nlohmann::json layers = nlohmann::json::array();
  for (int l = 0; l < model_.cfg.num_layers; l++)
    if (auto r = model_.ffn(l).routing()) {
      nlohmann::json j = routing_metrics(r->config, r->step, model_.cfg.hidden_size, devices_);
      j["layer"] = l;
      layers.push_back(std::move(j));
    }
  return {{"active_params_per_token", active_ / micro_},
          {"ffn_active_params_per_token", ffn_active_ / micro_},
          {"layers", layers}};
}

}  // namespace mohge
