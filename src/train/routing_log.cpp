#include "train/routing_log.h"

#include "model/ffn_moe.h"

namespace mohge {

void RoutingLog::begin_step() {
  tokens_per_expert_.assign(model_.cfg.num_layers, {});
  active_ = ffn_active_ = 0;
  micro_ = 0;
}

void RoutingLog::add_micro_batch() {
  micro_++;
  active_ += model_.active_params_per_token();
  ffn_active_ += model_.ffn_active_params_per_token();
  for (int l = 0; l < model_.cfg.num_layers; l++) {
    auto* moe = dynamic_cast<const MoeFfn*>(&model_.ffn(l));
    if (!moe) continue;
    auto& acc = tokens_per_expert_[l];
    const auto& n = moe->routing().tokens_per_expert;
    acc.resize(n.size(), 0.0);
    for (size_t e = 0; e < n.size(); e++) acc[e] += n[e];
  }
}

nlohmann::json RoutingLog::step_record() const {
  nlohmann::json layers = nlohmann::json::array();
  for (int l = 0; l < model_.cfg.num_layers; l++)
    if (!tokens_per_expert_[l].empty())
      layers.push_back({{"layer", l}, {"tokens_per_expert", tokens_per_expert_[l]}});
  return {{"active_params_per_token", active_ / micro_},
          {"ffn_active_params_per_token", ffn_active_ / micro_},
          {"layers", layers}};
}

}  // namespace mohge
