// defines: ShardWriter, TokenShard, shard_dtype_for_vocab
#include "data/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

// The on-disk format is little-endian and we memcpy integers straight into it.
static_assert(std::endian::native == std::endian::little, "token shards assume a little-endian host");

namespace mohge {

int shard_dtype_for_vocab(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

namespace {

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t dtype;
  uint64_t count;
  uint32_t vocab_size;
  unsigned char reserved[36];
};
static_assert(sizeof(Header) == kShardHeaderBytes);

Header make_header(int dtype, uint64_t count, int64_t vocab) {
  Header h{};
  std::memcpy(h.magic, kShardMagic, 8);
  h.version = kShardVersion;
  h.dtype = static_cast<uint32_t>(dtype);
  h.count = count;
  h.vocab_size = static_cast<uint32_t>(vocab);
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

ShardWriter::ShardWriter(const std::string& path, int64_t vocab_size)
    : path_(path), tmp_(path + ".tmp"), vocab_(vocab_size), dtype_(shard_dtype_for_vocab(vocab_size)) {
  MOHGE_CHECK(vocab_size > 0 && vocab_size <= INT32_MAX, "shard '{}': invalid vocab size {}", path,
              vocab_size);
  f_ = std::fopen(tmp_.c_str(), "wb");
  MOHGE_CHECK(f_ != nullptr, "cannot create shard '{}': {}", tmp_, std::strerror(errno));
  Header h = make_header(dtype_, 0, vocab_);  // placeholder; finish() writes the real count
  if (std::fwrite(&h, sizeof h, 1, f_) != 1) {
    abandon();
    fail("cannot write shard '{}' (disk full?)", tmp_);
  }
  buf_.reserve(1 << 20);
}

ShardWriter::~ShardWriter() {
  if (f_) abandon();
}

void ShardWriter::abandon() {
  if (f_) std::fclose(f_);
  f_ = nullptr;
  std::remove(tmp_.c_str());
}

void ShardWriter::append(const int32_t* tokens, size_t n) {
  MOHGE_CHECK(f_ != nullptr, "shard '{}': append after finish", path_);
  buf_.resize(n * dtype_);
  for (size_t i = 0; i < n; i++) {
    int32_t t = tokens[i];
    if (t < 0 || t >= vocab_) {
      uint64_t at = count_ + i;
      abandon();
      fail("shard '{}': token id {} at index {} is outside the vocab [0, {})", path_, t, at, vocab_);
    }
    if (dtype_ == 2) {
      uint16_t v = static_cast<uint16_t>(t);
      std::memcpy(&buf_[i * 2], &v, 2);
    } else {
      uint32_t v = static_cast<uint32_t>(t);
      std::memcpy(&buf_[i * 4], &v, 4);
    }
  }
  if (n && std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size()) {
    abandon();
    fail("cannot write shard '{}' (disk full?)", tmp_);
  }
  count_ += n;
}

void ShardWriter::finish() {
  MOHGE_CHECK(f_ != nullptr, "shard '{}': finish called twice", path_);
  Header h = make_header(dtype_, count_, vocab_);
  bool ok = std::fseek(f_, 0, SEEK_SET) == 0 && std::fwrite(&h, sizeof h, 1, f_) == 1 &&
            std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  if (!ok) {
    std::remove(tmp_.c_str());
    fail("cannot write shard '{}' (disk full?)", tmp_);
  }
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) {
    std::remove(tmp_.c_str());
    fail("cannot rename '{}' to '{}': {}", tmp_, path_, ec.message());
  }
}

// ---------------------------------------------------------------------------------------------

TokenShard::TokenShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  MOHGE_CHECK(fd >= 0, "cannot open token shard '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("token shard '{}' is not a regular file", path);
  }
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < kShardHeaderBytes) {
    ::close(fd);
    fail("token shard '{}' is truncated: {} bytes, smaller than the {}-byte header", path,
         file_bytes, kShardHeaderBytes);
  }
  map_ = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file alive
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail("cannot mmap token shard '{}': {}", path, std::strerror(errno));
  }
  map_bytes_ = file_bytes;

  // From here on errors must unmap: the destructor does not run for a throwing constructor.
  try {
    Header h;
    std::memcpy(&h, map_, sizeof h);
    MOHGE_CHECK(std::memcmp(h.magic, kShardMagic, 8) == 0,
                "'{}' is not a mohge token shard (bad magic, expected \"MOHGETOK\")", path);
    MOHGE_CHECK(h.version == kShardVersion,
                "token shard '{}' has unsupported version {} (this build reads version {})", path,
                h.version, kShardVersion);
    MOHGE_CHECK(h.dtype == 2 || h.dtype == 4,
                "token shard '{}' has invalid token dtype {} (expected 2 or 4 bytes)", path, h.dtype);
    MOHGE_CHECK(h.vocab_size > 0 && h.vocab_size <= INT32_MAX,
                "token shard '{}' has invalid vocab size {} in its header", path, h.vocab_size);
    for (unsigned char b : h.reserved)
      MOHGE_CHECK(b == 0, "token shard '{}' has non-zero reserved header bytes (corrupt?)", path);
    const uint64_t payload = file_bytes - kShardHeaderBytes;
    MOHGE_CHECK(h.count <= payload / h.dtype,
                "token shard '{}' is truncated: header says {} tokens ({} bytes) but the file has "
                "only {} bytes after the header",
                path, h.count, h.count * h.dtype, payload);  // product may wrap; message only
    MOHGE_CHECK(h.count * h.dtype == payload,
                "token shard '{}' has {} unexpected trailing bytes after its {} tokens (corrupt?)",
                path, payload - h.count * h.dtype, h.count);
    count_ = h.count;
    vocab_ = h.vocab_size;
    dtype_ = static_cast<int>(h.dtype);
    tokens_ = static_cast<const unsigned char*>(map_) + kShardHeaderBytes;

    // Validate every token now (a sequential scan, ~1 GB/s) so training never indexes an
    // embedding out of bounds. The cheap parallel max finds whether anything is wrong at all.
    // Compared as unsigned: a corrupt uint32 token >= 2^31 must not pass as a negative int32.
    auto raw = [&](uint64_t i) -> uint64_t {
      return dtype_ == 2 ? reinterpret_cast<const uint16_t*>(tokens_)[i]
                         : reinterpret_cast<const uint32_t*>(tokens_)[i];
    };
    const int64_t n = static_cast<int64_t>(count_);
    uint64_t vmax = 0;
#pragma omp parallel for reduction(max : vmax) schedule(static)
    for (int64_t i = 0; i < n; i++) {
      uint64_t v = raw(static_cast<uint64_t>(i));
      vmax = v > vmax ? v : vmax;
    }
    if (n > 0 && vmax >= static_cast<uint64_t>(vocab_)) {
      for (uint64_t i = 0; i < count_; i++)
        MOHGE_CHECK(raw(i) < static_cast<uint64_t>(vocab_),
                    "token shard '{}': token {} at index {} is >= vocab size {} (corrupt shard or "
                    "wrong tokenizer)",
                    path, raw(i), i, vocab_);
    }
  } catch (...) {
    release();
    throw;
  }
}

void TokenShard::release() {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
}

TokenShard::~TokenShard() { release(); }

TokenShard::TokenShard(TokenShard&& o) noexcept { *this = std::move(o); }

TokenShard& TokenShard::operator=(TokenShard&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    tokens_ = o.tokens_;
    count_ = o.count_;
    vocab_ = o.vocab_;
    dtype_ = o.dtype_;
    o.map_ = nullptr;
    o.map_bytes_ = 0;
    o.tokens_ = nullptr;
    o.count_ = 0;
  }
  return *this;
}

void TokenShard::read(uint64_t start, uint64_t n, int32_t* out) const {
  MOHGE_CHECK(start <= count_ && n <= count_ - start,
              "token shard '{}': read of [{}, {}) past its {} tokens", path_, start, start + n,
              count_);
  if (dtype_ == 2) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(tokens_) + start;
    for (uint64_t i = 0; i < n; i++) out[i] = p[i];
  } else {
    std::memcpy(out, tokens_ + start * 4, n * 4);
  }
}

}  // namespace mohge
