#include "model/params.h"

#include <algorithm>
#include <functional>
#include <random>

#include "core/error.h"
#include "core/memory_budget.h"

namespace mohge {

int ParamTable::add(const std::string& name, std::vector<int64_t> shape, ParamInit init,
                    float init_std, bool decay) {
  MOHGE_CHECK(!data_.data(), "ParamTable::add('{}') after allocate()", name);
  MOHGE_CHECK(by_name_.emplace(name, (int)infos_.size()).second, "duplicate parameter name '{}'", name);
  ParamInfo p{name, std::move(shape), 1, 0, init, init_std, decay};
  for (int64_t s : p.shape) p.numel *= s;
  // 16-float alignment (64 bytes) so every tensor starts on a cache line
  p.offset = (size_t)next_offset_;
  next_offset_ += (p.numel + 15) / 16 * 16;
  infos_.push_back(std::move(p));
  return (int)infos_.size() - 1;
}

void ParamTable::allocate() {
  // host memory only: a device backend's alloc names the size when the device runs out
  if (be_->host_accessible())
    require_memory((uint64_t)next_offset_ * 2 * sizeof(float),
                   fmt::format("a model of {} parameters (fp32 weights and gradients)", count()));
  data_.zeros(*be_, (size_t)next_offset_);
  grad_.zeros(*be_, (size_t)next_offset_);
}

void ParamTable::init_weights(uint64_t seed) {
  std::vector<float> host;
  for (auto& p : infos_) {
    host.resize((size_t)p.numel);
    if (p.init == ParamInit::ones) {
      be_->fill(data_.data() + p.offset, 1.0f, p.numel);
      continue;
    }
    std::mt19937_64 rng(seed ^ std::hash<std::string>{}(p.name));
    std::normal_distribution<float> dist(0.0f, p.init_std);
    for (auto& x : host) x = dist(rng);
    data_.upload(host.data(), host.size(), p.offset);
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
