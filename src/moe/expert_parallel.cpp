// defines: default_placement, expert_slots (see expert_parallel.h)
#include "moe/expert_parallel.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace mohge {

PlacementPolicy default_placement(MoeKind kind) {
  switch (kind) {
    case MoeKind::mohge: return PlacementPolicy::all_size;
    case MoeKind::hmoe: return PlacementPolicy::pairing;
    case MoeKind::moe: return PlacementPolicy::contiguous;
  }
  return PlacementPolicy::contiguous;
}

std::vector<int> ExpertSlots::experts_of(int r) const {
  return std::vector<int>(expert.begin() + (size_t)r * per_rank, expert.begin() + (size_t)(r + 1) * per_rank);
}

ExpertSlots expert_slots(const MoeConfig& cfg, const ExpertParallel& ep) {
  MOHGE_CHECK(ep.size >= 1 && ep.rank >= 0 && ep.rank < ep.size,
              "expert parallel: rank {} outside [0, {}) (size must be >= 1)", ep.rank, ep.size);
  const int E = cfg.num_experts;
  const bool two = cfg.router == RouterKind::two_level;
  const std::vector<int> owner =
      place_experts(ep.placement.value_or(default_placement(cfg.kind)), cfg.expert_widths,
                    two ? cfg.num_expert_groups : E, two ? cfg.experts_per_group : 1, ep.size);
  ExpertSlots s;
  s.ranks = ep.size;
  s.per_rank = E / ep.size;
  s.expert.resize(E);
  std::iota(s.expert.begin(), s.expert.end(), 0);
  std::stable_sort(s.expert.begin(), s.expert.end(), [&](int a, int b) { return owner[a] < owner[b]; });
  s.slot.resize(E);
  for (int i = 0; i < E; i++) s.slot[s.expert[i]] = i;
  return s;
}

}  // namespace mohge
