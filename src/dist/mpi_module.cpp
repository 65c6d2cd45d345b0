// defines: mohge_mpi_job_new — the entry point of the module libmohge_mpi.so, the one symbol
//          parallel_job_open (core/parallel_job.cpp) looks up
#include "dist/mpi_job.h"

// A new MpiJob (MPI initialised), owned by the caller. Unmangled, for dlsym.
extern "C" mohge::ParallelJob* mohge_mpi_job_new(int (*interrupt_signal)()) {
  return new mohge::MpiJob(interrupt_signal);
}
