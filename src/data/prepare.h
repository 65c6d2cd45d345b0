// defines: data_prepare, PrepareStats, is_val_document
// Text files (document format, see documents.h) -> out_dir/{train.bin, val.bin, meta.json,
// tokenizer.model}. Streams documents, so corpora larger than memory work; each document is encoded
// and followed by the tokenizer's EOS id; whole documents go to train or val.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/utf8.h"
#include "data/tokenizer.h"

namespace mohge {

struct PrepareStats {
  uint64_t documents = 0, train_documents = 0, val_documents = 0;
  uint64_t train_tokens = 0, val_tokens = 0;  // EOS included
  uint64_t text_bytes = 0;                    // document bytes read (separators excluded)
  double seconds = 0;
};

// Deterministic split: true when hash(seed, doc_index) falls below val_fraction.
bool is_val_document(uint64_t seed, uint64_t doc_index, double val_fraction);

// Assigns document i to val iff is_val_document(seed, i, val_fraction), with one exception that
// keeps both splits usable: when there are >= 2 documents and one split would end up empty, the
// last document goes there instead (val only if val_fraction > 0). Documents are numbered across
// all files in order. val_fraction in [0, 1). Throws on a missing file, no documents, or a
// tokenizer without an EOS id, and on invalid UTF-8 unless invalid_utf8 == replace (recorded in
// meta.json). Writes the shards and meta.json atomically.
PrepareStats data_prepare(const std::vector<std::string>& text_files, const Tokenizer& tok,
                          const std::string& out_dir, double val_fraction = 0.05,
                          uint64_t seed = 1337, bool verbose = false,
                          InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse);

}  // namespace mohge
