// defines: FileLock — an exclusive advisory lock (flock) held while the object lives
#pragma once
#include <string>

namespace mohge {

// Opens (creating) `path` and tries to take an exclusive flock on it, without waiting. The kernel
// drops the lock when the process ends, however it ends (kill -9 included), so a stale lock file
// never blocks a later run. Errors: the file cannot be opened or locked (other than being held).
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool held() const { return held_; }  // false: another process (or open file) holds it

 private:
  int fd_ = -1;
  bool held_ = false;
};

}  // namespace mohge
