#include "core/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"

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
  for (int64_t s : shape) n *= s;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafetensorsFile SafetensorsFile::load(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.bytes_ = read_file_bytes(path);
  const auto& b = f.bytes_;
  MOHGE_CHECK(b.size() >= 8, "{}: not a safetensors file (only {} bytes)", path, b.size());
  uint64_t hlen;
  std::memcpy(&hlen, b.data(), 8);
  MOHGE_CHECK(hlen <= b.size() - 8, "{}: truncated or corrupt (header length {} > file size {})",
              path, hlen, b.size());
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(b.begin() + 8, b.begin() + 8 + (int64_t)hlen);
  } catch (const std::exception& e) {
    fail("{}: corrupt safetensors header ({})", path, e.what());
  }
  MOHGE_CHECK(header.is_object(), "{}: corrupt safetensors header (not a JSON object)", path);
  const size_t data_start = 8 + hlen, data_size = b.size() - data_start;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      MOHGE_CHECK(info.is_object(), "{}: __metadata__ is not an object", path);
      for (auto& [k, v] : info.items())
        f.metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
      continue;
    }
    try {
      TensorView t;
      t.name = name;
      t.dtype = info.at("dtype").get<std::string>();
      t.shape = info.at("shape").get<std::vector<int64_t>>();
      auto off = info.at("data_offsets").get<std::vector<uint64_t>>();
      size_t es = dtype_size(t.dtype);
      MOHGE_CHECK(es > 0, "{}: tensor '{}' has unknown dtype '{}'", path, name, t.dtype);
      MOHGE_CHECK(off.size() == 2 && off[0] <= off[1] && off[1] <= data_size,
                  "{}: tensor '{}' data lies outside the file (truncated?)", path, name);
      for (int64_t s : t.shape) MOHGE_CHECK(s >= 0, "{}: tensor '{}' has a negative dim", path, name);
      t.nbytes = off[1] - off[0];
      MOHGE_CHECK(t.nbytes == (size_t)t.numel() * es,
                  "{}: tensor '{}' has {} bytes but shape {} {} needs {}", path, name, t.nbytes,
                  t.dtype, shape_str(t.shape), (size_t)t.numel() * es);
      t.data = b.data() + data_start + off[0];
      f.index_[name] = f.tensors_.size();
      f.tensors_.push_back(std::move(t));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: corrupt entry for tensor '{}' ({})", path, name, e.what());
    }
  }
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
  return static_cast<const float*>(t.data);
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
  h.append((8 - h.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  AtomicFile out(path);
  uint64_t hlen = h.size();
  out.write(&hlen, 8);
  out.write(h.data(), h.size());
  for (const auto& t : tensors) out.write(t.data, t.nbytes);
  out.commit();
}

}  // namespace mohge
