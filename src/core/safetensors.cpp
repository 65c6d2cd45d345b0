#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/finite.h"
#include "core/fileio.h"
#include "core/huge_pages.h"

namespace mohge {

static size_t dtype_size(const std::string& dt) {
  if (dt == "F32" || dt == "I32" || dt == "U32") return 4;
  if (dt == "F64" || dt == "I64" || dt == "U64") return 8;
  if (dt == "F16" || dt == "BF16" || dt == "I16" || dt == "U16") return 2;
  if (dt == "U8" || dt == "I8" || dt == "BOOL") return 1;
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) MOHGE_CHECK(!__builtin_mul_overflow(n, s, &n), "tensor '{}': element count overflows", name);
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

// One entry of the header: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, offsets
// relative to the data region. Checked: known dtype, non-negative integer dims whose product (times
// the dtype size) does not overflow 64 bits and equals the range length, range inside the data.
TensorView parse_entry(const std::string& path, const std::string& name, const nlohmann::json& info,
                       size_t data_size, uint64_t offsets[2]) {
  auto bad = [&](const char* what) { fail("{}: tensor '{}': {}", path, name, what); };
  if (!info.is_object()) bad("entry is not an object");
  for (auto& [key, v] : info.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets") fail("{}: tensor '{}': unknown key '{}'", path, name, key);
  if (!info.contains("dtype") || !info["dtype"].is_string()) bad("\"dtype\" missing or not a string");
  if (!info.contains("shape") || !info["shape"].is_array()) bad("\"shape\" missing or not an array");
  if (!info.contains("data_offsets") || !info["data_offsets"].is_array() || info["data_offsets"].size() != 2)
    bad("\"data_offsets\" missing or not [begin, end]");
  TensorView t;
  t.name = name;
  t.dtype = info["dtype"].get<std::string>();
  const size_t es = dtype_size(t.dtype);
  MOHGE_CHECK(es > 0, "{}: tensor '{}' has unknown dtype '{}'", path, name, t.dtype.substr(0, 32));
  uint64_t bytes = es;  // numel * es, checked
  for (const auto& d : info["shape"]) {
    // nlohmann parses non-negative integers as unsigned; floats, negatives and strings are refused
    MOHGE_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= (uint64_t)INT64_MAX,
                "{}: tensor '{}': shape entry {} is not a non-negative integer", path, name, d.dump().substr(0, 32));
    const uint64_t s = d.get<uint64_t>();
    MOHGE_CHECK(!__builtin_mul_overflow(bytes, s, &bytes),
                "{}: tensor '{}': shape {} overflows 64-bit byte counts", path, name, info["shape"].dump().substr(0, 200));
    t.shape.push_back((int64_t)s);
  }
  for (int i = 0; i < 2; i++) {
    const auto& o = info["data_offsets"][i];
    if (!o.is_number_unsigned()) bad("\"data_offsets\" entries must be non-negative integers");
    offsets[i] = o.get<uint64_t>();
  }
  MOHGE_CHECK(offsets[0] <= offsets[1] && offsets[1] <= data_size,
              "{}: tensor '{}': data_offsets [{}, {}] lie outside the {}-byte data region (truncated?)", path, name,
              offsets[0], offsets[1], data_size);
  t.nbytes = offsets[1] - offsets[0];
  MOHGE_CHECK(t.nbytes == bytes, "{}: tensor '{}' has {} bytes but shape {} {} needs {}", path, name, t.nbytes,
              t.dtype, shape_str(t.shape), bytes);
  return t;
}

}  // namespace

SafetensorsFile SafetensorsFile::load(const std::string& path) { return parse(read_file_bytes(path), path); }

SafetensorsFile SafetensorsFile::map(const std::string& path) {
  // anything a mapping cannot take (no such file, a directory, an empty file, misaligned data)
  // goes through load, which reads it or names the problem. Populated, in 2 MiB pages where the
  // kernel can: every page is read at load anyway (the finiteness check), in one pass rather than
  // a fault per page.
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return load(path);
  struct stat sb;
  void* p = ::fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= 8
                ? map_file_huge_pages(fd, (size_t)sb.st_size)
                : nullptr;
  ::close(fd);  // the mapping keeps the file
  if (!p) return load(path);
  const size_t size = (size_t)sb.st_size;
  std::shared_ptr<const char> bytes(static_cast<const char*>(p), [size](const char* q) { ::munmap((void*)q, size); });
  uint64_t hlen;
  std::memcpy(&hlen, bytes.get(), 8);
  if (hlen > size - 8 || (8 + hlen) % 8 != 0) return load(path);
  SafetensorsFile f = index(std::move(bytes), size, path);
  f.mapped_ = true;
  return f;
}

SafetensorsFile SafetensorsFile::parse(std::vector<char> b, const std::string& path) {
  // The data starts 8-byte aligned in memory whatever the header length (typed reads need it):
  // after a header of another length it is moved up.
  uint64_t hlen;
  if (b.size() >= 8 && (std::memcpy(&hlen, b.data(), 8), hlen <= b.size() - 8)) {
    const size_t data_start = 8 + hlen, data_size = b.size() - data_start;
    if (const size_t pad = (8 - data_start % 8) % 8) {
      b.resize(b.size() + pad);
      std::memmove(b.data() + data_start + pad, b.data() + data_start, data_size);
    }
  }
  auto owner = std::make_shared<std::vector<char>>(std::move(b));
  return index(std::shared_ptr<const char>(owner, owner->data()), owner->size(), path);
}

SafetensorsFile SafetensorsFile::index(std::shared_ptr<const char> bytes, size_t size, const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.bytes_ = std::move(bytes);
  const char* b = f.bytes_.get();
  MOHGE_CHECK(size >= 8, "{}: not a safetensors file (only {} bytes)", path, size);
  uint64_t hlen;
  std::memcpy(&hlen, b, 8);
  MOHGE_CHECK(hlen <= size - 8, "{}: truncated or corrupt (header length {} > file size {})", path, hlen,
              size);
  MOHGE_CHECK(hlen <= kSafetensorsMaxHeader, "{}: corrupt safetensors header (length {} exceeds the format's {} bytes)",
              path, hlen, kSafetensorsMaxHeader);
  MOHGE_CHECK(hlen >= 2 && b[8] == '{', "{}: corrupt safetensors header (does not start with '{{')", path);
  // Top-level keys must be unique: nlohmann would silently keep the last of two equal names.
  std::set<std::string> names;
  auto unique_names = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (depth == 1 && ev == nlohmann::json::parse_event_t::key && !names.insert(parsed.get<std::string>()).second)
      fail("{}: tensor '{}' appears twice in the header", path, parsed.get<std::string>());
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(b + 8, b + 8 + hlen, unique_names);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt safetensors header ({})", path, e.what());
  }
  MOHGE_CHECK(header.is_object(), "{}: corrupt safetensors header (not a JSON object)", path);

  const size_t data_start = (8 + hlen + 7) / 8 * 8;  // where parse moved the data, or already is
  const size_t data_size = size - data_start;
  struct Range {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      MOHGE_CHECK(info.is_object(), "{}: __metadata__ is not an object", path);
      for (auto& [k, v] : info.items()) {
        MOHGE_CHECK(v.is_string(), "{}: __metadata__ value of '{}' is not a string", path, k);
        f.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    uint64_t off[2];
    TensorView t = parse_entry(path, name, info, data_size, off);
    t.data = b + data_start + off[0];
    ranges.push_back({off[0], off[1], f.tensors_.size()});
    f.index_[name] = f.tensors_.size();
    f.tensors_.push_back(std::move(t));
  }
  // The ranges tile the data region: sorted, each starts where the previous ended, the last ends at
  // the end of the file — no two tensors share a byte and no byte belongs to no tensor.
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& x, const Range& y) { return x.begin != y.begin ? x.begin < y.begin : x.end < y.end; });
  uint64_t at = 0;
  for (const Range& r : ranges) {
    MOHGE_CHECK(r.begin >= at, "{}: tensor '{}' overlaps another tensor's bytes [{}, {})", path,
                f.tensors_[r.tensor].name, r.begin, at);
    MOHGE_CHECK(r.begin == at, "{}: bytes [{}, {}) before tensor '{}' belong to no tensor", path, at, r.begin,
                f.tensors_[r.tensor].name);
    at = r.end;
  }
  MOHGE_CHECK(at == data_size, "{}: the last {} bytes of the data belong to no tensor", path, data_size - at);
  return f;
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  auto it = index_.find(name);
  MOHGE_CHECK(it != index_.end(), "{}: missing tensor '{}'", path_, name);
  return tensors_[it->second];
}

const float* SafetensorsFile::f32(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView& t = get(name);
  MOHGE_CHECK(t.dtype == "F32", "{}: tensor '{}' is {}, expected F32", path_, name, t.dtype);
  MOHGE_CHECK(t.shape == shape, "{}: tensor '{}' has shape {}, the config implies {}", path_, name,
              shape_str(t.shape), shape_str(shape));
  MOHGE_CHECK(reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0,
              "{}: tensor '{}' is not 4-byte aligned in the file", path_, name);
  const float* x = static_cast<const float*>(t.data);
  const size_t n = t.nbytes / 4, bad = first_non_finite(x, n);
  MOHGE_CHECK(bad == n, "{}: tensor '{}' holds a non-finite value ({}) at flat index {}", path_, name, x[bad], bad);
  return x;
}

void safetensors_write(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t off = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes}}};
    off += t.nbytes;
  }
  std::string h = header.dump();
  // the data starts on a 64-byte boundary of the file (so of a mapping): typed reads need 8, the
  // vector kernels a cache line (SafetensorsFile::map gives tensors in place)
  h.append((64 - (8 + h.size()) % 64) % 64, ' ');
  AtomicFile out(path, kHugePageBytes);  // written in 2 MiB units: a page cache map() maps in 2 MiB pages
  uint64_t hlen = h.size();
  out.write(&hlen, 8);
  out.write(h.data(), h.size());
  for (const auto& t : tensors) out.write(t.data, t.nbytes);
  out.commit();
}

}  // namespace mohge
