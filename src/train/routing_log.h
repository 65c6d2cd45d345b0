// defines: RoutingLog — per-step routing metrics of every MoE layer, for the JSONL step log
// Per layer (over all micro-batches of the step): activated parameters per token, each expert's
// and group's activation share, MaxVio, and the FLOP-weighted device load under the contiguous,
// pairing and all_size placements for `devices` devices (moe/metrics.h).
#pragma once
#include <nlohmann/json.hpp>

#include "model/model.h"

namespace mohge {

class RoutingLog {
 public:
  RoutingLog(const Context& ctx, int devices) : ctx_(ctx), devices_(devices) {}
  void begin_step();
  void add_micro_batch();  // after a forward through ctx: activated parameters of that micro-batch
  nlohmann::json step_record() const;

 private:
  const Context& ctx_;
  int devices_;
  double active_ = 0, ffn_active_ = 0;
  int micro_ = 0;
};

}  // namespace mohge
