// defines: npy_write_f32 — NumPy .npy v1.0 writer, so other implementations can diff our tensors
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mohge {
void npy_write_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
}
