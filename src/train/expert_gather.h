// defines: FullModel, gather_experts — the whole model on one rank, for a checkpoint of an
//          expert-parallel run (issue 9: checkpoints do not depend on P)
// Each EP rank holds its experts under their global names (model/moe_experts.h); a checkpoint holds
// every expert. gather_experts sends each rank's expert weights and AdamW moments to EP rank 0,
// which assembles a single-process model (expert_parallel = 1) with its moments: that is what
// checkpoint_save writes, so the files are the same whatever P was.
#pragma once
#include <memory>

#include "core/collective.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace mohge {

struct FullModel {
  std::unique_ptr<Model> model;  // every expert; expert_parallel = 1
  std::unique_ptr<AdamW> opt;    // its moments
};

// Collective over `group` (the EP ranks of one group; m is rank group.rank()'s part). Rank 0 gets the
// full model and moments, the others an empty FullModel.
FullModel gather_experts(const Model& m, const AdamW& opt, Collective& group);

}  // namespace mohge
