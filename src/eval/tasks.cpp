// defines: mc_metrics, pairs_accuracy, evaluate_mc, evaluate_pairs
#include "eval/tasks.h"

#include <cmath>

#include "core/error.h"

namespace mohge {

namespace {

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

McEval evaluate_mc(const Model& model, const Tokenizer& tok, const std::vector<McItem>& items,
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

PairsEval evaluate_pairs(const Model& model, const Tokenizer& tok, const std::vector<PairItem>& items,
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
