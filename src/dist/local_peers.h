// defines: mohge::LocalPeers — which ranks of a job run on this host, and whether their processes
//          still run (issue 9: a killed rank is named by the ranks that wait for it)
// When one rank of `mpirun` dies, the others wait in their next collective; mpirun notices the death
// about a second later and kills them (SIGTERM, then SIGKILL a second after), printing only its own
// message. Ranks on the same host can see the loss at once: the dead rank's process is gone (or a
// zombie until mpirun reaps it). The Watchdog (dist/watchdog.h) polls this while a call waits.
#pragma once
#include <mpi.h>

#include <vector>

namespace mohge {

class LocalPeers {
 public:
  // Collective over comm: every rank learns every rank's host and process id (MPI_Allgather).
  explicit LocalPeers(MPI_Comm comm);
  // The ranks on this host whose process has ended, when this rank is the lowest-numbered live one
  // on the host (so one rank reports a loss); otherwise empty. Ranks on other hosts are not seen.
  std::vector<int> lost_to_report() const;

 private:
  int rank_ = 0;
  std::vector<int> local_;  // ranks on this host, ascending, this one included
  std::vector<long> pid_;   // their process ids, by rank (0 on other hosts)
};

}  // namespace mohge
