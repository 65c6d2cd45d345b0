// defines: GradientSync — the gradients, gradient norm and logged means of a data × expert
//          parallel job (issue 9, SPEC §5)
// Every rank holds the replicated tensors (attention, norms, embeddings, routers, shared experts)
// and its own experts (names "*.experts.<e>.*"). After backward each rank's gradients hold its
// tokens' contributions, already scaled by 1/P (the trainer's loss scale: the mean over the global
// batch). allreduce() sums a replicated tensor's gradient over all P ranks and an expert's over
// the DP ranks that hold it (the expert-data-parallel group); the EP ranks of a group hold
// different experts and never sum them. Tensors are all-reduced in runs of consecutive tensors of
// one kind: every rank registers the same runs in the same order (each owns E/EP experts per layer).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/collective.h"
#include "model/params.h"

namespace mohge {

class GradientSync {
 public:
  // groups: null for one process (then every call is local).
  GradientSync(const ParamTable& params, const ParallelGroups* groups);
  void allreduce(ParamTable& params);
  // sqrt(Σ g²) over the job's gradients, each tensor counted once however many ranks hold it:
  // the replicated tensors on this rank plus every expert of this EP group. After allreduce.
  double global_norm(ParamTable& params);
  // The mean over all ranks of each value (the logged losses and aux terms).
  double mean(double v);
  void mean(std::map<std::string, double>& values);
  // Whether any rank passed a non-zero flag; the first non-zero one (e.g. the signal a rank caught).
  int any(int flag);
  int ranks() const { return world_ ? world_->size() : 1; }

 private:
  struct Run {
    int64_t begin, end;  // floats of the parameter buffer, padding included
    bool expert;
  };
  Collective* world_ = nullptr;
  Collective* expert_ = nullptr;
  Collective* expert_data_ = nullptr;
  std::vector<Run> runs_;
};

// Whether a parameter is a routed expert's (held by one EP rank) rather than replicated.
bool is_expert_param(const std::string& name);

}  // namespace mohge
