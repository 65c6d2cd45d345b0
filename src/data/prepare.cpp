// defines: data_prepare, is_val_document
#include "data/prepare.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "data/prepared_meta.h"
#include "core/fileio.h"
#include "data/documents.h"
#include "data/shards.h"

namespace mohge {

namespace {

constexpr size_t kBatchDocs = 256;  // documents encoded in parallel per step

}  // namespace

bool is_val_document(uint64_t seed, uint64_t doc_index, double val_fraction) {
  uint64_t h = splitmix64(seed ^ splitmix64(doc_index));
  double u = static_cast<double>(h >> 11) * 0x1.0p-53;  // uniform in [0, 1)
  return u < val_fraction;
}

static PrepareStats data_prepare_impl(const std::vector<std::string>& text_files,
                                      const Tokenizer& tok, const std::string& out_dir,
                                      double val_fraction, uint64_t seed, bool verbose,
                                      InvalidUtf8 invalid_utf8) {
  auto t0 = std::chrono::steady_clock::now();
  MOHGE_CHECK(!text_files.empty(), "data prepare: no input text files given");
  MOHGE_CHECK(val_fraction >= 0.0 && val_fraction < 1.0,
              "data prepare: val fraction {} must be in [0, 1)", val_fraction);
  for (const auto& f : text_files) {  // fail before writing anything
    std::error_code ec;
    MOHGE_CHECK(std::filesystem::exists(f, ec), "data prepare: input file '{}' not found", f);
    MOHGE_CHECK(std::filesystem::is_regular_file(f, ec), "data prepare: input '{}' is not a file",
                f);
  }
  const int eos = tok.eos_id();
  MOHGE_CHECK(eos >= 0, "data prepare: tokenizer '{}' has no EOS id, needed between documents",
              tok.source());
  std::filesystem::create_directories(out_dir);
  namespace fs = std::filesystem;
  const std::string train_path = (fs::path(out_dir) / "train.bin").string();
  const std::string val_path = (fs::path(out_dir) / "val.bin").string();

  PrepareStats st;
  ShardWriter train(train_path, tok.vocab_size());
  ShardWriter val(val_path, tok.vocab_size());

  // A split is decided per document as soon as the next one arrives; the latest document is held
  // back so that, at the end, it can fill a split that would otherwise be empty.
  std::vector<int32_t> pending;
  bool have_pending = false, pending_val = false;
  auto emit = [&](std::vector<int32_t>& toks, bool to_val) {
    (to_val ? val : train).append(toks);
    (to_val ? st.val_documents : st.train_documents)++;
    (to_val ? st.val_tokens : st.train_tokens) += toks.size();
  };

  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> enc;
  auto encode_batch = [&] {
    const int64_t n = static_cast<int64_t>(docs.size());
    enc.assign(docs.size(), {});
    std::string err;
    // Encoding dominates; documents vary in length, so hand them out dynamically. Output order
    // is fixed by the index, not by which thread finishes first.
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
      try {
        enc[i] = tok.encode(docs[i]);
        enc[i].push_back(eos);
      } catch (const std::exception& e) {
#pragma omp critical
        if (err.empty()) err = e.what();
      }
    }
    MOHGE_CHECK(err.empty(), "data prepare: document {}: {}", st.documents, err);
    for (int64_t i = 0; i < n; i++) {
      if (have_pending) emit(pending, pending_val);
      pending = std::move(enc[i]);
      have_pending = true;
      pending_val = is_val_document(seed, st.documents, val_fraction);
      st.documents++;
    }
    docs.clear();
  };

  std::string doc;
  for (const auto& file : text_files) {
    DocumentReader reader(file, invalid_utf8);
    uint64_t file_docs = 0;
    while (reader.next(doc)) {
      st.text_bytes += doc.size();
      docs.push_back(std::move(doc));
      file_docs++;
      if (docs.size() == kBatchDocs) encode_batch();
    }
    encode_batch();
    if (verbose)
      fmt::print("  {}: {} documents, {:.1f} MB\n", file, file_docs, reader.bytes_read() / 1e6);
  }
  MOHGE_CHECK(st.documents > 0, "data prepare: no documents in the input ({}): files are empty or "
              "hold only blank lines", fmt::format("{}", fmt::join(text_files, ", ")));
  if (st.documents >= 2) {
    if (val_fraction > 0 && st.val_documents == 0) pending_val = true;
    else if (st.train_documents == 0) pending_val = false;
  }
  emit(pending, pending_val);
  MOHGE_CHECK(st.train_tokens + st.val_tokens > 0, "data prepare: input produced no tokens");
  train.finish();
  val.finish();

  // The tokenizer travels with the data, so training can check it matches.
  const std::string proto = tok.serialized();
  write_file_atomic((fs::path(out_dir) / "tokenizer.model").string(), proto);
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& f : text_files) sources.push_back(fs::absolute(f).string());
  nlohmann::json meta = {
      {"format", "mohge-token-shards"},
      {"version", kShardVersion},
      {"vocab_size", tok.vocab_size()},
      {"dtype_bytes", shard_dtype_for_vocab(tok.vocab_size())},
      {"tokenizer",
       {{"file", "tokenizer.model"},
        {"source", tok.source()},
        {"vocab_size", tok.vocab_size()},
        {"bos_id", tok.bos_id()},
        {"eos_id", tok.eos_id()},
        {"fnv1a64", tokenizer_checksum(tok)}}},
      {"sources", sources},
      {"seed", seed},
      {"val_fraction", val_fraction},
      {"invalid_utf8", invalid_utf8 == InvalidUtf8::replace ? "replace" : "refuse"},
      {"documents", st.documents},
      {"text_bytes", st.text_bytes},
      {"train", {{"file", "train.bin"}, {"documents", st.train_documents}, {"tokens", st.train_tokens}}},
      {"val", {{"file", "val.bin"}, {"documents", st.val_documents}, {"tokens", st.val_tokens}}},
  };
  write_file_atomic((fs::path(out_dir) / "meta.json").string(), meta.dump(2) + "\n");
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

PrepareStats data_prepare(const std::vector<std::string>& text_files, const Tokenizer& tok,
                          const std::string& out_dir, double val_fraction, uint64_t seed,
                          bool verbose, InvalidUtf8 invalid_utf8) {
  try {
    return data_prepare_impl(text_files, tok, out_dir, val_fraction, seed, verbose, invalid_utf8);
  } catch (const std::filesystem::filesystem_error& e) {
    fail("data prepare into '{}': {}", out_dir, e.what());
  }
}

}  // namespace mohge
