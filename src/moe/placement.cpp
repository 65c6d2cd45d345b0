// defines: place_experts, device_static_width, load_report, max_vio (see placement.h)
#include "moe/placement.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace mohge {

PlacementPolicy placement_from_string(std::string_view s) {
  if (s == "contiguous") return PlacementPolicy::contiguous;
  if (s == "pairing") return PlacementPolicy::pairing;
  if (s == "all_size") return PlacementPolicy::all_size;
  fail("unknown placement '{}' (valid: contiguous, pairing, all_size)", s);
}

const char* to_string(PlacementPolicy p) {
  switch (p) {
    case PlacementPolicy::contiguous: return "contiguous";
    case PlacementPolicy::pairing: return "pairing";
    case PlacementPolicy::all_size: return "all_size";
  }
  return "?";
}

std::vector<long> device_static_width(const std::vector<int>& placement, const std::vector<int>& widths, int D) {
  MOHGE_CHECK(placement.size() == widths.size(), "placement: {} devices given for {} experts", placement.size(),
              widths.size());
  std::vector<long> w(D, 0);
  for (size_t e = 0; e < widths.size(); e++) {
    MOHGE_CHECK(placement[e] >= 0 && placement[e] < D, "placement: expert {} on device {} outside [0, {})", e,
                placement[e], D);
    w[placement[e]] += widths[e];
  }
  return w;
}

std::vector<int> place_experts(PlacementPolicy policy, const std::vector<int>& widths, int Ng, int N, int D) {
  const int E = (int)widths.size();
  MOHGE_CHECK(E >= 1, "placement: no experts");
  MOHGE_CHECK(D >= 1, "placement: number of devices D = {} must be >= 1", D);
  MOHGE_CHECK(E % D == 0, "placement {}: {} experts do not split evenly over D = {} devices", to_string(policy), E,
              D);
  for (int e = 0; e < E; e++) MOHGE_CHECK(widths[e] > 0, "placement: width of expert {} = {} must be > 0", e, widths[e]);
  const int per = E / D;
  std::vector<int> dev(E);
  switch (policy) {
    case PlacementPolicy::contiguous:
      for (int e = 0; e < E; e++) dev[e] = e / per;
      break;
    case PlacementPolicy::pairing: {
      std::vector<int> order(E);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return widths[a] > widths[b]; });
      std::vector<long> load(D, 0);
      std::vector<int> used(D, 0);
      for (int e : order) {
        int best = -1;
        for (int r = 0; r < D; r++)
          if (used[r] < per && (best < 0 || load[r] < load[best])) best = r;
        dev[e] = best;
        load[best] += widths[e];
        used[best]++;
      }
      break;
    }
    case PlacementPolicy::all_size: {
      MOHGE_CHECK(Ng >= 1 && N >= 1 && (long)Ng * N == E,
                  "placement all_size: num_expert_groups × experts_per_group = {} × {} must equal {} experts", Ng, N,
                  E);
      // π: 0, Ng−1, 1, Ng−2, …
      std::vector<int> pi(Ng);
      for (int j = 0, lo = 0, hi = Ng - 1; j < Ng; j++) pi[j] = (j % 2 == 0) ? lo++ : hi--;
      for (int s = 0; s < E; s++) dev[pi[s % Ng] * N + s / Ng] = s / per;
      const std::vector<long> w = device_static_width(dev, widths, D);
      const auto [mn, mx] = std::minmax_element(w.begin(), w.end());
      MOHGE_CHECK(*mn == *mx,
                  "placement all_size: D = {} gives unequal static width per device (min {}, max {}); choose a D "
                  "whose device slices hold equal total width (e.g. a divisor of N = {} or of E = {} that keeps "
                  "whole interleave rounds)",
                  D, *mn, *mx, N, E);
      break;
    }
  }
  return dev;
}

LoadReport load_report(const std::vector<int>& placement, const std::vector<double>& n,
                       const std::vector<int>& widths, int D) {
  MOHGE_CHECK(D >= 1, "load report: D = {} must be >= 1", D);
  MOHGE_CHECK(placement.size() == n.size() && n.size() == widths.size(),
              "load report: sizes differ (placement {}, tokens_per_expert {}, widths {})", placement.size(), n.size(),
              widths.size());
  LoadReport rep;
  rep.device_load.assign(D, 0.0);
  rep.device_token_share.assign(D, 0.0);
  double total_tokens = 0.0;
  for (size_t e = 0; e < n.size(); e++) {
    const int r = placement[e];
    MOHGE_CHECK(r >= 0 && r < D, "load report: expert {} on device {} outside [0, {})", e, r, D);
    rep.device_load[r] += n[e] * widths[e];
    rep.device_token_share[r] += n[e];
    total_tokens += n[e];
  }
  if (total_tokens > 0)
    for (double& s : rep.device_token_share) s /= total_tokens;
  const double mean = std::accumulate(rep.device_load.begin(), rep.device_load.end(), 0.0) / D;
  const double mx = *std::max_element(rep.device_load.begin(), rep.device_load.end());
  rep.max_over_mean = mean > 0 ? mx / mean : 1.0;
  return rep;
}

LoadReport load_report(const std::vector<int>& placement, const std::vector<int>& n, const std::vector<int>& widths,
                       int D) {
  return load_report(placement, std::vector<double>(n.begin(), n.end()), widths, D);
}

double max_vio(const std::vector<double>& n) {
  if (n.empty()) return 0.0;
  const double mean = std::accumulate(n.begin(), n.end(), 0.0) / (double)n.size();
  if (mean <= 0) return 0.0;
  return *std::max_element(n.begin(), n.end()) / mean - 1.0;
}

double max_vio(const std::vector<int>& n) { return max_vio(std::vector<double>(n.begin(), n.end())); }

}  // namespace mohge
