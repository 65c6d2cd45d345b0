// defines: mohge::MpiJob — the ParallelJob (core/parallel_job.h) of `mpirun -np P mohge train`:
//          MPI's lifetime, the communicators of this rank's ParallelGroups, and how a job fails
// Issue 9, SPEC §5: P = DP × EP; rank p·EP + q is expert-parallel rank q of group p (ranks
// p·EP .. p·EP+EP−1 exchange tokens), and holds the experts of ranks q, q+EP, q+2·EP, … (its
// expert-data-parallel group, over which those experts' gradients are summed). The binary reaches
// it through the module libmohge_mpi.so (dist/mpi_module.cpp); tests link it directly.
#pragma once
#include <memory>
#include <string>

#include "core/parallel_job.h"
#include "dist/local_peers.h"
#include "dist/mpi_collective.h"

namespace mohge {

class MpiJob final : public ParallelJob {
 public:
  // Initialises MPI (MpiSession). interrupt_signal: core/signals.h's interrupt_signal, which the
  // watchdog polls (a termination signal makes it look for dead peers at once).
  explicit MpiJob(int (*interrupt_signal)());
  int rank() const override { return session_.rank(); }
  int size() const override { return session_.size(); }
  // a timed-out collective ends the job (Watchdog); a rank on this host whose process ended is
  // reported sooner, by name (LocalPeers)
  void split(int data_parallel, int expert_parallel, double timeout_s) override;
  const ParallelGroups& groups() const override { return groups_; }
  [[noreturn]] void fail_everywhere() override;
  // MPI_Abort after the message
  [[noreturn]] void abort(const std::string& what) override;

 private:
  int (*interrupt_signal_)();
  MpiSession session_;
  std::unique_ptr<LocalPeers> peers_;  // before watchdog_: the watchdog's thread reads it until it stops
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<MpiCollective> world_, expert_, expert_data_;
  ParallelGroups groups_;
};

}  // namespace mohge
