// defines: GradientSync — the gradients, gradient norm, logged means and (ZeRO-1) sharded update of
//          a data × expert parallel job (issue 9, SPEC §5)
// Every rank holds the replicated tensors (attention, norms, embeddings, routers, shared experts)
// and its own experts (names "*.experts.<e>.*"). After backward each rank's gradients hold its
// tokens' contributions, already scaled by 1/P (the trainer's loss scale: the mean over the global
// batch). A replicated tensor's gradient is summed over all P ranks and an expert's over the DP
// ranks that hold it (the expert-data-parallel group); the EP ranks of a group hold different
// experts and never sum them. Tensors are reduced in runs of consecutive tensors of one kind: every
// rank registers the same runs in the same order (each owns E/EP experts per layer).
//
// ZeRO-1 (Rajbhandari et al. 2020, stage 1): each run is cut into one contiguous block per rank of
// its group; a rank keeps AdamW moments for its blocks only (owned()), so the optimizer state per
// rank is 1/P of the replicated tensors' and 1/DP of its experts'. The gradients are
// reduce-scattered rather than all-reduced and sliced: each rank receives the sums of its block
// alone, half the traffic of an all-reduce, and the all-gather of the updated weights is the other
// half — together the bytes of the all-reduce they replace.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/collective.h"
#include "model/params.h"
#include "train/optimizer.h"

namespace mohge {

class GradientSync {
 public:
  // groups: null for one process (then every call is local). zero1: shard the update (above).
  GradientSync(const ParamTable& params, const ParallelGroups* groups, bool zero1 = false);
  // The ranges of the parameter buffer this rank updates (AdamW's `owned`): its blocks with
  // zero1, else the whole buffer.
  std::vector<ParamRange> owned() const;
  // Sums the gradients over the ranks holding each tensor: all of them (all-reduce), or with zero1
  // only this rank's blocks (reduce-scatter; the rest of the gradient buffer is stale after it).
  void reduce(ParamTable& params);
  // sqrt(Σ g²) over the job's gradients, each weight counted once however many ranks hold it.
  // After reduce.
  double global_norm(ParamTable& params);
  // zero1: every rank's updated blocks to the other ranks of their groups (all-gather), after the
  // optimizer step; without zero1 nothing (every rank updated everything).
  void share_weights(ParamTable& params);
  // A whole-buffer AdamW with every rank's moments (zero1; collective): what a checkpoint writes.
  AdamW gather_moments(const ParamTable& params, const AdamW& opt);
  bool sharded() const { return zero1_; }
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
    Collective* group;           // the ranks summing it (null or size 1: none)
    std::vector<int64_t> block;  // zero1: its length cut into one block per rank of group
    int64_t own_begin, own_end;  // this rank's block (zero1), else the whole run
  };
  void allgather_runs(float* buffer);  // zero1: every run's blocks to every rank of its group
  Collective* world_ = nullptr;
  Collective* expert_ = nullptr;
  Collective* expert_data_ = nullptr;
  bool zero1_ = false;
  std::vector<Run> runs_;
};

// Whether a parameter is a routed expert's (held by one EP rank) rather than replicated.
bool is_expert_param(const std::string& name);

}  // namespace mohge
