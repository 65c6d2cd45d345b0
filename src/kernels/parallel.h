// defines: parallel_rows, parallel_region_pays — a loop split across the OpenMP threads only
//          where a parallel region pays — and kParallelMinElems, the size below which it does not
#pragma once
#include <omp.h>

#include <cstdint>

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

// body(i0, i1) over [0, n): one contiguous range per OpenMP thread when a region pays
// (parallel_region_pays), else body(0, n) on the calling thread without entering the runtime.
// Each index is handled by exactly one call, so results do not depend on the thread count.
template <class F>
void parallel_rows(int64_t n, bool worth, F&& body) {
  if (parallel_region_pays(worth && n > 1)) {
#pragma omp parallel
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
      if (i0 < i1) body(i0, i1);
    }
  } else if (n > 0) {
    body(0, n);
  }
}

}  // namespace mohge
