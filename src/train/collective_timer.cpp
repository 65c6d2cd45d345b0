// defines: CollectiveTimer (see collective_timer.h)
#include "train/collective_timer.h"

#include <chrono>

namespace mohge {

template <class F>
void CollectiveTimer::timed(F call) {
  const auto t0 = std::chrono::steady_clock::now();
  call();
  seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void CollectiveTimer::alltoall(const int* send, int* recv, int n) {
  timed([&] { inner_.alltoall(send, recv, n); });
}

void CollectiveTimer::alltoallv(const float* send, const int64_t* send_count, const int64_t* send_offset, float* recv,
                                const int64_t* recv_count, const int64_t* recv_offset) {
  for (int r = 0; r < size(); r++)
    if (r != rank()) bytes_sent += send_count[r] * 4, bytes_received += recv_count[r] * 4;
  timed([&] { inner_.alltoallv(send, send_count, send_offset, recv, recv_count, recv_offset); });
}

void CollectiveTimer::allreduce_sum(float* data, int64_t n) {
  if (size() > 1) bytes_sent += n * 4, bytes_received += n * 4;
  timed([&] { inner_.allreduce_sum(data, n); });
}

void CollectiveTimer::allreduce_sum(double* data, int64_t n) {
  if (size() > 1) bytes_sent += n * 8, bytes_received += n * 8;
  timed([&] { inner_.allreduce_sum(data, n); });
}

void CollectiveTimer::broadcast(void* data, int64_t bytes, int root) {
  timed([&] { inner_.broadcast(data, bytes, root); });
}

void CollectiveTimer::reduce_scatter_sum(float* data, const int64_t* count) {
  count_others(count);
  timed([&] { inner_.reduce_scatter_sum(data, count); });
}

void CollectiveTimer::allgather(float* data, const int64_t* count) {
  count_others(count);
  timed([&] { inner_.allgather(data, count); });
}

void CollectiveTimer::count_others(const int64_t* count) {
  for (int r = 0; r < size(); r++)
    if (r != rank()) bytes_sent += count[r] * 4, bytes_received += count[r] * 4;
}

}  // namespace mohge
