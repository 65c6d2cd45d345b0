// defines: mohge::MpiCollective — the Collective (core/collective.h) of an MPI communicator, and
//          mohge::MpiSession, the process's MPI lifetime (init with thread support, finalize)
// The transport of expert-parallel training across processes and machines (issue "Training on
// many processes…", SPEC §5): the MoE token exchange (moe/dispatcher.h) calls alltoall for the
// per-expert counts and alltoallv for the rows; data-parallel training all-reduces gradients and
// statistics. Built only when CMake finds MPI (MOHGE_MPI).
#pragma once
#include <mpi.h>

#include <cstdint>
#include <vector>

#include "core/collective.h"
#include "dist/watchdog.h"

namespace mohge {

// MPI_Init_thread (MPI_THREAD_FUNNELED: only the main thread calls MPI; OpenMP threads never do)
// unless MPI is already initialised, and MPI_Finalize at scope exit when it initialised MPI.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  bool owns_ = false;
  int rank_ = 0, size_ = 1;
};

class MpiCollective final : public Collective {
 public:
  // comm: the group (duplicated, so our collectives never match a caller's messages). Errors
  // return codes instead of aborting, and become mohge::Error naming the call and rank.
  // max_message: the most elements one MPI call carries to one peer; larger exchanges (and
  // all-reduces, broadcasts, reduce-scatters and all-gathers) are split into rounds. max_span: the widest range of displacements one MPI_Alltoallv call may address
  // from its base pointer; a round whose blocks spread wider goes peer by peer (MPI_Sendrecv).
  // MPI counts and displacements are ints, so both default to INT_MAX elements (8 GiB of floats);
  // tests lower them to exercise both paths on small messages.
  // watchdog: armed around every call, so a call that waits too long for a dead or hung peer ends
  // the job (dist/watchdog.h); null: calls wait as long as MPI does.
  explicit MpiCollective(MPI_Comm comm, int64_t max_message = kMaxInt, int64_t max_span = kMaxInt,
                         Watchdog* watchdog = nullptr);
  ~MpiCollective() override;
  MpiCollective(const MpiCollective&) = delete;
  MpiCollective& operator=(const MpiCollective&) = delete;

  int size() const override { return size_; }
  int rank() const override { return rank_; }
  void alltoall(const int* send, int* recv, int n) override;
  void alltoallv(const float* send, const int64_t* send_count, const int64_t* send_offset, float* recv,
                 const int64_t* recv_count, const int64_t* recv_offset) override;
  void allreduce_sum(float* data, int64_t n) override;
  void allreduce_sum(double* data, int64_t n) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  void reduce_scatter_sum(float* data, const int64_t* count) override;
  void allgather(float* data, const int64_t* count) override;

  static constexpr int64_t kMaxInt = 2147483647;

 private:
  void check(int err, const char* call) const;
  // MPI_Allreduce(MPI_SUM) of n values of `type` in pieces of at most max_message elements
  void allreduce_pieces(void* data, int64_t n, MPI_Datatype type, size_t elem_bytes);
  // calls round(at, len, packed, total) for each round of a blocked collective (see the .cpp)
  template <class F>
  void blocked_rounds(const int64_t* count, F round);
  MPI_Comm comm_ = MPI_COMM_NULL;
  int size_ = 1, rank_ = 0;
  int64_t max_message_, max_span_;
  Watchdog* watchdog_;
  std::vector<float> packed_;  // the rounds of reduce_scatter_sum and allgather, packed (kept: no page faults per call)
};

}  // namespace mohge
