// defines: DataLoader, LoaderState
// Batches of B rows x T tokens from a TokenShard. targets[b][t] = inputs[b][t+1] in the shard,
// i.e. each row is a window of T+1 consecutive tokens.
//  - Training: random windows. Global batch k (B·world windows) uses an mt19937_64 seeded from
//    (seed, k), so the whole RNG state is {seed, k}: state()/set_state() let a resumed run draw
//    exactly the batches it would have drawn. Rank r of a data-parallel job takes windows
//    [r·B, (r+1)·B) of it: the data order does not depend on how many ranks share the batch (a
//    rank of P with B rows reads what rows r·B.. of one process with B·P rows read).
//  - Evaluation: non-overlapping windows (stride T) covering the shard once, in order. Window w
//    starts at token w*T; there are (N-1)/T of them. With world > 1 the ranks split each global
//    batch of B·world windows like training batches: rank r takes its windows [r·B, (r+1)·B), so
//    every rank makes the same number of calls (over expert-parallel ranks each forward is a
//    collective) and together they score the windows one process with B·world rows scores.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/shards.h"

namespace mohge {

struct LoaderState {
  uint64_t seed = 0;
  uint64_t batches = 0;  // random batches drawn so far
};

class DataLoader {
 public:
  // Throws if the shard holds fewer than T+1 tokens, or B/T/rank/world are invalid.
  DataLoader(std::shared_ptr<const TokenShard> shard, int B, int T, uint64_t seed, int rank = 0,
             int world = 1);
  DataLoader(const std::string& shard_path, int B, int T, uint64_t seed, int rank = 0,
             int world = 1);

  // Training: fills inputs[B*T] and targets[B*T] with random windows.
  void next_batch(int32_t* inputs, int32_t* targets);
  LoaderState state() const { return {seed_, batches_}; }
  void set_state(const LoaderState& s) {
    seed_ = s.seed;
    batches_ = s.batches;
  }

  // Evaluation. reset() rewinds to the first window. next_eval_batch returns false at the end.
  // A final global batch with fewer than B·world windows is dropped when `rows` is null; otherwise
  // it is returned with this rank's *rows < B windows (rows past *rows are left untouched) — 0 on a
  // rank past its last window, while the batch still has windows for lower ranks — and *rows is
  // set on every call.
  void reset() { eval_batch_ = 0; }
  bool next_eval_batch(int32_t* inputs, int32_t* targets, int* rows = nullptr);
  uint64_t eval_windows() const { return (shard_->size() - 1) / T_; }
  // Global batches one pass covers (the calls that return true, the same on every rank) / target
  // tokens it covers on this rank (all ranks when world == 1).
  uint64_t eval_batches(bool include_partial) const;
  uint64_t eval_tokens_covered(bool include_partial) const;

  int B() const { return B_; }
  int T() const { return T_; }
  const TokenShard& shard() const { return *shard_; }

 private:
  void fill_row(uint64_t start, int32_t* in, int32_t* tg);
  std::pair<uint64_t, uint64_t> eval_rows(uint64_t batch) const;  // this rank's first window, count
  std::shared_ptr<const TokenShard> shard_;
  int B_, T_, rank_, world_;
  uint64_t seed_, batches_ = 0, eval_batch_ = 0;
  std::vector<int32_t> row_;  // T+1 tokens
};

}  // namespace mohge
