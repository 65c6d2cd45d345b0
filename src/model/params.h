// defines: ParamTable — every parameter of a model in one backend allocation, carved into named
// tensors. Modules register tensors (name, shape, init) before allocate(); afterwards
// data(id)/grad(id) point into two flat buffers on the table's backend, so the optimizer, gradient
// clipping and checkpointing each work over one array, and names follow Hugging Face conventions
// for interchange.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/backend.h"

namespace mohge {

enum class ParamInit { normal, ones };

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  size_t offset = 0;
  ParamInit init = ParamInit::normal;
  float init_std = 0.0f;
  bool decay = true;  // AdamW weight decay applies (off for norms and, by default, embeddings)
};

class ParamTable {
 public:
  explicit ParamTable(Backend& be) : be_(&be) {}
  int add(const std::string& name, std::vector<int64_t> shape, ParamInit init, float init_std,
          bool decay);
  void allocate();  // zero data and grad on the backend; call once after all add()s
  // Deterministic: each tensor draws from its own stream seeded by (seed, name), so adding a
  // tensor does not change the others' initial values.
  void init_weights(uint64_t seed);
  void zero_grad();

  // Backend pointers (host-readable only where backend().host_accessible()).
  float* data(int id) { return data_.data() + infos_[id].offset; }
  const float* data(int id) const { return data_.data() + infos_[id].offset; }
  float* grad(int id) { return grad_.data() + infos_[id].offset; }
  int find(const std::string& name) const;  // -1 when absent
  const std::vector<ParamInfo>& infos() const { return infos_; }
  // The tensors as the optimizer sees them (offset, numel, decay), in registration order.
  std::vector<ParamSegment> segments(bool decay_all) const;
  Backend& backend() const { return *be_; }
  int64_t total() const { return next_offset_; }  // buffer length (tensors are padded)
  int64_t count() const {                                   // parameters, without the padding
    int64_t n = 0;
    for (auto& p : infos_) n += p.numel;
    return n;
  }
  // All total() weights / gradients for host code (checkpoints): the memory itself on a
  // host-accessible backend, else a copy in `staging` (Buffer::host_read).
  const float* host_data(std::vector<float>& staging) const { return data_.host_read(total(), staging); }
  const float* host_grad(std::vector<float>& staging) const { return grad_.host_read(total(), staging); }
  float* all_data() { return data_.data(); }
  float* all_grad() { return grad_.data(); }
  const float* all_data() const { return data_.data(); }

 private:
  Backend* be_;
  std::vector<ParamInfo> infos_;
  std::unordered_map<std::string, int> by_name_;  // registering stays linear in the tensor count
  Buffer<float> data_, grad_;
  int64_t next_offset_ = 0;
};

}  // namespace mohge
