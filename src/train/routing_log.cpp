#include "train/routing_log.h"

#include "moe/metrics.h"

namespace mohge {

void RoutingLog::begin_step() {
  active_ = ffn_active_ = 0;
  micro_ = 0;
}

void RoutingLog::add_micro_batch() {
  micro_++;
  active_ += ctx_.active_params_per_token();
  ffn_active_ += ctx_.ffn_active_params_per_token();
}

nlohmann::json RoutingLog::step_record() const {
  const Model& model = ctx_.model();
  nlohmann::json layers = nlohmann::json::array();
  for (int l = 0; l < model.cfg.num_layers; l++)
    if (auto r = model.ffn(l).routing()) {
      nlohmann::json j = routing_metrics(r->config, r->step, model.cfg.hidden_size, devices_);
      j["layer"] = l;
      layers.push_back(std::move(j));
    }
  return {{"active_params_per_token", active_ / micro_},
          {"ffn_active_params_per_token", ffn_active_ / micro_},
          {"layers", layers}};
}

}  // namespace mohge
