// defines: SafetensorsFile (validated reader), safetensors_write (atomic writer)
// Format: u64 little-endian header length, JSON header {name: {dtype, shape, data_offsets}},
// then the raw data. Loading enforces the format's rules, so a truncated, corrupt or hostile file
// gives a one-line error naming the file and tensor, never garbage weights: header length at most
// 100 MB and within the file, a JSON object with unique names, known dtypes, non-negative integer
// dims whose byte count is computed with checked 64-bit multiplication, and byte ranges that tile
// the data region exactly (no overlap, no unindexed bytes). F32 tensors read as weights (f32())
// must also be finite.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mohge {

struct TensorView {
  std::string name;
  std::string dtype;  // "F32", "I32", "I64", "U8", ...
  std::vector<int64_t> shape;
  const void* data = nullptr;  // for writing: caller's buffer; for reading: into the file
  size_t nbytes = 0;
  int64_t numel() const;  // throws when the product overflows
};

inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;  // the reference implementation's limit

class SafetensorsFile {
 public:
  static SafetensorsFile load(const std::string& path);
  // As load, but the file is memory-mapped read-only instead of read, when it can be (a regular
  // file whose data starts 8-byte aligned, as safetensors_write makes it; otherwise it is read).
  static SafetensorsFile map(const std::string& path);
  // The same checks on a file's bytes; `path` labels error messages.
  static SafetensorsFile parse(std::vector<char> bytes, const std::string& path);
  bool has(const std::string& name) const { return index_.count(name) > 0; }
  const TensorView& get(const std::string& name) const;  // errors naming the file if absent
  // The F32 tensor `name`, checked to have exactly `shape` and only finite values (one vectorised
  // pass; an error names the tensor and the first bad index).
  const float* f32(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }
  // Whether the tensors' bytes are a read-only mapping of the file (map), and what keeps them
  // alive: a TensorView's data stays valid while a copy of storage() is held.
  bool mapped() const { return mapped_; }
  const std::shared_ptr<const char>& storage() const { return bytes_; }

 private:
  // The checks and the index over size bytes whose data region starts 8-byte aligned.
  static SafetensorsFile index(std::shared_ptr<const char> bytes, size_t size, const std::string& path);
  std::string path_;
  std::shared_ptr<const char> bytes_;
  bool mapped_ = false;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes to path + ".tmp" then renames: readers never see a half-written file.
void safetensors_write(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace mohge
