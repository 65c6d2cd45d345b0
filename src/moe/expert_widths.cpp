// defines: the width helpers of expert_widths.h
#include "moe/expert_widths.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mohge {

std::vector<double> hmoe_relative_sizes(std::string_view strategy, int E) {
  MOHGE_CHECK(E >= 1, "expert widths: num_experts = {} must be >= 1", E);
  std::vector<double> r(E);
  if (strategy == "arithmetic") {
    for (int i = 0; i < E; i++) r[i] = 9.0 + 2.0 * i;
  } else if (strategy == "geometric") {
    MOHGE_CHECK(E <= 62, "expert widths: geometric strategy with num_experts = {} > 62 overflows", E);
    for (int i = 0; i < E; i++) r[i] = std::ldexp(1.0, i);
  } else if (strategy == "hybrid") {
    // HMoE's 1,1,1,1,2,2,4,4 for E=8, generalised as half of size 1, a quarter each of 2 and 4
    MOHGE_CHECK(E % 4 == 0, "expert widths: hybrid strategy needs num_experts divisible by 4 (got {})", E);
    for (int i = 0; i < E; i++) r[i] = i < E / 2 ? 1.0 : (i < 3 * E / 4 ? 2.0 : 4.0);
  } else {
    fail("expert widths: unknown width strategy '{}' (valid: arithmetic, geometric, hybrid, or an explicit list)",
         strategy);
  }
  return r;
}

std::vector<int> scale_widths(const std::vector<double>& relative, int total_width, int multiple) {
  const int E = (int)relative.size();
  MOHGE_CHECK(E >= 1, "expert widths: empty list of relative sizes");
  MOHGE_CHECK(multiple >= 1, "expert widths: multiple = {} must be >= 1", multiple);
  double rsum = 0.0;
  for (int e = 0; e < E; e++) {
    MOHGE_CHECK(std::isfinite(relative[e]) && relative[e] > 0.0,
                "expert widths: relative size [{}] = {} must be > 0", e, relative[e]);
    rsum += relative[e];
  }
  const long U = std::lround((double)total_width / multiple);  // target units
  MOHGE_CHECK(U >= E, "expert widths: total width {} gives {} units of {} but {} experts need at least one each",
              total_width, U, multiple, E);

  std::vector<double> ideal(E);
  std::vector<long> units(E);
  long assigned = 0;
  for (int e = 0; e < E; e++) {
    ideal[e] = (double)U * relative[e] / rsum;
    // the 1e-9 keeps exact shares such as 36.0 computed as 35.9999999 from losing a unit
    units[e] = std::max(1L, (long)std::floor(ideal[e] + 1e-9));
    assigned += units[e];
  }
  while (assigned < U) {
    // largest remainder first; ties go to the higher index so equal or ascending sizes stay
    // non-decreasing in the expert index
    int best = -1;
    double best_rem = 0.0;
    for (int e = E - 1; e >= 0; e--) {
      double rem = ideal[e] - (double)units[e];
      if (best < 0 || rem > best_rem) best = e, best_rem = rem;
    }
    units[best]++;
    assigned++;
  }
  while (assigned > U) {
    // only after 1-unit minimums: take a unit where it costs the least relative to the ideal share,
    // i.e. from the expert with the smallest (ideal − units + 1)/ideal (the large ones); higher index on ties
    int best = -1;
    double best_cost = 0.0;
    for (int e = E - 1; e >= 0; e--) {
      if (units[e] <= 1) continue;
      double cost = (ideal[e] - (double)units[e] + 1.0) / ideal[e];
      if (best < 0 || cost < best_cost) best = e, best_cost = cost;
    }
    MOHGE_CHECK(best >= 0, "expert widths: cannot fit {} experts into {} units", E, U);
    units[best]--;
    assigned--;
  }
  std::vector<int> w(E);
  for (int e = 0; e < E; e++) w[e] = (int)(units[e] * multiple);
  return w;
}

std::vector<int> hmoe_widths(std::string_view strategy, int E, int total_width, int multiple) {
  return scale_widths(hmoe_relative_sizes(strategy, E), total_width, multiple);
}

std::vector<int> hmoe_widths(const std::vector<double>& relative, int total_width, int multiple) {
  return scale_widths(relative, total_width, multiple);
}

std::vector<int> mohge_group_widths(int Ng, int start, int step) {
  MOHGE_CHECK(Ng >= 1, "group widths: num_expert_groups = {} must be >= 1", Ng);
  MOHGE_CHECK(start > 0, "group widths: start width = {} must be > 0", start);
  MOHGE_CHECK(step >= 0, "group widths: width step = {} must be >= 0 (group widths increase with g)", step);
  std::vector<int> w(Ng);
  for (int g = 0; g < Ng; g++) w[g] = start + g * step;
  return w;
}

std::vector<int> mohge_group_widths(const std::vector<int>& list) {
  MOHGE_CHECK(!list.empty(), "group widths: empty list");
  for (size_t g = 0; g < list.size(); g++)
    MOHGE_CHECK(list[g] > 0, "group widths: group_widths[{}] = {} must be > 0", g, list[g]);
  return list;
}

std::vector<int> mohge_expert_widths(const std::vector<int>& group_widths, int N) {
  MOHGE_CHECK(N >= 1, "group widths: experts_per_group = {} must be >= 1", N);
  mohge_group_widths(group_widths);  // validate
  std::vector<int> w;
  w.reserve(group_widths.size() * N);
  for (int wg : group_widths)
    for (int i = 0; i < N; i++) w.push_back(wg);
  return w;
}

}  // namespace mohge
