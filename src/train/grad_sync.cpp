// defines: GradientSync, is_expert_param (see grad_sync.h)
#include "train/grad_sync.h"

#include <cmath>

#include "core/error.h"

namespace mohge {

bool is_expert_param(const std::string& name) { return name.find(".experts.") != std::string::npos; }

GradientSync::GradientSync(const ParamTable& params, const ParallelGroups* groups, bool zero1) {
  if (groups) world_ = groups->world, expert_ = groups->expert, expert_data_ = groups->expert_data;
  zero1_ = zero1 && world_;
  const auto& infos = params.infos();
  for (size_t i = 0; i < infos.size(); i++) {
    const bool expert = is_expert_param(infos[i].name);
    const int64_t begin = (int64_t)infos[i].offset;
    const int64_t end = i + 1 < infos.size() ? (int64_t)infos[i + 1].offset : params.total();
    if (!runs_.empty() && runs_.back().expert == expert) runs_.back().end = end;
    else runs_.push_back({begin, end, expert, expert ? expert_data_ : world_, {}, 0, 0});
  }
  for (Run& r : runs_) {
    r.own_begin = r.begin, r.own_end = r.end;
    if (!zero1_ || !r.group || r.group->size() == 1) continue;
    const int S = r.group->size();
    const int64_t n = r.end - r.begin;
    r.block.resize(S);
    for (int s = 0; s < S; s++) {
      r.block[s] = n / S + (s < n % S);
      if (s < r.group->rank()) r.own_begin += r.block[s];
    }
    r.own_end = r.own_begin + r.block[r.group->rank()];
  }
}

std::vector<ParamRange> GradientSync::owned() const {
  std::vector<ParamRange> v;
  for (const Run& r : runs_) v.push_back({r.own_begin, r.own_end});
  return v;
}

void GradientSync::reduce(ParamTable& params) {
  if (!world_) return;
  params.backend().synchronize();  // the gradients the collectives read are complete
  for (const Run& r : runs_) {
    if (!r.group || r.group->size() == 1) continue;
    float* g = params.all_grad() + r.begin;
    if (r.block.empty()) r.group->allreduce_sum(g, r.end - r.begin);
    else r.group->reduce_scatter_sum(g, r.block.data());
  }
}

double GradientSync::global_norm(ParamTable& params) {
  Backend& be = params.backend();
  if (!world_) return grad_global_norm(be, params.all_grad(), params.total());
  // sums of squares: [0] the replicated tensors', [1] this rank's experts' (over its own ranges)
  double sq[2] = {0.0, 0.0};
  Buffer<double> part(be, 1);
  for (const Run& r : runs_) {
    be.sum_squares(part.data(), params.all_grad() + r.own_begin, r.own_end - r.own_begin);
    sq[r.expert] += part.to_host()[0];
  }
  if (zero1_) {  // every weight is in exactly one rank's blocks
    double all = sq[0] + sq[1];
    world_->allreduce_sum(&all, 1);
    return std::sqrt(all);
  }
  // every rank holds the replicated tensors; the EP ranks of a group hold every expert once
  if (expert_ && expert_->size() > 1) expert_->allreduce_sum(&sq[1], 1);
  return std::sqrt(sq[0] + sq[1]);
}

void GradientSync::allgather_runs(float* buffer) {
  for (const Run& r : runs_)
    if (!r.block.empty()) r.group->allgather(buffer + r.begin, r.block.data());
}

void GradientSync::share_weights(ParamTable& params) {
  if (zero1_) allgather_runs(params.all_data());
}

AdamW GradientSync::gather_moments(const ParamTable& params, const AdamW& opt) {
  AdamW full(params, opt.config());
  MOHGE_CHECK(params.backend().host_accessible(), "gather_moments: the moments are gathered in host memory");
  opt.store_moments(full.m.data(), full.v.data());
  allgather_runs(full.m.data());
  allgather_runs(full.v.data());
  return full;
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
