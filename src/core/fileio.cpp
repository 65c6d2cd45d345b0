#include "core/fileio.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace mohge {

std::vector<char> read_file_bytes(const std::string& path) {
  std::error_code ec;
  // an ifstream opens a directory and reports its size as 2^63: refuse it by name instead
  MOHGE_CHECK(!std::filesystem::is_directory(path, ec), "{} is a directory, expected a file", path);
  std::ifstream in(path, std::ios::binary);
  MOHGE_CHECK(in.good(), "cannot open {}: {}", path, std::strerror(errno));
  in.seekg(0, std::ios::end);
  std::vector<char> bytes((size_t)in.tellg());
  in.seekg(0);
  in.read(bytes.data(), (std::streamsize)bytes.size());
  MOHGE_CHECK(in.good() || bytes.empty(), "error reading {}", path);
  return bytes;
}

std::string read_file_text(const std::string& path) {
  auto b = read_file_bytes(path);
  return std::string(b.begin(), b.end());
}

AtomicFile::AtomicFile(std::string path, size_t buffer_bytes) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(getpid());
  if (buffer_bytes > 0) buffer_ = std::make_unique_for_overwrite<char[]>(buffer_bytes);  // may throw: before the file
  f_ = std::fopen(tmp_.c_str(), "wb");
  MOHGE_CHECK(f_, "cannot write {}: {}", path_, std::strerror(errno));
  if (buffer_) std::setvbuf(f_, buffer_.get(), _IOFBF, buffer_bytes);
}

AtomicFile::~AtomicFile() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  MOHGE_CHECK(n == 0 || std::fwrite(data, 1, n, f_) == n, "cannot write {}: {}", path_, std::strerror(errno));
}

void AtomicFile::commit() {
  bool ok = std::fflush(f_) == 0 && fsync(fileno(f_)) == 0;
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  if (!ok || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    fail("cannot write {}: {}", path_, std::strerror(errno));
  }
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

}  // namespace mohge
