// defines: McItem, PairItem, load_mc_jsonl, load_pairs_jsonl, write_mc_jsonl — the eval task files
// Multiple choice (lm-evaluation-harness style), one JSON object per line:
//   {"context": "Question: ...\nAnswer:", "choices": [" yes", " no"], "label": 0}
// Minimal pairs (BLiMP style), one JSON object per line:
//   {"sentence_good": "...", "sentence_bad": "..."}
// Unknown keys are ignored; blank lines are skipped; any other problem is a mohge::Error naming
// file:line (file:line and byte offset for invalid UTF-8).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/utf8.h"

namespace mohge {

struct McItem {
  std::string context;
  std::vector<std::string> choices;
  int label = 0;
  std::string where;  // "file:line" (or another label) for error messages
};

struct PairItem {
  std::string good, bad;
  std::string where;
};

// label may be an integer or a string of digits ("2", as in Hugging Face HellaSwag). Lines must be
// UTF-8 (core/utf8.h) unless invalid_utf8 == replace.
std::vector<McItem> load_mc_jsonl(const std::string& path, InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse);
std::vector<PairItem> load_pairs_jsonl(const std::string& path, InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse);
// One object per item; extra[i] (when given) is merged into item i's object. Atomic write.
void write_mc_jsonl(const std::string& path, const std::vector<McItem>& items,
                    const std::vector<nlohmann::json>& extra = {});

}  // namespace mohge
