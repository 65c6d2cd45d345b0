// defines: the team of run_as_team (kernels/parallel.h): a leader thread running a program, the
// other threads of one OpenMP region waiting, spinning, for the jobs it hands them
#include "kernels/parallel.h"

#include <exception>
#include <mutex>
#include <thread>
#include <utility>

namespace mohge {

namespace {

// One spin step: the pause hint where there is one (it frees the core's shared resources and
// saves power), then, after ~40 µs of waiting, a yield, so that a thread waiting on a machine
// with more threads than cores lets the thread it waits for run.
inline void spin(int64_t& spins) {
  if (++spins < (1 << 11)) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    std::this_thread::yield();
  }
}

thread_local Team* tls_team = nullptr;

}  // namespace

// A job is published by writing it and then bumping `generation` (release); each other thread
// waits for a new generation (acquire), runs its part and counts `pending` down (release); the
// leader runs part 0 and waits for `pending` to reach 0 (acquire). The counters sit on cache
// lines of their own: the waiting threads read `generation` in a loop while `pending` is written.
class Team {
 public:
  // Before the first job: the threads of the region (they read it only after a job's release).
  void lead(int nt) { nt_ = nt; }

  void run(void (*job)(void*, int, int), void* ctx) {
    job_ = job, ctx_ = ctx;
    pending_.store(nt_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    tls_team = nullptr;  // loops inside part 0 run on the leader
    part(0);
    tls_team = this;
    for (int64_t spins = 0; pending_.load(std::memory_order_acquire) > 0;) spin(spins);
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  // The other threads' loop (thread t ≥ 1) until stop().
  void serve(int t) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g;
      for (int64_t spins = 0; (g = generation_.load(std::memory_order_acquire)) == seen;) spin(spins);
      seen = g;
      if (!job_) return;
      part(t);
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  void stop() {
    job_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }

 private:
  void part(int t) {
    try {
      job_(ctx_, t, nt_);
    } catch (...) {  // the first error is rethrown by the leader once every part has ended
      std::lock_guard lock(error_mu_);
      if (!error_) error_ = std::current_exception();
    }
  }

  int nt_ = 1;
  void (*job_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
  std::mutex error_mu_;
  std::exception_ptr error_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
};

Team* current_team() { return tls_team; }

void team_run(Team* team, void (*job)(void*, int, int), void* ctx) { team->run(job, ctx); }

void run_as_team(bool worth, void (*program)(void*), void* ctx) {
  if (tls_team || !parallel_region_pays(worth)) return program(ctx);
  Team team;
  std::exception_ptr error;
#pragma omp parallel
  if (omp_get_thread_num() == 0) {
    team.lead(omp_get_num_threads());
    tls_team = &team;
    try {
      program(ctx);
    } catch (...) {
      error = std::current_exception();
    }
    tls_team = nullptr;
    team.stop();
  } else {
    team.serve(omp_get_thread_num());
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace mohge
