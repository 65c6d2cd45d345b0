// defines: Watchdog (see watchdog.h)
#include "dist/watchdog.h"

#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace mohge {

namespace {

int64_t now_ns() {
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

Watchdog::Armed::Armed(Watchdog* w, const char* call) : w_(w) {
  if (!w_) return;
  w_->call_ = call;
  w_->since_ns_ = now_ns();
}

Watchdog::Armed::~Armed() {
  if (w_) w_->since_ns_ = 0;
}

void Watchdog::watch() {
  const auto tick = std::chrono::milliseconds(100);
  std::unique_lock<std::mutex> lk(mu_);
  int64_t reported = 0;  // the call already reported (its start time)
  while (!cv_.wait_for(lk, tick, [&] { return stop_; })) {
    const int64_t since = since_ns_;
    if (since == 0 || since == reported || (now_ns() - since) * 1e-9 < timeout_s_) continue;
    reported = since;
    on_timeout_(fmt::format("rank {} of {}: {} waited more than {} s (parallel.timeout_s) for the other ranks: one "
                            "of them died, hangs or was stopped",
                            rank_, size_, call_.load(), timeout_s_));
  }
}

}  // namespace mohge
