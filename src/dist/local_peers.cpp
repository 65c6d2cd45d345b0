// defines: LocalPeers (see local_peers.h)
#include "dist/local_peers.h"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <string>

namespace mohge {

namespace {

// Whether process pid has ended: gone, or a zombie its parent (mpirun) has not reaped yet.
bool ended(long pid) {
  if (kill((pid_t)pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');  // "pid (comm) S ...": comm may hold spaces and parentheses
  return close != std::string::npos && close + 2 < line.size() && (line[close + 2] == 'Z' || line[close + 2] == 'X');
}

}  // namespace

LocalPeers::LocalPeers(MPI_Comm comm) {
  int size = 1;
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size);
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  std::vector<char> hosts((size_t)size * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, comm);
  long mine = (long)getpid();
  std::vector<long> pids(size);
  MPI_Allgather(&mine, 1, MPI_LONG, pids.data(), 1, MPI_LONG, comm);
  pid_.assign(size, 0);
  for (int r = 0; r < size; r++)
    if (std::strncmp(hosts.data() + (size_t)r * MPI_MAX_PROCESSOR_NAME, host, MPI_MAX_PROCESSOR_NAME) == 0)
      local_.push_back(r), pid_[r] = pids[r];
}

std::vector<int> LocalPeers::lost_to_report() const {
  std::vector<int> lost;
  bool first_live = true;  // no live local rank below this one
  for (int r : local_) {
    if (r == rank_) continue;
    if (ended(pid_[r])) lost.push_back(r);
    else if (r < rank_) first_live = false;
  }
  return first_live ? lost : std::vector<int>{};
}

}  // namespace mohge
