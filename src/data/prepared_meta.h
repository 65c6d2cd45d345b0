// defines: PreparedMeta, prepared_meta_parse, prepared_meta_read, tokenizer_checksum,
//          check_tokenizer_matches_shard, check_tokenizer_fits_model — the meta.json that `data
//          prepare` writes beside its shards (docs/DATA_FORMAT.md §4) and the cross-checks it enables
// A tokenizer that is not the one the shards were made with trains and evaluates garbage without
// any error, so wherever a tokenizer meets shards or a model the match is checked here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/utf8.h"
#include "data/shards.h"
#include "data/tokenizer.h"

namespace mohge {

struct PreparedMeta {
  std::string path;  // the meta.json read
  int64_t vocab_size = 0;
  std::string tokenizer_fnv1a64;  // 16 lowercase hex digits: tokenizer_checksum of the tokenizer used
  std::string tokenizer_source;
  std::vector<std::string> sources;  // the text files, absolute
  uint64_t seed = 0;
  double val_fraction = 0;
  InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse;  // "replace" when prepared with --replace-invalid-utf8
};

// Validates the types and ranges of the keys above (others are ignored); errors name `path`.
PreparedMeta prepared_meta_parse(const std::string& text, const std::string& path);
PreparedMeta prepared_meta_read(const std::string& path);

// FNV-1a-64 of the tokenizer's model proto, as 16 hex digits (what meta.json records).
std::string tokenizer_checksum(const Tokenizer& tok);

// The shard was made with this tokenizer: equal vocabulary sizes, and, when meta.json lies beside
// the shard, equal checksums. The error names both (`tok_label`: where the tokenizer came from).
void check_tokenizer_matches_shard(const Tokenizer& tok, const std::string& tok_label, const TokenShard& shard);
// A checkpoint's tokenizer has at most the model's vocab_size ids (a padded vocabulary is allowed).
void check_tokenizer_fits_model(const Tokenizer& tok, const std::string& tok_label, int64_t model_vocab);

}  // namespace mohge
