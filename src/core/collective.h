// defines: mohge::Collective — the all-to-all exchange of a group of ranks (processes or threads)
// The transport under the MoE token exchange (moe/dispatcher.h): an MPI communicator implements it
// with MPI_Alltoall / MPI_Alltoallv; tests connect threads through shared memory. Every call is
// collective: each rank of the group makes the same calls in the same order, including calls in
// which it sends and receives nothing, or the group hangs.
#pragma once
#include <cstdint>

namespace mohge {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int size() const = 0;  // ranks in the group
  virtual int rank() const = 0;  // this rank, in [0, size)
  // MPI_Alltoall of ints: send [size·n] holds n values for each rank (rank r's at r·n);
  // recv [size·n] receives n values from each rank (rank r's at r·n).
  virtual void alltoall(const int* send, int* recv, int n) = 0;
  // MPI_Alltoallv of floats: send_count[r] elements from send + send_offset[r] go to rank r;
  // recv_count[r] elements from rank r land at recv + recv_offset[r]. Counts and offsets are in
  // elements ([size] each), 64-bit: an implementation splits messages its transport cannot carry
  // in one call (MPI's int counts). recv_count[r] must equal what rank r sends to this rank.
  virtual void alltoallv(const float* send, const int64_t* send_count, const int64_t* send_offset, float* recv,
                         const int64_t* recv_count, const int64_t* recv_offset) = 0;
};

}  // namespace mohge
