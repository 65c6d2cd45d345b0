#include "core/parallel_job.h"

#include <cstdlib>

#include "core/error.h"
#include "core/module.h"
#include "core/signals.h"

namespace mohge {

bool parallel_job_launched() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"); }

std::unique_ptr<ParallelJob> parallel_job_open() {
#ifdef MOHGE_MPI_MODULE
  // the module's entry (dist/mpi_module.cpp); it polls the binary's signal flag, not a copy of its own
  using Entry = ParallelJob* (*)(int (*interrupt_signal)());
  auto entry = reinterpret_cast<Entry>(module_entry("MPI", "MOHGE_MPI_MODULE", MOHGE_MPI_MODULE, "mohge_mpi_job_new"));
  return std::unique_ptr<ParallelJob>(entry(interrupt_signal));
#else
  fail("this mohge was built without MPI (apt-get install libopenmpi-dev, then rebuild)");
#endif
}

}  // namespace mohge
