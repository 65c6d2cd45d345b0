// defines: mohge::Watchdog — ends a rank that waits too long in a collective (issue 9: a peer that
//          died or hangs must not leave the job hanging)
// An MPI collective blocks until every rank of the communicator enters it; a rank that died, hung
// or stopped leaves the others waiting forever. MpiCollective arms the watchdog around each call; a
// thread checks it a few times a second and, once a call has waited timeout_s, reports it: by
// default "error: rank R of P: MPI_X waited more than T s ..." on stderr and _exit(1), after which
// mpirun ends every other rank. A peer known to be dead (watch_peers: a rank on this host whose
// process ended) is reported as soon as a call has waited a moment for it, naming that rank.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mohge {

class Watchdog {
 public:
  // on_timeout: receives the message (tests record it; the default prints it and exits the
  // process). It runs on the watchdog's thread, once per call that times out.
  Watchdog(double timeout_s, int rank, int size, std::function<void(const std::string&)> on_timeout = {});
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  double timeout_s() const { return timeout_s_; }
  // lost_ranks: polled while a call has waited 0.3 s or more, and after a termination signal
  // (interrupt_signal non-zero: core/signals.h's, passed in because this code runs in the MPI
  // module, which links no copy of core); the ranks it returns (dead peers) are reported at once:
  // "rank R of P: rank K ended (killed or crashed) while MPI_X waited for it".
  void watch_peers(std::function<std::vector<int>()> lost_ranks, int (*interrupt_signal)() = nullptr);

  // Arms the watchdog for one call (`call` must outlive it: a string literal); disarms on scope exit.
  class Armed {
   public:
    Armed(Watchdog* w, const char* call);
    ~Armed();
   private:
    Watchdog* w_;
  };

 private:
  void watch();
  double timeout_s_;
  int rank_, size_;
  std::function<void(const std::string&)> on_timeout_;
  std::function<std::vector<int>()> lost_ranks_;  // guarded by mu_
  int (*interrupt_signal_)() = nullptr;           // guarded by mu_
  std::atomic<int64_t> since_ns_{0};  // steady-clock start of the armed call; 0: none
  std::atomic<const char*> call_{nullptr};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mohge
