#include "model/params.h"

#include <algorithm>
#include <functional>
#include <random>
#include <utility>

#include "core/error.h"
#include "core/memory_budget.h"

namespace mohge {

ParamTable::ParamTable(ParamTable&& o) noexcept
    : be_(o.be_), infos_(std::move(o.infos_)), by_name_(std::move(o.by_name_)), data_(std::move(o.data_)),
      grad_(std::move(o.grad_)), w_(std::exchange(o.w_, nullptr)), owner_(std::move(o.owner_)),
      next_offset_(o.next_offset_), frozen_(std::exchange(o.frozen_, false)) {}

ParamTable::~ParamTable() {
  if (frozen_)
    for (auto& p : infos_) be_->clear_inference_weights(w_ + p.offset);
}

void ParamTable::freeze(bool bf16) {
  MOHGE_CHECK(w_ && !frozen_, "ParamTable::freeze: before allocate() or twice");
  // tensor by tensor, so a backend's bf16 copy of each starts on a cache line of its own; all in
  // one call, which declares all or none
  std::vector<Backend::WeightRange> tensors;
  for (const ParamInfo& p : infos_) tensors.push_back({w_ + p.offset, (size_t)p.numel});
  be_->set_inference_weights(tensors, bf16);
  frozen_ = true;
}

int ParamTable::add(const std::string& name, std::vector<int64_t> shape, ParamInit init,
                    float init_std, bool decay) {
  MOHGE_CHECK(!w_, "ParamTable::add('{}') after allocate()", name);
  MOHGE_CHECK(by_name_.emplace(name, (int)infos_.size()).second, "duplicate parameter name '{}'", name);
  ParamInfo p{name, std::move(shape), 1, 0, init, init_std, decay};
  for (int64_t s : p.shape) p.numel *= s;
  // 16-float alignment (64 bytes) so every tensor starts on a cache line
  p.offset = (size_t)next_offset_;
  next_offset_ += (p.numel + 15) / 16 * 16;
  infos_.push_back(std::move(p));
  return (int)infos_.size() - 1;
}

void ParamTable::allocate(bool grads) {
  MOHGE_CHECK(!w_, "ParamTable::allocate: the weights are there already");
  // host memory only: a device backend's alloc names the size when the device runs out
  if (be_->host_accessible())
    require_memory((uint64_t)next_offset_ * (grads ? 2 : 1) * sizeof(float),
                   fmt::format("a model of {} parameters (fp32 weights{})", count(), grads ? " and gradients" : ""));
  w_ = data_.zeros(*be_, (size_t)next_offset_);
  if (grads) grad_.zeros(*be_, (size_t)next_offset_);
}

void ParamTable::adopt(std::shared_ptr<const char> owner, const float* w) {
  MOHGE_CHECK(!w_ && be_->host_accessible() && owner, "ParamTable::adopt: weights there already, or not host memory");
  owner_ = std::move(owner);
  w_ = const_cast<float*>(w);  // read-only memory: inference never writes weights
}

void ParamTable::init_weights(uint64_t seed) {
  MOHGE_CHECK(!owner_ && !frozen_, "ParamTable::init_weights: the weights are read-only (inference)");
  std::vector<float> host;
  for (auto& p : infos_) {
    host.resize((size_t)p.numel);
    if (p.init == ParamInit::ones) {
      be_->fill(w_ + p.offset, 1.0f, p.numel);
      continue;
    }
    std::mt19937_64 rng(seed ^ std::hash<std::string>{}(p.name));
    std::normal_distribution<float> dist(0.0f, p.init_std);
    for (auto& x : host) x = dist(rng);
    be_->upload(w_ + p.offset, host.data(), host.size() * sizeof(float));
  }
}

void ParamTable::zero_grad() { be_->zero(grad_.data(), grad_.size() * sizeof(float)); }

std::vector<ParamSegment> ParamTable::segments(bool decay_all) const {
  std::vector<ParamSegment> s;
  for (auto& p : infos_) s.push_back({p.offset, p.numel, p.decay || decay_all});
  return s;
}

int ParamTable::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

}  // namespace mohge
