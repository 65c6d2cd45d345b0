// defines: mohge::ParallelJob — this rank of `mpirun -np P mohge train`: the communicators of its
//          ParallelGroups (core/collective.h) and how the job fails; parallel_job_launched,
//          parallel_job_open
// The implementation is MPI's (dist/mpi_job.h), in the module libmohge_mpi.so that
// parallel_job_open loads (core/module.h): a run on one process never maps Open MPI.
#pragma once
#include <memory>
#include <string>

#include "core/collective.h"

namespace mohge {

class ParallelJob {
 public:
  virtual ~ParallelJob() = default;  // finalises MPI
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Splits the world into the groups of a DP × EP job. Throws mohge::Error when the world does not
  // have data_parallel × expert_parallel ranks. timeout_s: the longest a collective may wait for the
  // other ranks before this rank ends the job.
  virtual void split(int data_parallel, int expert_parallel, double timeout_s) = 0;
  virtual const ParallelGroups& groups() const = 0;
  // From a catch block, for an error every rank meets the same way (bad config, wrong P): rank 0
  // rethrows it (one `error:` line), the others finalise MPI and exit 1 in silence.
  [[noreturn]] virtual void fail_everywhere() = 0;
  // An error of this rank alone: "error: rank R of P: what" on stderr, then every rank ends (a
  // peer blocked in a collective would otherwise wait forever).
  [[noreturn]] virtual void abort(const std::string& what) = 0;
};

// Whether this process was started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMI
// launchers PMI_SIZE).
bool parallel_job_launched();

// Initialises MPI through the module libmohge_mpi.so (MOHGE_MPI_MODULE in the environment
// overrides where it is). Errors (mohge::Error): the module does not load (its path and why), or
// this mohge was built without MPI.
std::unique_ptr<ParallelJob> parallel_job_open();

}  // namespace mohge
