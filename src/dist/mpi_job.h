// defines: mohge::MpiJob — the ranks of `mpirun -np P mohge train`: MPI's lifetime, the
//          communicators of this rank's ParallelGroups (core/collective.h), and how a job fails
// Issue 9, SPEC §5: P = DP × EP; rank p·EP + q is expert-parallel rank q of group p (ranks
// p·EP .. p·EP+EP−1 exchange tokens), and holds the experts of ranks q, q+EP, q+2·EP, … (its
// expert-data-parallel group, over which those experts' gradients are summed).
#pragma once
#include <memory>
#include <string>

#include "core/collective.h"
#include "dist/local_peers.h"
#include "dist/mpi_collective.h"

namespace mohge {

class MpiJob {
 public:
  // Whether this process was started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMI
  // launchers PMI_SIZE).
  static bool launched();
  // Initialises MPI (MpiSession).
  MpiJob();
  int rank() const { return session_.rank(); }
  int size() const { return session_.size(); }
  // Splits the world into the groups of a DP × EP job. Throws mohge::Error when the world does not
  // have data_parallel × expert_parallel ranks. timeout_s: the longest a collective may wait for the
  // other ranks before this rank ends the job (Watchdog); a rank on this host whose process ended is
  // reported sooner, by name (LocalPeers).
  void split(int data_parallel, int expert_parallel, double timeout_s);
  const ParallelGroups& groups() const { return groups_; }
  // From a catch block, for an error every rank meets the same way (bad config, wrong P): rank 0
  // rethrows it (one `error:` line), the others finalise MPI and exit 1 in silence.
  [[noreturn]] void fail_everywhere();
  // An error of this rank alone: "error: rank R of P: what" on stderr, then MPI_Abort ends every
  // rank (a peer blocked in a collective would otherwise wait forever).
  [[noreturn]] void abort(const std::string& what);

 private:
  MpiSession session_;
  std::unique_ptr<LocalPeers> peers_;  // before watchdog_: the watchdog's thread reads it until it stops
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<MpiCollective> world_, expert_, expert_data_;
  ParallelGroups groups_;
};

}  // namespace mohge
