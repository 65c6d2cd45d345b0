// defines: DataLoader
#include "data/dataloader.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "core/hash.h"

namespace mohge {

namespace {

// Uniform in [0, n) by multiply-high: identical on every platform and standard library, unlike
// std::uniform_int_distribution. The bias (n / 2^64) is negligible.
uint64_t bounded(uint64_t r, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const TokenShard> shard, int B, int T, uint64_t seed,
                       int rank, int world)
    : shard_(std::move(shard)), B_(B), T_(T), rank_(rank), world_(world), seed_(seed) {
  MOHGE_CHECK(shard_ != nullptr, "data loader: no shard");
  MOHGE_CHECK(B > 0 && T > 0, "data loader: batch size {} and sequence length {} must be positive",
              B, T);
  MOHGE_CHECK(world >= 1 && rank >= 0 && rank < world, "data loader: bad rank {} of world {}", rank,
              world);
  MOHGE_CHECK(shard_->size() >= static_cast<uint64_t>(T) + 1,
              "token shard '{}' has {} tokens, fewer than sequence length + 1 = {} needed for one "
              "window",
              shard_->path(), shard_->size(), static_cast<uint64_t>(T) + 1);
  row_.resize(static_cast<size_t>(T) + 1);
}

DataLoader::DataLoader(const std::string& shard_path, int B, int T, uint64_t seed, int rank,
                       int world)
    : DataLoader(std::make_shared<const TokenShard>(shard_path), B, T, seed, rank, world) {}

void DataLoader::fill_row(uint64_t start, int32_t* in, int32_t* tg) {
  shard_->read(start, static_cast<uint64_t>(T_) + 1, row_.data());
  for (int t = 0; t < T_; t++) {
    in[t] = row_[t];
    tg[t] = row_[t + 1];
  }
}

void DataLoader::next_batch(int32_t* inputs, int32_t* targets) {
  // A fresh generator per batch keeps the state two integers; seeding costs ~1 us.
  uint64_t key = splitmix64(splitmix64(seed_) ^ splitmix64(batches_ + 1));
  std::mt19937_64 rng(key);
  const uint64_t starts = shard_->size() - static_cast<uint64_t>(T_);  // windows of T+1 tokens
  rng.discard(static_cast<unsigned long long>(rank_) * B_);  // the earlier ranks' windows
  for (int b = 0; b < B_; b++)
    fill_row(bounded(rng(), starts), inputs + static_cast<size_t>(b) * T_,
             targets + static_cast<size_t>(b) * T_);
  batches_++;
}

// this rank's windows of global batch b: [first, first + n)
std::pair<uint64_t, uint64_t> DataLoader::eval_rows(uint64_t b) const {
  const uint64_t first = (b * world_ + rank_) * B_, windows = eval_windows();
  return {first, first < windows ? std::min<uint64_t>(B_, windows - first) : 0};
}

bool DataLoader::next_eval_batch(int32_t* inputs, int32_t* targets, int* rows) {
  const uint64_t global = static_cast<uint64_t>(B_) * world_;
  const uint64_t start = eval_batch_ * global, windows = eval_windows();
  const bool exists = start < windows && (rows != nullptr || start + global <= windows);
  const auto [first, n] = exists ? eval_rows(eval_batch_) : std::pair<uint64_t, uint64_t>{0, 0};
  if (rows) *rows = static_cast<int>(n);
  if (!exists) return false;
  for (uint64_t i = 0; i < n; i++) fill_row((first + i) * T_, inputs + i * T_, targets + i * T_);
  eval_batch_++;
  return true;
}

uint64_t DataLoader::eval_batches(bool include_partial) const {
  const uint64_t windows = eval_windows(), global = static_cast<uint64_t>(B_) * world_;
  return windows / global + (include_partial && windows % global ? 1 : 0);
}

uint64_t DataLoader::eval_tokens_covered(bool include_partial) const {
  uint64_t tokens = 0;
  for (uint64_t b = 0, n = eval_batches(include_partial); b < n; b++) tokens += eval_rows(b).second * T_;
  return tokens;
}

}  // namespace mohge
