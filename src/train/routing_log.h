// defines: RoutingLog — per-step routing metrics of every MoE layer, for the JSONL step log
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "model/model.h"

namespace mohge {

class RoutingLog {
 public:
  explicit RoutingLog(const Model& m) : model_(m) {}
  void begin_step();
  void add_micro_batch();  // after a forward: accumulate that micro-batch's routing
  nlohmann::json step_record() const;

 private:
  const Model& model_;
  std::vector<std::vector<double>> tokens_per_expert_;  // [layer][E], summed over micro-batches
  double active_ = 0, ffn_active_ = 0;
  int micro_ = 0;
};

}  // namespace mohge
