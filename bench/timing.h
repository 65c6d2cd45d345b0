// defines: best_seconds_per_call — the one timing loop of the benchmarks.
#pragma once
#include <algorithm>
#include <chrono>

namespace mohge::bench {

// Seconds per call of fn: one warm-up call, then `trials` measurements of at least
// `trial_seconds` each, and the fastest. The machines are shared: the best trial is the stable
// number, the mean is not.
template <class F> double best_seconds_per_call(F&& fn, int trials = 3, double trial_seconds = 0.1) {
  using clk = std::chrono::steady_clock;
  fn();
  double best = 1e30;
  for (int t = 0; t < trials; t++) {
    int reps = 0;
    const auto t0 = clk::now();
    double s = 0.0;
    while (s < trial_seconds) {
      fn();
      reps++;
      s = std::chrono::duration<double>(clk::now() - t0).count();
    }
    best = std::min(best, s / reps);
  }
  return best;
}

}  // namespace mohge::bench
