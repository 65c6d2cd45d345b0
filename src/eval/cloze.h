// defines: ClozeOptions, ClozeSentence, ClozeDocument, ClozeItem, cloze_sentences,
//          held_out_documents, build_cloze, build_cloze_from_corpus — the built-in cloze task
// Multiple-choice items made from held-out text: "which sentence comes next?"
//  - Documents: the corpus files in the document format (documents.h), numbered across files in
//    order exactly as `data prepare` numbers them; only the documents `data prepare` puts in
//    val.bin are used (is_val_document(split_seed, index, val_fraction) plus data_prepare's rule
//    for a split that would be empty), so a model trained on train.bin never saw them — given the
//    same seed and fraction as data prepare (defaults 1337 and 0.05).
//  - Sentences: each line of a document is split with split_sentences (data/corpus.h).
//  - An item: a target sentence at position p >= context_sentences of a document; the context is
//    the context_sentences sentences before it; the choices are the target and `distractors`
//    other sentences of the SAME document, drawn from positions outside [p - context_sentences, p]
//    with a text different from the target's and from each other's. Targets and distractors have
//    at least min_words words and at most max_bytes bytes. Choices are in random order.
//  - Text: context sentences are joined as in the document ("\n" where a sentence starts a line,
//    else " "); every choice is that same separator before the target's position + the sentence.
//  - Sampling (deterministic given seed): repeatedly a document uniformly among those with
//    unused candidate positions, then a position uniformly within it, so long documents do not
//    dominate; no position is used twice. Fewer than n items when the held-out text runs out.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/utf8.h"
#include "eval/tasks.h"

namespace mohge {

struct ClozeOptions {
  int n = 500;
  uint64_t seed = 1234;  // item sampling
  int context_sentences = 3;
  int distractors = 3;
  int min_words = 4;      // targets and distractors: at least this many words
  int max_bytes = 400;    // ... and at most this many bytes
  uint64_t split_seed = 1337;  // data prepare's --seed
  double val_fraction = 0.05;  // data prepare's --val-fraction
  InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse;  // data prepare's --replace-invalid-utf8
};

struct ClozeSentence {
  std::string text;
  bool line_start = false;  // first sentence of a line of the document
};

struct ClozeDocument {
  uint64_t index = 0;  // document number across the corpus files (data prepare's numbering)
  std::vector<ClozeSentence> sentences;
};

struct ClozeItem {
  McItem mc;             // context, choices, label
  uint64_t doc_index = 0;
  int target = 0;                 // sentence index of the true continuation
  std::vector<int> choice_sentences;  // sentence index of each choice (choice_sentences[label] == target)
  nlohmann::json extra() const;   // {"doc", "sentence", "choice_sentences"} for write_mc_jsonl
};

// Lines of a document split into sentences.
std::vector<ClozeSentence> cloze_sentences(const std::string& doc);

// The documents data prepare would put in val.bin, with their sentences. Throws on a missing file
// or when there are no held-out documents.
std::vector<ClozeDocument> held_out_documents(const std::vector<std::string>& files, uint64_t split_seed,
                                              double val_fraction,
                                              InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse);

// Items from the given documents (need not be held out: the caller chooses). Throws when no item
// can be built at all.
std::vector<ClozeItem> build_cloze(const std::vector<ClozeDocument>& docs, const ClozeOptions& opt);
std::vector<ClozeItem> build_cloze_from_corpus(const std::vector<std::string>& files, const ClozeOptions& opt);

}  // namespace mohge
