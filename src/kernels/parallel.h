// defines: parallel_rows, parallel_tasks — loops split across the OpenMP threads only where that
//          pays — parallel_region_pays, kParallelMinElems, and run_as_team, which keeps the
//          threads waiting between the loops of one short program (a decode step)
#pragma once
#include <omp.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

namespace mohge {

// Below this many elements a loop runs on the calling thread: opening a parallel region costs
// ~2 µs at 2 threads (libomp on the 2-core machine), more than splitting such a loop saves.
// Decode's per-token ops (one row of d or W elements) stay serial; training's batches split.
inline constexpr int64_t kParallelMinElems = 1 << 14;

// Whether a parallel region pays: `worth` it by the caller's measure of the work, more than one
// thread, and not inside a parallel region already (an expert of MoeExperts' concurrent loop). A
// region that the runtime serialises still costs a call into it: with libgomp a system call, with
// libomp an allocation for each nested one.
inline bool parallel_region_pays(bool worth) {
  return worth && omp_get_max_threads() > 1 && !omp_in_parallel();
}

// The team of run_as_team that the calling thread leads, while it runs the team's program outside
// a job; null on every other thread and at any other time.
class Team;
Team* current_team();
// job(ctx, t, nt) on each of the team's nt threads (t = 0: the caller, its leader); returns when
// all have. Inside a job no thread leads: loops it opens run on their own thread.
void team_run(Team* team, void (*job)(void* ctx, int t, int nt), void* ctx);

// body(i0, i1) over [0, n): one contiguous range per thread where that pays — the team's threads
// inside run_as_team, else an OpenMP region (parallel_region_pays) — else body(0, n) on the
// calling thread without entering the runtime. Each index is handled by exactly one call, so
// results do not depend on the thread count.
template <class F>
void parallel_rows(int64_t n, bool worth, F&& body) {
  auto range = [&](int t, int nt) {
    const int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
    if (i0 < i1) body(i0, i1);
  };
  if (worth && n > 1) {
    if (Team* team = current_team()) {
      using R = decltype(range);
      return team_run(team, [](void* c, int t, int nt) { (*static_cast<R*>(c))(t, nt); }, &range);
    }
    if (parallel_region_pays(true)) {
#pragma omp parallel
      range(omp_get_thread_num(), omp_get_num_threads());
      return;
    }
  }
  if (n > 0) body(0, n);
}

// body(i) for i in [0, n), the threads taking the next index as they finish one (tasks of unequal
// cost: experts, attention heads over caches of different lengths), where that pays as for
// parallel_rows; else in order on the calling thread.
template <class F>
void parallel_tasks(int64_t n, bool worth, F&& body) {
  if (worth && n > 1) {
    if (Team* team = current_team()) {
      std::atomic<int64_t> next{0};
      auto take = [&] {
        for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) body(i);
      };
      using R = decltype(take);
      return team_run(team, [](void* c, int, int) { (*static_cast<R*>(c))(); }, &take);
    }
    if (parallel_region_pays(true)) {
#pragma omp parallel for schedule(dynamic, 1)
      for (int64_t i = 0; i < n; i++) body(i);
      return;
    }
  }
  for (int64_t i = 0; i < n; i++) body(i);
}

// program() on the calling thread with the other OpenMP threads of one parallel region waiting
// for the loops it splits (parallel_rows, parallel_tasks), where a region pays and the caller
// does not lead a team already; else program() alone. Why: a decode step is ~20 products of tens
// of µs each (the threads splitting each) between serial ops; opening a region per product costs
// ~1.6 µs at 2 threads in this VM, handing a loop to threads that wait spinning ~0.3 µs. The
// waiting threads spin (and yield after ~40 µs), so the program should be short, and any GEMM it
// calls runs on the leader alone (OpenMP regions inside it are nested). Errors thrown by the
// program or a loop reach the caller.
void run_as_team(bool worth, void (*program)(void* ctx), void* ctx);
template <class F>
void run_as_team(bool worth, F&& program) {
  using P = std::remove_reference_t<F>;
  run_as_team(worth, [](void* c) { (*static_cast<P*>(c))(); }, const_cast<std::remove_const_t<P>*>(&program));
}

}  // namespace mohge
