#include "core/npy.h"

#include "core/fileio.h"

namespace mohge {

void npy_write_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t n = 1;
  for (int64_t s : shape) {
    dict += std::to_string(s) + ",";
    n *= s;
  }
  if (shape.size() > 1) dict.pop_back();
  dict += "), }";
  // magic(6) + version(2) + len(2) + dict + padding + '\n' is a multiple of 64
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string head = "\x93NUMPY\x01";
  head += '\0';
  uint16_t len = (uint16_t)dict.size();
  head.append(reinterpret_cast<const char*>(&len), 2);
  AtomicFile f(path);
  f.write(head.data(), head.size());
  f.write(dict.data(), dict.size());
  f.write(data, (size_t)n * sizeof(float));
  f.commit();
}

}  // namespace mohge
