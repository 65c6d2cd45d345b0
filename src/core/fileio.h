// defines: read_file_bytes, read_file_text, AtomicFile, write_file_atomic
#pragma once
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mohge {

std::vector<char> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);

// A file written under a temporary name and renamed into place by commit(), after fsync, so a
// process killed at any moment leaves either the old file or the complete new one. Destroying
// an uncommitted AtomicFile removes the temporary. buffer_bytes > 0: the stream's buffer, so the
// bytes reach the file in writes of whole multiples of it at offsets that are multiples of it
// (safetensors_write: kHugePageBytes, for a page cache of 2 MiB folios, core/huge_pages.h).
class AtomicFile {
 public:
  explicit AtomicFile(std::string path, size_t buffer_bytes = 0);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void commit();

 private:
  std::string path_, tmp_;
  std::unique_ptr<char[]> buffer_;  // the stream's, when given (freed after it is closed)
  FILE* f_ = nullptr;
};

void write_file_atomic(const std::string& path, std::string_view content);

}  // namespace mohge
