#include "core/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace mohge {

FileLock::FileLock(const std::string& path) {
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MOHGE_CHECK(fd_ >= 0, "cannot open the lock file {}: {}", path, std::strerror(errno));
  held_ = flock(fd_, LOCK_EX | LOCK_NB) == 0;
  if (!held_ && errno != EWOULDBLOCK) {
    const int err = errno;
    close(fd_);
    fail("cannot lock {}: {}", path, std::strerror(err));
  }
}

FileLock::~FileLock() { close(fd_); }

}  // namespace mohge
