// defines: mohge::ExpertParallel (this process's place among the expert-parallel ranks),
//          default_placement, mohge::ExpertSlots, expert_slots
// Expert parallelism (SPEC §5): a layer's E experts are split over D ranks by a placement policy
// (moe/placement.h), each rank holding L = E/D of them. Every rank routes its own tokens to all E
// experts and sends each row to the rank owning its expert; ExpertSlots is the order of that send
// layout: rows grouped by owning rank, then by expert — what an all-to-all needs (per-rank counts
// are sums of consecutive per-expert counts).
#pragma once
#include <optional>
#include <vector>

#include "moe/moe_config.h"
#include "moe/placement.h"

namespace mohge {

// How the process runs a layer, not what the layer is (not part of config.json): the defaults, one
// rank holding every expert, are the single-process engine. Set by whoever starts the ranks (an
// MPI launcher); no TOML key reads it yet.
struct ExpertParallel {
  std::optional<PlacementPolicy> placement;  // unset: default_placement(kind)
  int size = 1;                              // D, expert-parallel ranks
  int rank = 0;                              // this process, in [0, D)
};

// The layout's own placement: all_size for mohge (MoHGE's group-decoupled allocation), pairing for
// hmoe (HMoE appendix D), contiguous for homogeneous experts (every placement balances them).
PlacementPolicy default_placement(MoeKind kind);

// Experts in send order. Slot s ∈ [0, E) holds global expert expert[s]; rank r owns slots
// [r·L, (r+1)·L), its experts in ascending global id. With D = 1 slot s is expert s.
struct ExpertSlots {
  int ranks = 1;            // D
  int per_rank = 0;         // L = E / D
  std::vector<int> expert;  // [E] global expert id of slot s
  std::vector<int> slot;    // [E] slot of global expert e (inverse of expert)
  // rank r's experts: expert[r·L .. (r+1)·L)
  std::vector<int> experts_of(int r) const;
};

// Places cfg's experts on ep.size ranks with ep's policy (two-level layouts place by their groups;
// ungrouped ones as Ng = E groups of one). Throws mohge::Error for a rank outside [0, size) and for
// the placement's own refusals (E % D != 0, all_size with unequal widths per rank).
ExpertSlots expert_slots(const MoeConfig& cfg, const ExpertParallel& ep);

}  // namespace mohge
