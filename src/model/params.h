// defines: ParamTable — every parameter of a model in one backend allocation, carved into named
// tensors. Modules register tensors (name, shape, init) before allocate(); afterwards
// data(id)/grad(id) point into two flat buffers on the table's backend, so the optimizer, gradient
// clipping and checkpointing each work over one array, and names follow Hugging Face conventions
// for interchange.
#pragma once
#include <cstdint>
#include <memory>
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
  ~ParamTable();
  // Move-only; a moved-from table holds nothing (its destructor unfreezes nothing).
  ParamTable(ParamTable&& o) noexcept;
  ParamTable& operator=(ParamTable&&) = delete;
  int add(const std::string& name, std::vector<int64_t> shape, ParamInit init, float init_std,
          bool decay);
  // Zero weights (and gradients, for training) on the backend; call once after all add()s.
  void allocate(bool grads = true);
  // Inference, instead of allocate: the weights are the total() floats at w, host memory laid out
  // as allocate() lays them (offsets of infos()) that the table does not own: a read-only mapping
  // of a checkpoint, which `owner` keeps alive. No gradients. Host-accessible backends only.
  void adopt(std::shared_ptr<const char> owner, const float* w);
  bool adopted() const { return owner_ != nullptr; }
  bool has_grads() const { return grad_.data() != nullptr; }
  // Deterministic: each tensor draws from its own stream seeded by (seed, name), so adding a
  // tensor does not change the others' initial values.
  void init_weights(uint64_t seed);
  void zero_grad();
  // Inference: the weights are frozen from now on (Backend::set_inference_weights, with a
  // bfloat16 copy when bf16), so the backend may use its inference kernels on them; until the
  // table is destroyed.
  void freeze(bool bf16);

  // Backend pointers (host-readable only where backend().host_accessible()).
  float* data(int id) { return w_ + infos_[id].offset; }
  const float* data(int id) const { return w_ + infos_[id].offset; }
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
  const float* host_data(std::vector<float>& staging) const { return owner_ ? w_ : data_.host_read(total(), staging); }
  const float* host_grad(std::vector<float>& staging) const { return grad_.host_read(total(), staging); }
  float* all_data() { return w_; }
  float* all_grad() { return grad_.data(); }
  const float* all_data() const { return w_; }

 private:
  Backend* be_;
  std::vector<ParamInfo> infos_;
  std::unordered_map<std::string, int> by_name_;  // registering stays linear in the tensor count
  Buffer<float> data_, grad_;
  float* w_ = nullptr;                 // the weights: data_, or adopted memory
  std::shared_ptr<const char> owner_;  // keeps adopted weights alive
  int64_t next_offset_ = 0;
  bool frozen_ = false;
};

}  // namespace mohge
