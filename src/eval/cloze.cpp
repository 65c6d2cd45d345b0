// defines: cloze_sentences, held_out_documents, build_cloze, build_cloze_from_corpus
#include "eval/cloze.h"

#include <random>
#include <unordered_set>

#include "core/error.h"
#include "data/corpus.h"
#include "data/documents.h"
#include "data/prepare.h"

namespace mohge {

namespace {

int count_words(const std::string& s) {
  int n = 0;
  bool in_word = false;
  for (char c : s) {
    bool space = c == ' ' || c == '\t' || c == '\n';
    if (!space && !in_word) n++;
    in_word = !space;
  }
  return n;
}

// Uniform in [0, n): the raw mt19937_64 stream (fully specified by the standard) reduced by
// modulo, so items are the same with every standard library (std::uniform_int_distribution and
// std::shuffle are implementation-defined). The modulo bias is < n / 2^64.
uint64_t draw(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

}  // namespace

nlohmann::json ClozeItem::extra() const {
  return {{"doc", doc_index}, {"sentence", target}, {"choice_sentences", choice_sentences}};
}

std::vector<ClozeSentence> cloze_sentences(const std::string& doc) {
  std::vector<ClozeSentence> out;
  size_t pos = 0;
  while (pos <= doc.size()) {
    size_t eol = doc.find('\n', pos);
    if (eol == std::string::npos) eol = doc.size();
    bool first = true;
    for (auto& s : split_sentences(std::string_view(doc).substr(pos, eol - pos))) {
      out.push_back({std::move(s), first});
      first = false;
    }
    pos = eol + 1;
  }
  return out;
}

std::vector<ClozeDocument> held_out_documents(const std::vector<std::string>& files, uint64_t split_seed,
                                              double val_fraction, InvalidUtf8 invalid_utf8) {
  MOHGE_CHECK(!files.empty(), "cloze: no corpus files given");
  MOHGE_CHECK(val_fraction > 0.0 && val_fraction < 1.0, "cloze: val fraction {} must be in (0, 1)", val_fraction);
  std::vector<ClozeDocument> out;
  // Mirrors data_prepare: the split of the last document is decided at the end, where it fills a
  // split that would otherwise be empty.
  uint64_t index = 0, n_val = 0, n_train = 0;
  std::string doc, last;
  bool have_last = false, last_val = false;
  auto emit_last = [&] {
    if (last_val) {
      out.push_back({index - 1, cloze_sentences(last)});
      n_val++;
    } else {
      n_train++;
    }
  };
  for (const auto& f : files) {
    DocumentReader reader(f, invalid_utf8);
    while (reader.next(doc)) {
      if (have_last) emit_last();
      std::swap(last, doc);
      have_last = true;
      last_val = is_val_document(split_seed, index, val_fraction);
      index++;
    }
  }
  MOHGE_CHECK(have_last, "cloze: the corpus ({} file(s), first '{}') holds no documents", files.size(), files[0]);
  if (index >= 2) {
    if (n_val == 0) last_val = true;
    else if (n_train == 0) last_val = false;
  }
  emit_last();
  MOHGE_CHECK(!out.empty(), "cloze: no held-out documents among the {} of '{}' (split seed {}, val fraction {})",
              index, files[0], split_seed, val_fraction);
  return out;
}

std::vector<ClozeItem> build_cloze(const std::vector<ClozeDocument>& docs, const ClozeOptions& opt) {
  MOHGE_CHECK(opt.n >= 1, "cloze: number of items {} must be >= 1", opt.n);
  MOHGE_CHECK(opt.context_sentences >= 0, "cloze: context sentences {} must be >= 0", opt.context_sentences);
  MOHGE_CHECK(opt.distractors >= 1, "cloze: distractors {} must be >= 1", opt.distractors);
  const int k = opt.context_sentences, D = opt.distractors;

  std::vector<std::vector<char>> usable(docs.size());
  std::vector<std::vector<int>> cand(docs.size());  // unused target positions per document
  std::vector<size_t> active;                       // documents with candidates left
  for (size_t d = 0; d < docs.size(); d++) {
    const auto& ss = docs[d].sentences;
    usable[d].resize(ss.size());
    for (size_t s = 0; s < ss.size(); s++)
      usable[d][s] = count_words(ss[s].text) >= opt.min_words && (int64_t)ss[s].text.size() <= opt.max_bytes;
    for (int p = k; p < (int)ss.size(); p++)
      if (usable[d][p]) cand[d].push_back(p);
    if ((int)cand[d].size() > 0 && (int)ss.size() >= k + 1 + D) active.push_back(d);
  }

  std::mt19937_64 rng(opt.seed);
  std::vector<ClozeItem> items;
  while ((int)items.size() < opt.n && !active.empty()) {
    const size_t ai = draw(rng, active.size());
    const size_t d = active[ai];
    auto& c = cand[d];
    const size_t ci = draw(rng, c.size());
    const int p = c[ci];
    c[ci] = c.back();
    c.pop_back();
    if (c.empty()) {
      active[ai] = active.back();
      active.pop_back();
    }
    const auto& ss = docs[d].sentences;
    // distractor pool: usable sentences outside the context window and the target, distinct texts
    std::unordered_set<std::string> seen = {ss[p].text};
    std::vector<int> pool;
    for (int j = 0; j < (int)ss.size(); j++) {
      if (j >= p - k && j <= p) continue;
      if (usable[d][j] && seen.insert(ss[j].text).second) pool.push_back(j);
    }
    if ((int)pool.size() < D) continue;
    std::vector<int> chosen = {p};
    for (int i = 0; i < D; i++) {  // partial Fisher-Yates
      size_t r = i + draw(rng, pool.size() - i);
      std::swap(pool[i], pool[r]);
      chosen.push_back(pool[i]);
    }
    for (size_t i = chosen.size() - 1; i > 0; i--) std::swap(chosen[i], chosen[draw(rng, i + 1)]);

    ClozeItem it;
    it.doc_index = docs[d].index;
    it.target = p;
    it.choice_sentences = chosen;
    for (int j = p - k; j < p; j++) {
      if (j > p - k) it.mc.context += ss[j].line_start ? "\n" : " ";
      it.mc.context += ss[j].text;
    }
    const std::string sep = k == 0 ? "" : (ss[p].line_start ? "\n" : " ");
    for (size_t i = 0; i < chosen.size(); i++) {
      it.mc.choices.push_back(sep + ss[chosen[i]].text);
      if (chosen[i] == p) it.mc.label = (int)i;
    }
    it.mc.where = fmt::format("cloze item {} (document {}, sentence {})", items.size(), it.doc_index, p);
    items.push_back(std::move(it));
  }
  MOHGE_CHECK(!items.empty(),
              "cloze: no item can be built from {} document(s): an item needs a document with {} context "
              "sentences before a target and {} other distinct sentences of >= {} words",
              docs.size(), k, D, opt.min_words);
  return items;
}

std::vector<ClozeItem> build_cloze_from_corpus(const std::vector<std::string>& files, const ClozeOptions& opt) {
  return build_cloze(held_out_documents(files, opt.split_seed, opt.val_fraction, opt.invalid_utf8), opt);
}

}  // namespace mohge
