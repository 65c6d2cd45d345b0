// defines: Watchdog (see watchdog.h)
#include "dist/watchdog.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace mohge {

namespace {

int64_t now_ns() {  // a call's identity: when it was armed
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Watchdog::Watchdog(double timeout_s, int rank, int size, std::function<void(const std::string&)> on_timeout)
    : timeout_s_(timeout_s), rank_(rank), size_(size), on_timeout_(std::move(on_timeout)) {
  if (!on_timeout_)
    on_timeout_ = [](const std::string& msg) {
      std::fputs(("error: " + msg + "\n").c_str(), stderr);
      std::fflush(stderr);
      _exit(1);  // the main thread is blocked in MPI: nothing else can end this rank
    };
  thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::watch_peers(std::function<std::vector<int>()> lost_ranks, int (*interrupt_signal)()) {
  std::lock_guard<std::mutex> lk(mu_);
  lost_ranks_ = std::move(lost_ranks);
  interrupt_signal_ = interrupt_signal;
}

Watchdog::Armed::Armed(Watchdog* w, const char* call) : w_(w) {
  if (!w_) return;
  w_->call_ = call;
  w_->since_ns_ = now_ns();
}

Watchdog::Armed::~Armed() {
  if (w_) w_->since_ns_ = 0;
}

// The wait is counted in the watchdog's own ticks, not read off the clock: a process that was
// stopped (SIGSTOP, then SIGCONT as mpirun ends the job) has not waited while it was stopped, and
// must not report a timeout its peers already reported — nor, ever after, a lost peer: the peer may
// have ended on its own timeout, waiting for this one (a stop shows as a tick a second late). A
// stop also restarts the current call's wait: its peers get a full timeout_s after this rank
// resumes (mpirun's SIGCONT, SIGTERM, SIGKILL end it first; a wait that had nearly timed out
// before the stop reported again in that second, a rank that had hung blaming the others).
// Lost peers are looked for while a call waits, and at once when a termination signal arrives
// (mpirun's SIGTERM, a second before its SIGKILL, finds a computing rank outside any call).
void Watchdog::watch() {
  const double tick_s = 0.1;
  std::unique_lock<std::mutex> lk(mu_);
  int64_t seen = 0, reported = 0;  // the armed call (its start time) last seen, and last reported
  bool was_stopped = false, lost_reported = false;
  double waited = 0;
  int64_t last_tick = now_ns();
  while (!cv_.wait_for(lk, std::chrono::duration<double>(tick_s), [&] { return stop_; })) {
    const int64_t since = since_ns_, tick = now_ns();
    waited = since != 0 && since == seen ? waited + tick_s : 0;
    seen = since;
    if (tick - last_tick > 1'000'000'000) was_stopped = true, waited = 0;
    last_tick = tick;
    std::string why;
    if (since != 0 && since != reported && waited >= timeout_s_) {
      why = fmt::format("rank {} of {}: {} waited more than {} s (parallel.timeout_s) for the other ranks: one of them "
                        "died, hangs or was stopped",
                        rank_, size_, call_.load(), timeout_s_);
    } else if (lost_ranks_ && !was_stopped && !lost_reported &&
               ((since != 0 && waited >= 0.3) || (interrupt_signal_ && interrupt_signal_()))) {
      const std::vector<int> lost = lost_ranks_();
      if (!lost.empty())
        why = fmt::format("rank {} of {}: rank {} ended (killed or crashed){}: the job cannot go on; resume it from its "
                          "last checkpoint",
                          rank_, size_, fmt::join(lost, ", rank "),
                          since != 0 ? fmt::format(" while {} waited for it", call_.load()) : std::string());
      lost_reported = !lost.empty();
    }
    if (why.empty()) continue;
    if (since != 0) reported = since;
    on_timeout_(why);
  }
}

}  // namespace mohge
