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
  return out;
}

}  // namespace mohge
