// defines: rope_angles and the shared RoPE tables of kernels/rope_table.h
#include "kernels/rope_table.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <mutex>

namespace mohge {

void rope_angles(float* cs, float* sn, int64_t pos, const RopeTable& t) {
  for (int i = 0; i < t.hd / 2; i++) {
    const double a = (double)pos * t.freq[i];
    cs[i] = (float)std::cos(a);
    sn[i] = (float)std::sin(a);
  }
}

namespace {

std::shared_ptr<const RopeTable> build_table(float theta, int hd, int64_t positions) {
  auto t = std::make_shared<RopeTable>(RopeTable{theta, hd, positions, std::vector<double>(hd / 2), {}});
  for (int i = 0; i < hd / 2; i++) t->freq[i] = std::pow((double)theta, -2.0 * i / hd);
  t->angles.resize((size_t)positions * hd);
  for (int64_t p = 0; p < positions; p++) {
    float* a = t->angles.data() + p * hd;
    rope_angles(a, a + hd / 2, p, *t);
  }
  return t;
}

}  // namespace

std::shared_ptr<const RopeTable> rope_table(float theta, int hd, int64_t pos_end) {
  pos_end = std::min(pos_end, kRopeTableMaxPositions);
  auto same = [&](const RopeTable& t) { return t.theta == theta && t.hd == hd; };
  thread_local std::shared_ptr<const RopeTable> last;
  if (last && same(*last) && last->positions >= pos_end) return last;
  static std::mutex mu;
  static std::vector<std::shared_ptr<const RopeTable>> tables;  // oldest first
  std::lock_guard lock(mu);
  auto it = std::find_if(tables.begin(), tables.end(), [&](const auto& t) { return same(*t); });
  if (it == tables.end() || (*it)->positions < pos_end) {
    if (it != tables.end()) tables.erase(it);
    if ((int)tables.size() == kRopeTables) tables.erase(tables.begin());
    const int64_t positions = std::clamp<int64_t>((int64_t)std::bit_ceil((uint64_t)pos_end), 256, kRopeTableMaxPositions);
    tables.push_back(build_table(theta, hd, positions));
    it = tables.end() - 1;
  }
  return last = *it;
}

}  // namespace mohge
