// defines: prepared_meta_parse, prepared_meta_read, tokenizer_checksum, check_tokenizer_matches_shard,
//          check_tokenizer_fits_model
#include "data/prepared_meta.h"

#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fileio.h"
#include "core/hash.h"

namespace fs = std::filesystem;

namespace mohge {

PreparedMeta prepared_meta_parse(const std::string& text, const std::string& path) {
  auto bad = [&](const std::string& why) { fail("{}: corrupt meta.json ({})", path, why); };
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) bad("not valid JSON");
  if (!j.is_object()) bad("not a JSON object");
  auto field = [&](const nlohmann::json& o, const char* key, bool (nlohmann::json::*is)() const noexcept,
                   const char* type) -> const nlohmann::json& {
    if (!o.contains(key) || !(o[key].*is)()) bad(fmt::format("\"{}\" missing or not {}", key, type));
    return o[key];
  };
  PreparedMeta m;
  m.path = path;
  const auto& vocab = field(j, "vocab_size", &nlohmann::json::is_number_unsigned, "a non-negative integer");
  if (vocab.get<uint64_t>() < 1 || vocab.get<uint64_t>() > INT32_MAX) bad("\"vocab_size\" out of [1, 2^31)");
  m.vocab_size = (int64_t)vocab.get<uint64_t>();
  const auto& tok = field(j, "tokenizer", &nlohmann::json::is_object, "an object");
  m.tokenizer_fnv1a64 = field(tok, "fnv1a64", &nlohmann::json::is_string, "a string").get<std::string>();
  if (m.tokenizer_fnv1a64.size() != 16 || m.tokenizer_fnv1a64.find_first_not_of("0123456789abcdef") != std::string::npos)
    bad("\"tokenizer.fnv1a64\" is not 16 lowercase hex digits");
  if (tok.contains("source") && tok["source"].is_string()) m.tokenizer_source = tok["source"].get<std::string>();
  for (const auto& s : field(j, "sources", &nlohmann::json::is_array, "an array")) {
    if (!s.is_string()) bad("\"sources\" holds a non-string");
    m.sources.push_back(s.get<std::string>());
  }
  m.seed = field(j, "seed", &nlohmann::json::is_number_unsigned, "a non-negative integer").get<uint64_t>();
  m.val_fraction = field(j, "val_fraction", &nlohmann::json::is_number, "a number").get<double>();
  if (!(m.val_fraction >= 0 && m.val_fraction < 1)) bad("\"val_fraction\" outside [0, 1)");
  if (j.contains("invalid_utf8")) {
    const auto& u = j["invalid_utf8"];
    if (!u.is_string() || (u != "refuse" && u != "replace")) bad("\"invalid_utf8\" is not \"refuse\" or \"replace\"");
    m.invalid_utf8 = u == "replace" ? InvalidUtf8::replace : InvalidUtf8::refuse;
  }
  return m;
}

PreparedMeta prepared_meta_read(const std::string& path) { return prepared_meta_parse(read_file_text(path), path); }

std::string tokenizer_checksum(const Tokenizer& tok) { return fmt::format("{:016x}", fnv1a64(tok.serialized())); }

void check_tokenizer_matches_shard(const Tokenizer& tok, const std::string& tok_label, const TokenShard& shard) {
  MOHGE_CHECK(shard.vocab_size() == tok.vocab_size(),
              "tokenizer {} has {} ids but {} was tokenized with a {}-id vocabulary: a different tokenizer",
              tok_label, tok.vocab_size(), shard.path(), shard.vocab_size());
  const fs::path meta = fs::path(shard.path()).parent_path() / "meta.json";
  std::error_code ec;
  if (!fs::is_regular_file(meta, ec)) return;  // shards made by other tools: the vocabulary check only
  const PreparedMeta m = prepared_meta_read(meta.string());
  const std::string sum = tokenizer_checksum(tok);
  MOHGE_CHECK(sum == m.tokenizer_fnv1a64,
              "tokenizer {} (fnv1a64 {}) is not the tokenizer {} was prepared with ({}, fnv1a64 {} in {})", tok_label,
              sum, shard.path(), m.tokenizer_source, m.tokenizer_fnv1a64, meta.string());
}

void check_tokenizer_fits_model(const Tokenizer& tok, const std::string& tok_label, int64_t model_vocab) {
  MOHGE_CHECK(tok.vocab_size() <= model_vocab, "tokenizer {} has {} ids, more than the model's vocab_size {}",
              tok_label, tok.vocab_size(), model_vocab);
}

}  // namespace mohge
