// defines: load_mc_jsonl, load_pairs_jsonl, write_mc_jsonl, mc_metrics, pairs_accuracy,
//          evaluate_mc, evaluate_pairs
#include "eval/tasks.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fileio.h"

namespace mohge {

namespace {

// Calls fn(object, "file:line") for every non-blank line of a JSONL file.
template <class Fn>
void for_each_jsonl(const std::string& path, Fn&& fn) {
  std::error_code ec;
  MOHGE_CHECK(std::filesystem::exists(path, ec), "eval data file '{}' not found", path);
  MOHGE_CHECK(!std::filesystem::is_directory(path, ec), "eval data '{}' is a directory, expected a .jsonl file", path);
  std::ifstream in(path, std::ios::binary);
  MOHGE_CHECK(in.is_open(), "cannot open eval data file '{}'", path);
  std::string line;
  uint64_t lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (lineno == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // UTF-8 BOM
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: malformed JSON: {}", where, e.what());
    }
    MOHGE_CHECK(j.is_object(), "{}: expected a JSON object, got {}", where, j.type_name());
    fn(j, where);
  }
  MOHGE_CHECK(!in.bad(), "read error in '{}'", path);
}

std::string get_string(const nlohmann::json& j, const char* key, const std::string& where) {
  MOHGE_CHECK(j.contains(key), "{}: missing key \"{}\"", where, key);
  const auto& v = j.at(key);
  MOHGE_CHECK(v.is_string(), "{}: \"{}\" must be a string, got {}", where, key, v.type_name());
  return v.get<std::string>();
}

double stderr_of(double p, uint64_t n) { return n < 2 ? 0.0 : std::sqrt(p * (1 - p) / (double)(n - 1)); }

// Index of the first maximum of f(j), j in [0, n).
template <class F>
size_t argmax(size_t n, F&& f) {
  size_t best = 0;
  double bv = f(0);
  for (size_t j = 1; j < n; j++) {
    double v = f(j);
    if (v > bv) bv = v, best = j;
  }
  return best;
}

}  // namespace

std::vector<McItem> load_mc_jsonl(const std::string& path) {
  std::vector<McItem> items;
  for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
    McItem it;
    it.where = where;
    it.context = get_string(j, "context", where);
    MOHGE_CHECK(j.contains("choices"), "{}: missing key \"choices\"", where);
    const auto& ch = j.at("choices");
    MOHGE_CHECK(ch.is_array(), "{}: \"choices\" must be an array of strings, got {}", where, ch.type_name());
    MOHGE_CHECK(ch.size() >= 2, "{}: \"choices\" has {} entries, need at least 2", where, ch.size());
    for (size_t i = 0; i < ch.size(); i++) {
      MOHGE_CHECK(ch[i].is_string(), "{}: choice {} must be a string, got {}", where, i, ch[i].type_name());
      it.choices.push_back(ch[i].get<std::string>());
      MOHGE_CHECK(!it.choices.back().empty(), "{}: choice {} is an empty string", where, i);
    }
    MOHGE_CHECK(j.contains("label"), "{}: missing key \"label\"", where);
    const auto& lb = j.at("label");
    int64_t label = -1;
    if (lb.is_number_integer()) {
      label = lb.get<int64_t>();
    } else if (lb.is_string()) {
      const std::string s = lb.get<std::string>();
      MOHGE_CHECK(!s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos,
                  "{}: \"label\" '{}' is not a choice index", where, s);
      label = std::stoll(s);
    } else {
      fail("{}: \"label\" must be an integer choice index, got {}", where, lb.type_name());
    }
    MOHGE_CHECK(label >= 0 && label < (int64_t)it.choices.size(),
                "{}: label {} out of range for {} choices", where, label, it.choices.size());
    it.label = (int)label;
    items.push_back(std::move(it));
  });
  MOHGE_CHECK(!items.empty(), "eval data file '{}' holds no items", path);
  return items;
}

std::vector<PairItem> load_pairs_jsonl(const std::string& path) {
  std::vector<PairItem> items;
  for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
    PairItem p;
    p.where = where;
    p.good = get_string(j, "sentence_good", where);
    p.bad = get_string(j, "sentence_bad", where);
    MOHGE_CHECK(!p.good.empty() && !p.bad.empty(), "{}: empty sentence", where);
    items.push_back(std::move(p));
  });
  MOHGE_CHECK(!items.empty(), "eval data file '{}' holds no items", path);
  return items;
}

void write_mc_jsonl(const std::string& path, const std::vector<McItem>& items,
                    const std::vector<nlohmann::json>& extra) {
  MOHGE_CHECK(extra.empty() || extra.size() == items.size(), "write_mc_jsonl: {} extras for {} items",
              extra.size(), items.size());
  std::string out;
  for (size_t i = 0; i < items.size(); i++) {
    nlohmann::json j = {{"context", items[i].context}, {"choices", items[i].choices}, {"label", items[i].label}};
    if (!extra.empty())
      for (auto& [k, v] : extra[i].items()) j[k] = v;
    out += j.dump() + "\n";
  }
  try {
    auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir);
  } catch (const std::filesystem::filesystem_error& e) {
    fail("cannot write '{}': {}", path, e.what());
  }
  write_file_atomic(path, out);
}

McMetrics mc_metrics(const std::vector<McItem>& items, const std::vector<std::vector<double>>& loglik) {
  MOHGE_CHECK(items.size() == loglik.size(), "mc_metrics: {} items but {} score lists", items.size(), loglik.size());
  McMetrics m;
  uint64_t hit = 0, hit_norm = 0;
  for (size_t i = 0; i < items.size(); i++) {
    const auto& it = items[i];
    const auto& ll = loglik[i];
    MOHGE_CHECK(ll.size() == it.choices.size() && !ll.empty(), "mc_metrics: item {} has {} choices but {} scores",
                i, it.choices.size(), ll.size());
    hit += argmax(ll.size(), [&](size_t j) { return ll[j]; }) == (size_t)it.label;
    hit_norm += argmax(ll.size(), [&](size_t j) {
                  return ll[j] / (double)std::max<size_t>(1, it.choices[j].size());
                }) == (size_t)it.label;
  }
  m.n = items.size();
  if (m.n) {
    m.acc = (double)hit / (double)m.n;
    m.acc_norm = (double)hit_norm / (double)m.n;
  }
  m.acc_stderr = stderr_of(m.acc, m.n);
  m.acc_norm_stderr = stderr_of(m.acc_norm, m.n);
  return m;
}

double pairs_accuracy(const std::vector<double>& good, const std::vector<double>& bad) {
  MOHGE_CHECK(good.size() == bad.size(), "pairs_accuracy: {} good but {} bad scores", good.size(), bad.size());
  if (good.empty()) return 0.0;
  uint64_t hit = 0;
  for (size_t i = 0; i < good.size(); i++) hit += good[i] > bad[i];
  return (double)hit / (double)good.size();
}

McEval evaluate_mc(Model& model, const Tokenizer& tok, const std::vector<McItem>& items,
                   const TaskOptions& opt) {
  std::vector<ScoreRequest> reqs;
  for (const auto& it : items) {
    for (const auto& c : it.choices) {
      try {
        EncodedPair p = encode_pair(tok, it.context, c, opt.start_token);
        reqs.push_back({std::move(p.context), std::move(p.continuation)});
      } catch (const Error& e) {
        fail("{}: {}", it.where, e.what());
      }
    }
  }
  McEval r;
  std::vector<ScoreResult> s = score_continuations(model, reqs, opt.batch_size, &r.stats);
  size_t k = 0;
  for (const auto& it : items) {
    r.loglik.emplace_back();
    for (size_t j = 0; j < it.choices.size(); j++) r.loglik.back().push_back(s[k++].logprob);
  }
  r.metrics = mc_metrics(items, r.loglik);
  return r;
}

PairsEval evaluate_pairs(Model& model, const Tokenizer& tok, const std::vector<PairItem>& items,
                         const TaskOptions& opt) {
  MOHGE_CHECK(opt.start_token >= 0, "minimal pairs: a start token is needed to score a sentence's first token");
  std::vector<ScoreRequest> reqs;
  for (const auto& it : items) {
    for (const std::string* s : {&it.good, &it.bad}) {
      ScoreRequest q;
      q.context = {opt.start_token};
      q.continuation = tok.encode(*s);  // a sentence on its own: encoded as at a document start
      MOHGE_CHECK(!q.continuation.empty(), "{}: sentence '{}' encodes to no tokens", it.where, *s);
      reqs.push_back(std::move(q));
    }
  }
  PairsEval r;
  std::vector<ScoreResult> s = score_continuations(model, reqs, opt.batch_size, &r.stats);
  for (size_t i = 0; i < items.size(); i++) {
    r.good.push_back(s[2 * i].logprob);
    r.bad.push_back(s[2 * i + 1].logprob);
  }
  r.n = items.size();
  r.acc = pairs_accuracy(r.good, r.bad);
  r.acc_stderr = stderr_of(r.acc, r.n);
  return r;
}

}  // namespace mohge
