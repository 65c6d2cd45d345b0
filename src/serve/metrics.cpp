#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace mohge {

Metrics::Metrics() {
  ttft_.bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  itl_.bounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
  ttft_.counts.assign(ttft_.bounds.size() + 1, 0);
  itl_.counts.assign(itl_.bounds.size() + 1, 0);
  for (const char* o : {"stop", "length", "cancelled", "error", "bad_request", "queue_full", "unavailable"})
    requests_[o] = 0;
}

void Metrics::Histogram::observe(double v) {
  counts[std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin()]++;
  sum += v;
  count++;
}

void Metrics::Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  long cum = 0;
  for (size_t i = 0; i < bounds.size(); i++) {
    cum += counts[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count, name, sum, name, count);
}

void Metrics::count_request(const std::string& outcome) {
  std::lock_guard lk(mu_);
  requests_[outcome]++;
}

void Metrics::set_queue(int waiting) {
  std::lock_guard lk(mu_);
  queue_ = waiting;
}

void Metrics::set_running(int sequences) {
  std::lock_guard lk(mu_);
  running_ = sequences;
}

void Metrics::add_tokens(int prompt, int generated, double active_params, double flops_per_token) {
  std::lock_guard lk(mu_);
  prompt_tokens_ += prompt;
  generated_tokens_ += generated;
  active_params_ = active_params;
  flops_per_token_ = flops_per_token;
}

void Metrics::observe_first_token(double seconds) {
  std::lock_guard lk(mu_);
  ttft_.observe(seconds);
}

void Metrics::observe_inter_token(double seconds) {
  std::lock_guard lk(mu_);
  itl_.observe(seconds);
}

void Metrics::add_routing(int layer, const MoeConfig& cfg, const std::vector<int>& tokens_per_expert,
                          const std::vector<int>& tokens_per_group) {
  std::lock_guard lk(mu_);
  LayerRouting& r = routing_[layer];
  if (r.widths.empty()) {
    r.widths = cfg.expert_widths;
    r.experts_per_group = cfg.router == RouterKind::two_level ? cfg.experts_per_group : 0;
    r.expert_rows.assign(r.widths.size(), 0);
    if (r.experts_per_group) r.group_tokens.assign(cfg.num_expert_groups, 0);
  }
  for (size_t e = 0; e < tokens_per_expert.size() && e < r.expert_rows.size(); e++) r.expert_rows[e] += tokens_per_expert[e];
  for (size_t g = 0; g < tokens_per_group.size() && g < r.group_tokens.size(); g++) r.group_tokens[g] += tokens_per_group[g];
}

// Per-expert counters, and the shares of all assignments (every MoE layer together) by expert
// width and, for two-level routing, by group: how much of the served work the small experts took.
void Metrics::render_routing(std::string& out) const {
  if (routing_.empty()) return;
  out += "# HELP mohge_expert_assignments_total Token rows routed to each expert, by MoE layer.\n"
         "# TYPE mohge_expert_assignments_total counter\n";
  std::map<int, long> by_width;
  std::map<std::pair<int, int>, long> by_group;  // (group, width)
  long all = 0;
  for (const auto& [l, r] : routing_)
    for (size_t e = 0; e < r.expert_rows.size(); e++) {
      out += fmt::format("mohge_expert_assignments_total{{layer=\"{}\",expert=\"{}\",width=\"{}\"}} {}\n", l, e,
                         r.widths[e], r.expert_rows[e]);
      by_width[r.widths[e]] += r.expert_rows[e];
      if (r.experts_per_group) by_group[{(int)e / r.experts_per_group, r.widths[e]}] += r.expert_rows[e];
      all += r.expert_rows[e];
    }
  const double denom = all > 0 ? (double)all : 1.0;
  out += "# HELP mohge_width_share Share of expert assignments (all MoE layers) taken by experts of each width.\n"
         "# TYPE mohge_width_share gauge\n";
  for (const auto& [w, n] : by_width) out += fmt::format("mohge_width_share{{width=\"{}\"}} {}\n", w, n / denom);
  if (by_group.empty()) return;
  out += "# HELP mohge_group_share Share of expert assignments (all MoE layers) taken by each expert group.\n"
         "# TYPE mohge_group_share gauge\n";
  for (const auto& [gw, n] : by_group)
    out += fmt::format("mohge_group_share{{group=\"{}\",width=\"{}\"}} {}\n", gw.first, gw.second, n / denom);
  out += "# HELP mohge_group_tokens_total Tokens whose selected groups include each group, by MoE layer.\n"
         "# TYPE mohge_group_tokens_total counter\n";
  for (const auto& [l, r] : routing_)
    for (size_t g = 0; g < r.group_tokens.size(); g++)
      out += fmt::format("mohge_group_tokens_total{{layer=\"{}\",group=\"{}\"}} {}\n", l, g, r.group_tokens[g]);
}

std::string Metrics::render() const {
  std::lock_guard lk(mu_);
  std::string out;
  out += "# HELP mohge_requests_total Requests by outcome.\n# TYPE mohge_requests_total counter\n";
  for (const auto& [k, v] : requests_) out += fmt::format("mohge_requests_total{{outcome=\"{}\"}} {}\n", k, v);
  auto scalar = [&](const char* name, const char* type, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  scalar("mohge_prompt_tokens_total", "counter", "Prompt tokens prefilled.", (double)prompt_tokens_);
  scalar("mohge_generation_tokens_total", "counter", "Tokens generated.", (double)generated_tokens_);
  scalar("mohge_queue_depth", "gauge", "Requests waiting for a sequence slot.", queue_);
  scalar("mohge_running_sequences", "gauge", "Sequences being generated.", running_);
  scalar("mohge_activated_params_per_token", "gauge", "Parameters used per token in the last step.", active_params_);
  scalar("mohge_flops_per_token", "gauge",
         "FLOPs per token in the last step, without attention over the cache (2 per activated parameter).",
         flops_per_token_);
  ttft_.render(out, "mohge_time_to_first_token_seconds", "From submission to the first generated token.");
  itl_.render(out, "mohge_inter_token_latency_seconds", "Between two generated tokens of one sequence.");
  render_routing(out);
  return out;
}

}  // namespace mohge
