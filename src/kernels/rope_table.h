// defines: RopeTable — the cos and sin of RoPE's rotation angles at positions 0, 1, … computed
//          once per (θ, head dim) and shared (rope_table) — and rope_angles, those of one position
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace mohge {

// RoPE (SPEC §1) rotates dimension pair i < hd/2 at position p by a_i = p·f_i, f_i = θ^(−2i/hd).
// Angles are computed in double and only their cos and sin rounded to float: a float frequency
// loses ~p·2⁻²⁴ radians, visible at long positions. Immutable once built.
struct RopeTable {
  float theta;
  int hd;
  int64_t positions;
  std::vector<double> freq;   // [hd/2] f_i
  std::vector<float> angles;  // [positions, hd]: position p's hd/2 cosines, then its hd/2 sines
  const float* at(int64_t pos) const { return angles.data() + pos * hd; }
};

// cs[i] = (float)cos(pos·f_i), sn[i] = (float)sin(pos·f_i) for i < hd/2: a table row's values for
// any position, table or not.
void rope_angles(float* cs, float* sn, int64_t pos, const RopeTable& t);

// Tables cover at most this many positions; rope_apply computes later positions' angles row by
// row (rope_angles), as each decode step meets them.
inline constexpr int64_t kRopeTableMaxPositions = 1 << 15;
// At most this many (θ, hd) pairs keep a table (the least recently built is dropped).
inline constexpr int kRopeTables = 4;

// The table of (theta, hd) covering at least min(pos_end, kRopeTableMaxPositions) positions,
// built or grown (to a power of two, at least 256 positions) on first need and shared by all
// threads: safe to call concurrently. A thread keeps the last table it got, so a call that table
// covers takes no lock. Memory: the kRopeTables cached tables plus one dropped table per thread
// at most, each at most kRopeTableMaxPositions·hd floats (8 MiB at hd 64).
std::shared_ptr<const RopeTable> rope_table(float theta, int hd, int64_t pos_end);

}  // namespace mohge
