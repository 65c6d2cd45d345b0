// defines: mohge::Collective — the collective operations of a group of ranks (processes or threads),
//          mohge::ParallelGroups — the groups one rank of a data × expert parallel job belongs to
// The transport under the MoE token exchange (moe/dispatcher.h: alltoall, alltoallv) and under
// data-parallel training (train/grad_sync.h: allreduce of gradients and statistics, broadcast; with
// ZeRO-1 reduce-scatter of gradients and all-gather of weights): an
// MPI communicator implements it (dist/mpi_collective.h); tests connect threads through shared
// memory. Every call is
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
  // MPI_Allreduce(MPI_SUM) in place: data [n] becomes the element-wise sum over the ranks, the same
  // on every rank. n is 64-bit (split like alltoallv's messages).
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
  // MPI_Bcast: `bytes` bytes at data on rank `root` are copied to data on every other rank.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // The two halves of an all-reduce, for ZeRO-1 (train/grad_sync.h). data [Σ count] holds one
  // block per rank in rank order: count[r] elements (the same [size] counts on every rank) at
  // Σ_{s<r} count[s].
  // reduce_scatter_sum (MPI_Reduce_scatter, MPI_SUM): this rank's block becomes the element-wise
  // sum of that block over the ranks; the other blocks are left as they were.
  virtual void reduce_scatter_sum(float* data, const int64_t* count) = 0;
  // allgather (MPI_Allgatherv): every rank's block is copied into the others' data.
  virtual void allgather(float* data, const int64_t* count) = 0;
};

// The P = DP × EP ranks of a training job (issue 9, SPEC §5): rank p·EP + q is expert-parallel rank
// q of group p. Null pointers: one process.
struct ParallelGroups {
  Collective* world = nullptr;        // all P ranks: dense gradients, losses, balance counts
  Collective* expert = nullptr;       // the EP ranks of my group (size EP): the token exchange
  Collective* expert_data = nullptr;  // the DP ranks holding my experts (size DP): expert gradients
};

}  // namespace mohge
