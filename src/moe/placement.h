// defines: mohge::PlacementPolicy, placement_from_string, to_string, place_experts,
//          device_static_width, mohge::LoadReport, load_report, max_vio
// Expert -> device placement for expert parallelism and the FLOP-weighted load it implies (SPEC §5).
// Every policy gives each device E/D experts and refuses E % D != 0.
//   contiguous: device r holds experts [r·E/D, (r+1)·E/D).
//   pairing:    HMoE appendix D ("large with small"), done as longest-processing-time greedy with a
//               slot limit: experts in descending width (ties: lower index first) each go to the
//               device with the smallest static width so far that still has a free slot (ties: lower
//               device). For the arithmetic 288..736 widths on D=2 or 4 this pairs the largest with
//               the smallest and gives exactly equal static width per device.
//   all_size:   MoHGE all-size group decoupling: slot s ∈ [0,E) holds group π(s mod Ng), in-group
//               index ⌊s/Ng⌋ (expert π(s mod Ng)·N + ⌊s/Ng⌋), π = 0, Ng−1, 1, Ng−2, … (Ng=8:
//               0,7,1,6,2,5,3,4); device r holds slots [r·E/D, (r+1)·E/D). Refuses a D whose static
//               width Σ W_e per device differs between devices. Needs E = Ng·N; for an ungrouped
//               layout pass Ng = E, N = 1.
#pragma once
#include <string_view>
#include <vector>

namespace mohge {

enum class PlacementPolicy { contiguous, pairing, all_size };

PlacementPolicy placement_from_string(std::string_view s);  // "contiguous" | "pairing" | "all_size"
const char* to_string(PlacementPolicy p);

// Device id in [0, D) for each expert ([E]). widths [E]; Ng, N used by all_size only.
std::vector<int> place_experts(PlacementPolicy policy, const std::vector<int>& widths, int Ng, int N, int D);

// Σ W_e of the experts on each device ([D]).
std::vector<long> device_static_width(const std::vector<int>& placement, const std::vector<int>& widths, int D);

struct LoadReport {
  std::vector<double> device_load;         // [D] Σ_{e on r} n_e · W_e (FLOP-proportional)
  std::vector<double> device_token_share;  // [D] Σ_{e on r} n_e / Σ_e n_e
  double max_over_mean = 1.0;              // max_r load / mean_r load (1 when no tokens)
};

LoadReport load_report(const std::vector<int>& placement, const std::vector<double>& tokens_per_expert,
                       const std::vector<int>& widths, int D);
LoadReport load_report(const std::vector<int>& placement, const std::vector<int>& tokens_per_expert,
                       const std::vector<int>& widths, int D);

// MaxVio = max_e n_e / mean_e n_e − 1 (0 when no tokens).
double max_vio(const std::vector<double>& tokens_per_expert);
double max_vio(const std::vector<int>& tokens_per_expert);

}  // namespace mohge
