// defines: ShardWriter, TokenShard, shard_dtype_for_vocab, kShardMagic, kShardVersion
// Binary token shard (train.bin / val.bin), all integers little-endian:
//   offset  size  field
//        0     8  magic "MOHGETOK"
//        8     4  u32 version = 1
//       12     4  u32 token dtype = bytes per token: 2 (uint16, used when vocab_size <= 65536) or 4
//       16     8  u64 token count N
//       24     4  u32 vocab_size (every token is < vocab_size)
//       28    36  reserved, zero
//       64 N*dtype tokens
// The file size must be exactly 64 + N*dtype, so truncation is detected. See docs/DATA_FORMAT.md.
// Documents are concatenated, each followed by the tokenizer's EOS id.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace mohge {

inline constexpr char kShardMagic[8] = {'M', 'O', 'H', 'G', 'E', 'T', 'O', 'K'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 64;

// 2 when every id fits in uint16, else 4.
int shard_dtype_for_vocab(int64_t vocab_size);

// Streams tokens into `path.tmp`; finish() writes the header and renames to `path`, so a crash
// never leaves a file that looks complete. Destroying an unfinished writer deletes the tmp file.
class ShardWriter {
 public:
  ShardWriter(const std::string& path, int64_t vocab_size);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void append(const int32_t* tokens, size_t n);  // throws if a token is outside [0, vocab_size)
  void append(const std::vector<int32_t>& tokens) { append(tokens.data(), tokens.size()); }
  void finish();

  uint64_t count() const { return count_; }
  int dtype_bytes() const { return dtype_; }
  const std::string& path() const { return path_; }

 private:
  void abandon();
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  int64_t vocab_;
  int dtype_;
  uint64_t count_ = 0;
  std::vector<unsigned char> buf_;
};

// A validated, memory-mapped, read-only shard. Opening checks magic, version, dtype, reserved
// bytes, exact file size and that every token is < vocab_size; any problem throws mohge::Error
// naming the file.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& o) noexcept;
  TokenShard& operator=(TokenShard&& o) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  uint64_t size() const { return count_; }  // number of tokens
  int64_t vocab_size() const { return vocab_; }
  int dtype_bytes() const { return dtype_; }
  const std::string& path() const { return path_; }

  int32_t operator[](uint64_t i) const {
    return dtype_ == 2 ? reinterpret_cast<const uint16_t*>(tokens_)[i]
                       : static_cast<int32_t>(reinterpret_cast<const uint32_t*>(tokens_)[i]);
  }
  // Copies tokens [start, start+n) as int32; throws if the range is out of bounds.
  void read(uint64_t start, uint64_t n, int32_t* out) const;

 private:
  void release();
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;
  uint64_t count_ = 0;
  int64_t vocab_ = 0;
  int dtype_ = 0;
};

}  // namespace mohge
