// defines: read_file_bytes, read_file_text, AtomicFile, write_file_atomic
#pragma once
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace mohge {

std::vector<char> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);

// A file written under a temporary name and renamed into place by commit(), after fsync, so a
// process killed at any moment leaves either the old file or the complete new one. Destroying
// an uncommitted AtomicFile removes the temporary.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void commit();

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

void write_file_atomic(const std::string& path, std::string_view content);

}  // namespace mohge
