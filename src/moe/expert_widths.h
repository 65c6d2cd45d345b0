// defines: mohge::hmoe_relative_sizes, scale_widths, hmoe_widths, mohge_group_widths,
//          mohge_expert_widths
// Expert hidden widths for the heterogeneous layouts (SPEC §2).
//
// Rounding rule of scale_widths (and so of hmoe_widths): work in units of `multiple`. The target is
// U = round(total_width / multiple) units (exact when total_width is a multiple of `multiple`). Each
// expert's ideal share u_e = U · r_e / Σr is floored (at least 1 unit); the units still missing are
// handed out one each to the largest remainders u_e − ⌊u_e⌋ (ties: higher index first, so
// ascending sizes stay non-decreasing). If the
// 1-unit minimum overshoots U (tiny shares, e.g. geometric with many experts), units are taken back
// one at a time where that costs least relative to the ideal share, i.e. from the expert with the
// smallest (u_e − units_e + 1)/u_e (the large ones; ties: higher index first). So Σ W_e =
// U·multiple exactly and every W_e is a positive multiple of `multiple`; when no share is below one
// unit, each W_e is within one unit of its ideal.
// Example: E=8 arithmetic, total 4096, multiple 8 → 288, 352, 416, 480, 544, 608, 672, 736.
#pragma once
#include <string_view>
#include <vector>

namespace mohge {

// Relative sizes of a named strategy (HMoE §2.3.2), ascending in the expert index:
//   "arithmetic": 9 + 2i            (E=8: 9, 11, …, 23)
//   "geometric":  2^i               (E=8: 1, 2, …, 128)
//   "hybrid":     E/2 of 1, E/4 of 2, E/4 of 4 (E=8: 1,1,1,1,2,2,4,4); needs E divisible by 4
std::vector<double> hmoe_relative_sizes(std::string_view strategy, int E);

// Scale positive relative sizes so Σ W = total_width (rounded to `multiple`, rule above).
std::vector<int> scale_widths(const std::vector<double>& relative, int total_width, int multiple = 8);

// Named strategy → widths summing to total_width.
std::vector<int> hmoe_widths(std::string_view strategy, int E, int total_width, int multiple = 8);
// Explicit list of relative sizes → widths summing to total_width (an explicit list that already
// sums to total_width in multiples of `multiple` comes back unchanged).
std::vector<int> hmoe_widths(const std::vector<double>& relative, int total_width, int multiple = 8);

// MoHGE group widths W_g = start + g·step, g ∈ [0, Ng) (code: 8, 384, 128 → 384…1280).
std::vector<int> mohge_group_widths(int Ng, int start, int step);
// Explicit per-group list (validated: non-empty, positive).
std::vector<int> mohge_group_widths(const std::vector<int>& list);
// Expand group widths to the E = Ng·N expert widths (expert e = g·N + i has width W_g).
std::vector<int> mohge_expert_widths(const std::vector<int>& group_widths, int N);

}  // namespace mohge
