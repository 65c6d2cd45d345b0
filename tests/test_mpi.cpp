// Expert-parallel transport over real MPI processes: run under mpirun (CTest starts it with
// -np 2 and -np 4, --oversubscribe). Every rank runs every test; a failure on any rank fails the
// job. Skipped, visibly, where MPI is not installed (tests/CMakeLists.txt).
#include <gtest/gtest.h>
#include <mpi.h>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dist/local_peers.h"
#include "dist/mpi_collective.h"

namespace mohge {
namespace {

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Rank r sends cnt(r, p) floats to rank p whose values name (r, p, k); zero counts included.
// Exchanged with the one-call path, with rounds of 3 elements, and peer by peer (span 1).
TEST(MpiCollective, AlltoallvDeliversEveryBlockOnEveryPath) {
  auto cnt = [](int r, int p) { return (int64_t)((r * 7 + p * 3) % 5); };
  auto value = [](int r, int p, int64_t k) { return (float)(10000 * r + 100 * p + k); };
  for (auto [max_message, max_span] : {std::pair<int64_t, int64_t>{MpiCollective::kMaxInt, MpiCollective::kMaxInt},
                                       {3, MpiCollective::kMaxInt}, {2, 1}}) {
    MpiCollective c(MPI_COMM_WORLD, max_message, max_span);
    const int D = c.size(), me = c.rank();
    ASSERT_EQ(D, world_size());
    std::vector<int64_t> sc(D), so(D), rc(D), ro(D);
    std::vector<float> send;
    for (int p = 0; p < D; p++) {
      so[p] = (int64_t)send.size() + 1, sc[p] = cnt(me, p);  // a gap before each block
      send.push_back(-1.0f);
      for (int64_t k = 0; k < sc[p]; k++) send.push_back(value(me, p, k));
    }
    int64_t total = 0;
    for (int p = 0; p < D; p++) ro[p] = total + 2, rc[p] = cnt(p, me), total += rc[p] + 2;
    std::vector<float> recv(total, -7.0f);
    c.alltoallv(send.data(), sc.data(), so.data(), recv.data(), rc.data(), ro.data());
    for (int p = 0; p < D; p++) {
      for (int64_t k = 0; k < rc[p]; k++)
        ASSERT_EQ(recv[ro[p] + k], value(p, me, k)) << "from rank " << p << " element " << k << " (max_message "
                                                   << max_message << ", max_span " << max_span << ")";
      EXPECT_EQ(recv[ro[p] - 1], -7.0f) << "wrote outside the block from rank " << p;
    }
  }
}

TEST(MpiCollective, AlltoallOfCounts) {
  MpiCollective c(MPI_COMM_WORLD);
  const int D = c.size(), me = c.rank(), n = 3;
  std::vector<int> send(D * n), recv(D * n, -1);
  for (int p = 0; p < D; p++)
    for (int i = 0; i < n; i++) send[p * n + i] = 100 * me + 10 * p + i;
  c.alltoall(send.data(), recv.data(), n);
  for (int p = 0; p < D; p++)
    for (int i = 0; i < n; i++) EXPECT_EQ(recv[p * n + i], 100 * p + 10 * me + i);
}

TEST(MpiCollective, EmptyExchangeIsEnteredByEveryRank) {
  MpiCollective c(MPI_COMM_WORLD, 4);
  const int D = c.size();
  std::vector<int64_t> zero(D, 0);
  c.alltoallv(nullptr, zero.data(), zero.data(), nullptr, zero.data(), zero.data());
  SUCCEED();
}

// Rank r contributes v(r, i) to element i; every rank gets the sums, in one call and in pieces of 3.
TEST(MpiCollective, AllreduceSumsFloatsAndDoublesOnEveryRank) {
  for (int64_t max_message : {MpiCollective::kMaxInt, (int64_t)3}) {
    MpiCollective c(MPI_COMM_WORLD, max_message);
    const int D = c.size(), me = c.rank(), n = 10;
    std::vector<float> f(n);
    std::vector<double> g(n);
    for (int i = 0; i < n; i++) f[i] = (float)(me * 100 + i), g[i] = 0.5 * me + 1e-12 * i;
    c.allreduce_sum(f.data(), n);
    c.allreduce_sum(g.data(), n);
    for (int i = 0; i < n; i++) {
      EXPECT_EQ(f[i], (float)(100 * D * (D - 1) / 2 + D * i)) << "element " << i << ", max_message " << max_message;
      EXPECT_NEAR(g[i], 0.25 * D * (D - 1) + D * 1e-12 * i, 1e-15) << "element " << i;
    }
  }
}

TEST(MpiCollective, BroadcastCopiesTheRootsBytes) {
  MpiCollective c(MPI_COMM_WORLD, 4);  // 11 bytes in pieces of 4
  const int root = c.size() - 1;
  std::string s = c.rank() == root ? "from the root" : "xxxxxxxxxxxxx";
  c.broadcast(s.data(), 11, root);
  EXPECT_EQ(s, c.rank() == root ? "from the root" : "from the roxx");  // 11 bytes: the rest untouched
}

// ZeRO-1's halves of an all-reduce: blocks of different lengths (one empty), in one call and in
// rounds (pieces of max_message / size elements, at least 1). Rank r contributes v(r, i) to element
// i: after reduce_scatter_sum its block holds the sums and the other blocks are untouched; after
// allgather every rank holds every rank's block.
TEST(MpiCollective, ReduceScatterAndAllgatherOnEveryPath) {
  for (int64_t max_message : {MpiCollective::kMaxInt, (int64_t)7, (int64_t)1}) {
    MpiCollective c(MPI_COMM_WORLD, max_message);
    const int D = c.size(), me = c.rank();
    std::vector<int64_t> count(D), offset(D, 0);
    for (int r = 0; r < D; r++) count[r] = (r * 5 + 3) % 7;  // 3, 1, 6, 4, …
    count[D - 1] = 0;  // the last rank's block is empty
    for (int r = 1; r < D; r++) offset[r] = offset[r - 1] + count[r - 1];
    const int64_t n = offset[D - 1] + count[D - 1];
    auto v = [](int r, int64_t i) { return (float)(1000 * r + i); };
    std::vector<float> data(n);
    for (int64_t i = 0; i < n; i++) data[i] = v(me, i);
    c.reduce_scatter_sum(data.data(), count.data());
    for (int64_t i = 0; i < n; i++) {
      const bool mine = i >= offset[me] && i < offset[me] + count[me];
      float want = v(me, i);
      if (mine) {
        want = 0;
        for (int r = 0; r < D; r++) want += v(r, i);
      }
      ASSERT_EQ(data[i], want) << "element " << i << " on rank " << me << ", max_message " << max_message;
    }
    for (int64_t i = 0; i < n; i++) data[i] = i >= offset[me] && i < offset[me] + count[me] ? v(me, i) : -1.0f;
    c.allgather(data.data(), count.data());
    for (int r = 0; r < D; r++)
      for (int64_t i = offset[r]; i < offset[r] + count[r]; i++)
        ASSERT_EQ(data[i], v(r, i)) << "element " << i << " of rank " << r << "'s block, max_message " << max_message;
  }
}

// Rank 0 enters an all-reduce 1.5 s late: the other ranks' watchdogs (timeout 0.5 s) report the
// call, naming their rank, once; rank 0's, which did not wait, reports nothing; the call completes.
TEST(MpiCollective, WatchdogReportsACallWaitingPastTheTimeout) {
  std::mutex mu;
  std::vector<std::string> reports;
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Watchdog dog(0.5, rank, size, [&](const std::string& m) {
    std::lock_guard<std::mutex> lk(mu);
    reports.push_back(m);
  });
  MpiCollective c(MPI_COMM_WORLD, MpiCollective::kMaxInt, MpiCollective::kMaxInt, &dog);
  double v = 1.0;
  if (rank == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  c.allreduce_sum(&v, 1);
  EXPECT_EQ(v, (double)size);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // nothing armed: no report
  std::lock_guard<std::mutex> lk(mu);
  if (rank == 0) {
    EXPECT_TRUE(reports.empty()) << reports[0];
  } else {
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_NE(reports[0].find(fmt::format("rank {} of {}: MPI_Allreduce waited more than 0.5 s", rank, size)),
              std::string::npos)
        << reports[0];
  }
}

// A peer reported dead (watch_peers) is reported once a call has waited 0.3 s, naming it, long before
// the timeout; a call that ends sooner reports nothing. Every live rank sees no lost local peer.
TEST(MpiCollective, WatchdogNamesALostPeerBeforeTheTimeout) {
  std::mutex mu;
  std::vector<std::string> reports;
  Watchdog dog(60, 0, 4, [&](const std::string& m) {
    std::lock_guard<std::mutex> lk(mu);
    reports.push_back(m);
  });
  std::atomic<bool> lost{false};
  dog.watch_peers([&] { return lost ? std::vector<int>{3} : std::vector<int>{}; });
  {
    Watchdog::Armed armed(&dog, "MPI_Allreduce");  // a call that waits, but no peer is lost
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  lost = true;
  {
    Watchdog::Armed armed(&dog, "MPI_Alltoallv");
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
  }
  {
    std::lock_guard<std::mutex> lk(mu);
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0], "rank 0 of 4: rank 3 ended (killed or crashed) while MPI_Alltoallv waited for it: the job "
                          "cannot go on; resume it from its last checkpoint");
  }
  EXPECT_TRUE(LocalPeers(MPI_COMM_WORLD).lost_to_report().empty());
}

// After a termination signal (the interrupt_signal passed to watch_peers: the binary's, as the MPI
// module has no copy of core's) a lost peer is reported at once, with no call waiting: mpirun's
// SIGTERM finds a computing rank outside any call.
int sigterm_received() { return SIGTERM; }
TEST(MpiCollective, WatchdogLooksForLostPeersOnATerminationSignal) {
  std::mutex mu;
  std::vector<std::string> reports;
  Watchdog dog(60, 1, 2, [&](const std::string& m) {
    std::lock_guard<std::mutex> lk(mu);
    reports.push_back(m);
  });
  dog.watch_peers([] { return std::vector<int>{0}; }, sigterm_received);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  std::lock_guard<std::mutex> lk(mu);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], "rank 1 of 2: rank 0 ended (killed or crashed): the job cannot go on; resume it from its last "
                        "checkpoint");
}

}  // namespace
}  // namespace mohge

int main(int argc, char** argv) {
  mohge::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // one report: only rank 0 prints, every rank's result counts
  if (mpi.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return failed;
}
