// defines: CollectiveTimer — a Collective that measures another: seconds spent in its calls and the
//          bytes it sends to and receives from other ranks (the per-rank step log of issue 9)
// Time in a collective is mostly waiting: for the slowest rank to arrive, then for the transfer.
#pragma once
#include <cstdint>

#include "core/collective.h"

namespace mohge {

class CollectiveTimer final : public Collective {
 public:
  explicit CollectiveTimer(Collective& inner) : inner_(inner) {}
  int size() const override { return inner_.size(); }
  int rank() const override { return inner_.rank(); }
  void alltoall(const int* send, int* recv, int n) override;
  void alltoallv(const float* send, const int64_t* send_count, const int64_t* send_offset, float* recv,
                 const int64_t* recv_count, const int64_t* recv_offset) override;
  void allreduce_sum(float* data, int64_t n) override;
  void allreduce_sum(double* data, int64_t n) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  void reduce_scatter_sum(float* data, const int64_t* count) override;
  void allgather(float* data, const int64_t* count) override;

  // since the last reset: seconds inside calls; payload bytes to / from other ranks (alltoallv's rows;
  // an all-reduce counts its own data both ways; a reduce-scatter or all-gather the other ranks'
  // blocks both ways)
  double seconds = 0;
  int64_t bytes_sent = 0, bytes_received = 0;
  void reset() { seconds = 0, bytes_sent = 0, bytes_received = 0; }

 private:
  template <class F>
  void timed(F call);
  void count_others(const int64_t* count);  // the bytes of the other ranks' blocks, both ways
  Collective& inner_;
};

}  // namespace mohge
