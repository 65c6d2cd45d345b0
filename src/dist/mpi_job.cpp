// defines: MpiJob (see mpi_job.h)
#include "dist/mpi_job.h"

#include <fmt/core.h>

#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace mohge {

MpiJob::MpiJob(int (*interrupt_signal)()) : interrupt_signal_(interrupt_signal), session_(nullptr, nullptr) {}

void MpiJob::split(int data_parallel, int expert_parallel, double timeout_s) {
  const int P = data_parallel * expert_parallel;
  MOHGE_CHECK(P == size(),
              "parallel.data_parallel × parallel.expert_parallel = {} × {} = {} ranks, but the job has {} (start "
              "it with `mpirun -np {} mohge train ...`)",
              data_parallel, expert_parallel, P, size(), P);
  watchdog_ = std::make_unique<Watchdog>(timeout_s, rank(), size());
  // Collectives go in pieces of 2 Mi elements (8 MiB of floats): Open MPI 4.1 over shared memory
  // all-reduces 64 MiB of gradients 4–7× faster in such pieces than in one call, and reduce-scatters
  // them 16–20× faster (bench/bench_collectives.cpp, docs/BENCHMARKS.md).
  const int64_t piece = int64_t(1) << 21, span = MpiCollective::kMaxInt;
  world_ = std::make_unique<MpiCollective>(MPI_COMM_WORLD, piece, span, watchdog_.get());
  MPI_Comm ep = MPI_COMM_NULL, edp = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank() / expert_parallel, rank(), &ep);
  MPI_Comm_split(MPI_COMM_WORLD, rank() % expert_parallel, rank(), &edp);
  expert_ = std::make_unique<MpiCollective>(ep, piece, span, watchdog_.get());  // duplicates: ours to free
  expert_data_ = std::make_unique<MpiCollective>(edp, piece, span, watchdog_.get());
  MPI_Comm_free(&ep), MPI_Comm_free(&edp);
  groups_ = {world_.get(), expert_.get(), expert_data_.get()};
  peers_ = std::make_unique<LocalPeers>(MPI_COMM_WORLD);
  watchdog_->watch_peers([peers = peers_.get()] { return peers->lost_to_report(); }, interrupt_signal_);
}

void MpiJob::fail_everywhere() {
  if (rank() == 0) throw;
  world_.reset(), expert_.reset(), expert_data_.reset();
  MPI_Finalize();
  std::exit(1);
}

void MpiJob::abort(const std::string& what) {
  fmt::print(stderr, "error: rank {} of {}: {}\n", rank(), size(), single_line(what));
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // not reached
}

}  // namespace mohge
