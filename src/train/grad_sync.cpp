// defines: GradientSync, is_expert_param (see grad_sync.h)
#include "train/grad_sync.h"

#include <cmath>

#include "core/error.h"
#include "train/optimizer.h"

namespace mohge {

bool is_expert_param(const std::string& name) { return name.find(".experts.") != std::string::npos; }

GradientSync::GradientSync(const ParamTable& params, const ParallelGroups* groups) {
  if (groups) world_ = groups->world, expert_ = groups->expert, expert_data_ = groups->expert_data;
  const auto& infos = params.infos();
  for (size_t i = 0; i < infos.size(); i++) {
    const bool expert = is_expert_param(infos[i].name);
    const int64_t begin = (int64_t)infos[i].offset;
    const int64_t end = i + 1 < infos.size() ? (int64_t)infos[i + 1].offset : params.total();
    if (!runs_.empty() && runs_.back().expert == expert) runs_.back().end = end;
    else runs_.push_back({begin, end, expert});
  }
}

void GradientSync::allreduce(ParamTable& params) {
  if (!world_) return;
  params.backend().synchronize();  // the gradients the collectives read are complete
  for (const Run& r : runs_) {
    Collective* group = r.expert ? expert_data_ : world_;
    if (group && group->size() > 1) group->allreduce_sum(params.all_grad() + r.begin, r.end - r.begin);
  }
}

double GradientSync::global_norm(ParamTable& params) {
  Backend& be = params.backend();
  if (!world_) return grad_global_norm(be, params.all_grad(), params.total());
  double sq[2] = {0.0, 0.0};  // replicated, this rank's experts
  Buffer<double> part(be, 1);
  for (const Run& r : runs_) {
    be.sum_squares(part.data(), params.all_grad() + r.begin, r.end - r.begin);
    sq[r.expert] += part.to_host()[0];
  }
  if (expert_ && expert_->size() > 1) expert_->allreduce_sum(&sq[1], 1);  // every expert of the layer
  return std::sqrt(sq[0] + sq[1]);
}

double GradientSync::mean(double v) {
  if (!world_) return v;
  world_->allreduce_sum(&v, 1);
  return v / world_->size();
}

void GradientSync::mean(std::map<std::string, double>& values) {
  if (!world_) return;
  std::vector<double> flat;
  for (auto& [k, v] : values) flat.push_back(v);  // the same keys on every rank (the model's terms)
  world_->allreduce_sum(flat.data(), (int64_t)flat.size());
  size_t i = 0;
  for (auto& [k, v] : values) v = flat[i++] / world_->size();
}

int GradientSync::any(int flag) {
  if (!world_) return flag;
  std::vector<double> flags(world_->size(), 0.0);
  flags[world_->rank()] = flag;
  world_->allreduce_sum(flags.data(), (int64_t)flags.size());
  for (double f : flags)
    if (f != 0.0) return (int)f;
  return 0;
}

}  // namespace mohge
