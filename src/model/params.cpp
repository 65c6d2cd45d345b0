#include "model/params.h"

#include <algorithm>
#include <functional>
#include <random>

#include "core/error.h"

namespace mohge {

int ParamTable::add(const std::string& name, std::vector<int64_t> shape, ParamInit init,
                    float init_std, bool decay) {
  MOHGE_CHECK(data_.empty(), "ParamTable::add('{}') after allocate()", name);
  MOHGE_CHECK(find(name) < 0, "duplicate parameter name '{}'", name);
  ParamInfo p{name, std::move(shape), 1, 0, init, init_std, decay};
  for (int64_t s : p.shape) p.numel *= s;
  // 16-float alignment (64 bytes) so every tensor starts on a cache line
  p.offset = (size_t)next_offset_;
  next_offset_ += (p.numel + 15) / 16 * 16;
  infos_.push_back(std::move(p));
  return (int)infos_.size() - 1;
}

void ParamTable::allocate() {
  data_.assign((size_t)next_offset_, 0.0f);
  grad_.assign((size_t)next_offset_, 0.0f);
}

void ParamTable::init_weights(uint64_t seed) {
  for (auto& p : infos_) {
    float* d = data_.data() + p.offset;
    if (p.init == ParamInit::ones) {
      std::fill(d, d + p.numel, 1.0f);
      continue;
    }
    std::mt19937_64 rng(seed ^ std::hash<std::string>{}(p.name));
    std::normal_distribution<float> dist(0.0f, p.init_std);
    for (int64_t i = 0; i < p.numel; i++) d[i] = dist(rng);
  }
}

void ParamTable::zero_grad() { std::fill(grad_.begin(), grad_.end(), 0.0f); }

int ParamTable::find(const std::string& name) const {
  for (size_t i = 0; i < infos_.size(); i++)
    if (infos_[i].name == name) return (int)i;
  return -1;
}

}  // namespace mohge
