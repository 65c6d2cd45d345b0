// defines: Metrics — the server's counters, gauges and latency histograms, as Prometheus text
// Thread-safe: the scheduler thread and the HTTP threads update it, GET /metrics renders it
// (text exposition format 0.0.4, https://prometheus.io/docs/instrumenting/exposition_formats/).
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "moe/moe_config.h"

namespace mohge {

class Metrics {
 public:
  Metrics();
  // A request ended: outcome "stop" | "length" | "cancelled" | "error" (generation) or
  // "bad_request" | "queue_full" | "unavailable" (refused before generating).
  void count_request(const std::string& outcome);
  void set_queue(int waiting);
  void set_running(int sequences);
  // One batched step: prompt tokens prefilled, tokens generated, the activated parameters per token
  // of the step and its FLOPs per token (at position 0; attention adds with the position).
  void add_tokens(int prompt, int generated, double active_params, double flops_per_token);
  void observe_first_token(double seconds);  // from submission to the first token
  void observe_inter_token(double seconds);  // between two tokens of one sequence
  // One batched step's routing in MoE layer `layer` (moe/router.h Routing counts): rows routed to
  // each expert [E], and for two-level routing the tokens whose selected groups include g [Ng].
  // Rendered as per-expert counters and the shares by expert width and by group, over all layers
  // (SPEC §6's expert and group shares, of served tokens).
  void add_routing(int layer, const MoeConfig& cfg, const std::vector<int>& tokens_per_expert,
                   const std::vector<int>& tokens_per_group);
  std::string render() const;

 private:
  struct Histogram {
    std::vector<double> bounds;  // upper bounds, ascending; +Inf implied
    std::vector<long> counts;    // per bucket (not cumulative)
    double sum = 0;
    long count = 0;
    void observe(double v);
    void render(std::string& out, const std::string& name, const std::string& help) const;
  };
  mutable std::mutex mu_;
  std::map<std::string, long> requests_;
  long prompt_tokens_ = 0, generated_tokens_ = 0;
  int queue_ = 0, running_ = 0;
  double active_params_ = 0, flops_per_token_ = 0;
  Histogram ttft_, itl_;
  struct LayerRouting {
    std::vector<int> widths;               // [E] expert widths
    int experts_per_group = 0;             // two-level: N (group g = experts g·N .. g·N+N-1); else 0
    std::vector<long> expert_rows;         // [E]
    std::vector<long> group_tokens;        // [Ng] two-level
  };
  std::map<int, LayerRouting> routing_;    // by layer index
  void render_routing(std::string& out) const;
};

}  // namespace mohge
