#include "dist/mpi_collective.h"

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace mohge {

namespace {

// Round k of a large collective carries elements [k·M, (k+1)·M) of every rank's block (count[r]
// elements at offset[r], [size] each): so no count handed to MPI exceeds M. The window of block r
// starts at[r] elements from the buffer and holds len[r] elements.
void round_window(int64_t k, int64_t M, const int64_t* count, const int64_t* offset, std::vector<int64_t>& at,
                  std::vector<int>& len) {
  for (size_t r = 0; r < at.size(); r++) {
    const int64_t lo = std::min(count[r], k * M), hi = std::min(count[r], (k + 1) * M);
    at[r] = offset[r] + lo, len[r] = (int)(hi - lo);
  }
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    owns_ = true;
    MOHGE_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI provides thread level {}, mohge needs MPI_THREAD_FUNNELED",
                provided);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (owns_ && !finalised) MPI_Finalize();
}

MpiCollective::MpiCollective(MPI_Comm comm, int64_t max_message, int64_t max_span, Watchdog* watchdog)
    : max_message_(max_message), max_span_(max_span), watchdog_(watchdog) {
  MOHGE_CHECK(max_message >= 1 && max_message <= kMaxInt && max_span >= 1 && max_span <= kMaxInt,
              "MpiCollective: max_message {} / max_span {} outside [1, {}]", max_message, max_span, kMaxInt);
  MPI_Comm_dup(comm, &comm_);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm_rank(comm_, &rank_);
}

MpiCollective::~MpiCollective() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (comm_ != MPI_COMM_NULL && !finalised) MPI_Comm_free(&comm_);
}

void MpiCollective::check(int err, const char* call) const {
  if (err == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, msg, &len);
  fail("{} failed on rank {} of {}: {}", call, rank_, size_, std::string(msg, len));
}

void MpiCollective::alltoall(const int* send, int* recv, int n) {
  Watchdog::Armed armed(watchdog_, "MPI_Alltoall");
  check(MPI_Alltoall(send, n, MPI_INT, recv, n, MPI_INT, comm_), "MPI_Alltoall");
}

// Large exchanges go in rounds: round k carries elements [k·M, (k+1)·M) of every peer's block
// (M = max_message), so every count fits MPI's int. One MPI_Alltoallv takes int displacements
// from one base pointer; when a round's blocks spread wider than an int, that round goes peer by
// peer instead (MPI_Sendrecv in a fixed schedule), which has no such limit.
void MpiCollective::alltoallv(const float* send, const int64_t* send_count, const int64_t* send_offset,
                              float* recv, const int64_t* recv_count, const int64_t* recv_offset) {
  Watchdog::Armed armed(watchdog_, "MPI_Alltoallv");
  const int D = size_;
  const int64_t M = max_message_;
  int64_t most = 0;
  for (int r = 0; r < D; r++) most = std::max({most, send_count[r], recv_count[r]});
  int64_t rounds = (most + M - 1) / M;  // every rank must run the same number of rounds
  check(MPI_Allreduce(MPI_IN_PLACE, &rounds, 1, MPI_INT64_T, MPI_MAX, comm_), "MPI_Allreduce");
  rounds = std::max<int64_t>(rounds, 1);  // an empty exchange is still entered by every rank
  std::vector<int64_t> s_at(D), r_at(D);
  std::vector<int> sc(D), rc(D), sd(D), rd(D);
  // this round's window of every block, and whether they lie within max_span of the first
  auto window = [&](int64_t k, const int64_t* count, const int64_t* offset, std::vector<int64_t>& at,
                    std::vector<int>& len, int64_t& base) {
    round_window(k, M, count, offset, at, len);
    int64_t top = 0;
    base = INT64_MAX;
    for (int r = 0; r < D; r++)
      if (len[r] > 0) base = std::min(base, at[r]), top = std::max(top, at[r] + len[r]);
    if (base == INT64_MAX) base = 0, top = 0;
    return top - base <= max_span_;
  };
  for (int64_t k = 0; k < rounds; k++) {
    int64_t sbase = 0, rbase = 0;
    const bool s_fits = window(k, send_count, send_offset, s_at, sc, sbase);
    const bool r_fits = window(k, recv_count, recv_offset, r_at, rc, rbase);
    int fits = s_fits && r_fits;
    check(MPI_Allreduce(MPI_IN_PLACE, &fits, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
    if (fits) {
      for (int r = 0; r < D; r++)
        sd[r] = sc[r] > 0 ? (int)(s_at[r] - sbase) : 0, rd[r] = rc[r] > 0 ? (int)(r_at[r] - rbase) : 0;
      check(MPI_Alltoallv(send + sbase, sc.data(), sd.data(), MPI_FLOAT, recv + rbase, rc.data(), rd.data(),
                          MPI_FLOAT, comm_),
            "MPI_Alltoallv");
      continue;
    }
    for (int s = 0; s < D; s++) {  // step s: send to rank + s, receive from rank − s
      const int to = (rank_ + s) % D, from = (rank_ - s + D) % D;
      check(MPI_Sendrecv(send + s_at[to], sc[to], MPI_FLOAT, to, 0, recv + r_at[from], rc[from], MPI_FLOAT,
                         from, 0, comm_, MPI_STATUS_IGNORE),
            "MPI_Sendrecv");
    }
  }
}

void MpiCollective::allreduce_pieces(void* data, int64_t n, MPI_Datatype type, size_t elem_bytes) {
  Watchdog::Armed armed(watchdog_, "MPI_Allreduce");
  char* p = static_cast<char*>(data);
  for (int64_t at = 0; at < n; at += max_message_) {  // n is the same on every rank: same pieces
    const int len = (int)std::min(max_message_, n - at);
    check(MPI_Allreduce(MPI_IN_PLACE, p + at * elem_bytes, len, type, MPI_SUM, comm_), "MPI_Allreduce");
  }
}

void MpiCollective::allreduce_sum(float* data, int64_t n) { allreduce_pieces(data, n, MPI_FLOAT, sizeof(float)); }
void MpiCollective::allreduce_sum(double* data, int64_t n) { allreduce_pieces(data, n, MPI_DOUBLE, sizeof(double)); }

void MpiCollective::broadcast(void* data, int64_t bytes, int root) {
  MOHGE_CHECK(root >= 0 && root < size_, "broadcast from rank {} of {}", root, size_);
  Watchdog::Armed armed(watchdog_, "MPI_Bcast");
  char* p = static_cast<char*>(data);
  for (int64_t at = 0; at < bytes; at += max_message_)
    check(MPI_Bcast(p + at, (int)std::min(max_message_, bytes - at), MPI_BYTE, root, comm_), "MPI_Bcast");
}

// Rounds of reduce_scatter_sum and allgather: the blocks lie end to end; round k takes window k
// (pieces of max_message / size elements) of every block, so the round's windows packed end to end
// (packed[r]: where block r's window starts) fit MPI's int counts and displacements. The counts are
// the same on every rank: so are the rounds.
template <class F>
void MpiCollective::blocked_rounds(const int64_t* count, F round) {
  const int D = size_;
  const int64_t M = std::max<int64_t>(1, max_message_ / D);
  std::vector<int64_t> offset(D, 0), at(D);
  std::vector<int> len(D), packed(D);
  int64_t most = count[0];
  for (int r = 1; r < D; r++) offset[r] = offset[r - 1] + count[r - 1], most = std::max(most, count[r]);
  for (int64_t k = 0; k * M < most; k++) {
    round_window(k, M, count, offset.data(), at, len);
    for (int r = 1; r < D; r++) packed[r] = packed[r - 1] + len[r - 1];
    round(at, len, packed, (int64_t)packed[D - 1] + len[D - 1]);
  }
}

// MPI forbids the result block inside the send buffer: each round's windows are sent packed.
void MpiCollective::reduce_scatter_sum(float* data, const int64_t* count) {
  Watchdog::Armed armed(watchdog_, "MPI_Reduce_scatter");
  std::vector<float>& send = packed_;
  blocked_rounds(count, [&](const std::vector<int64_t>& at, const std::vector<int>& len,
                            const std::vector<int>& packed, int64_t total) {
    send.resize(total);
    for (int r = 0; r < size_; r++) std::copy_n(data + at[r], len[r], send.data() + packed[r]);
    check(MPI_Reduce_scatter(send.data(), data + at[rank_], len.data(), MPI_FLOAT, MPI_SUM, comm_),
          "MPI_Reduce_scatter");
  });
}

void MpiCollective::allgather(float* data, const int64_t* count) {
  Watchdog::Armed armed(watchdog_, "MPI_Allgatherv");
  std::vector<float>& all = packed_;
  blocked_rounds(count, [&](const std::vector<int64_t>& at, const std::vector<int>& len,
                            const std::vector<int>& packed, int64_t total) {
    all.resize(total);
    std::copy_n(data + at[rank_], len[rank_], all.data() + packed[rank_]);
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all.data(), len.data(), packed.data(), MPI_FLOAT,
                         comm_),
          "MPI_Allgatherv");
    for (int r = 0; r < size_; r++)
      if (r != rank_) std::copy_n(all.data() + packed[r], len[r], data + at[r]);
  });
}

}  // namespace mohge
