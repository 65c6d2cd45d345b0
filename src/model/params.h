// defines: ParamTable — every parameter of a model in one allocation, carved into named tensors
// Modules register tensors (name, shape, init) before allocate(); afterwards data(id)/grad(id)
// point into two flat buffers, so the optimizer, gradient clipping and checkpointing each work
// over one array, and names follow Hugging Face conventions for interchange.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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
  int add(const std::string& name, std::vector<int64_t> shape, ParamInit init, float init_std,
          bool decay);
  void allocate();  // zero data and grad; call once after all add()s
  // Deterministic: each tensor draws from its own stream seeded by (seed, name), so adding a
  // tensor does not change the others' initial values.
  void init_weights(uint64_t seed);
  void zero_grad();

  float* data(int id) { return data_.data() + infos_[id].offset; }
  const float* data(int id) const { return data_.data() + infos_[id].offset; }
  float* grad(int id) { return grad_.data() + infos_[id].offset; }
  int find(const std::string& name) const;  // -1 when absent
  const std::vector<ParamInfo>& infos() const { return infos_; }
  int64_t total() const { return (int64_t)data_.size(); }  // buffer length (tensors are padded)
  int64_t count() const {                                   // parameters, without the padding
    int64_t n = 0;
    for (auto& p : infos_) n += p.numel;
    return n;
  }
  float* all_data() { return data_.data(); }
  float* all_grad() { return grad_.data(); }
  const float* all_data() const { return data_.data(); }

 private:
  std::vector<ParamInfo> infos_;
  std::vector<float> data_, grad_;
  int64_t next_offset_ = 0;
};

}  // namespace mohge
