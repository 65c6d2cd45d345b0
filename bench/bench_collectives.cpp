// bench_collectives — the gradient collectives of data-parallel training (issue 9) through
// MpiCollective, as the trainer calls them, for several piece sizes (max_message): an all-reduce of
// the gradients (ZeRO-1 off), and ZeRO-1's reduce-scatter of the gradients plus all-gather of the
// updated weights. Run under mpirun; rank 0 prints one JSON line per piece size.
//
//   mpirun --oversubscribe -np 2 build/bench/bench_collectives [floats, default 16777216]
#include <mpi.h>

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "dist/mpi_collective.h"

using namespace mohge;

namespace {

// Seconds per call of fn on the slowest rank: the best of `trials` barrier-started calls (the
// machines are shared: the best is the stable number). Every rank makes the same calls.
template <class F>
double slowest_rank_seconds(F&& fn, int trials = 3) {
  double best = 1e30;
  for (int t = 0; t < trials; t++) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    fn();
    double s = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    best = std::min(best, s);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 16 << 20;
  std::vector<float> data(n, 1.0f);
  for (int64_t piece : {MpiCollective::kMaxInt, (int64_t)1 << 24, (int64_t)1 << 22, (int64_t)1 << 21, (int64_t)1 << 20, (int64_t)1 << 18}) {
    MpiCollective c(MPI_COMM_WORLD, piece);
    const int P = c.size();
    std::vector<int64_t> block(P);
    for (int r = 0; r < P; r++) block[r] = n / P + (r < n % P);
    const double allreduce = slowest_rank_seconds([&] { c.allreduce_sum(data.data(), n); });
    const double reduce_scatter = slowest_rank_seconds([&] { c.reduce_scatter_sum(data.data(), block.data()); });
    const double allgather = slowest_rank_seconds([&] { c.allgather(data.data(), block.data()); });
    if (mpi.rank() == 0)
      fmt::print("{{\"ranks\": {}, \"floats\": {}, \"max_message\": {}, \"allreduce_s\": {:.4f}, \"reduce_scatter_s\": {:.4f}, "
                 "\"allgather_s\": {:.4f}, \"zero1_s\": {:.4f}}}\n",
                 P, n, piece, allreduce, reduce_scatter, allgather, reduce_scatter + allgather);
  }
}
