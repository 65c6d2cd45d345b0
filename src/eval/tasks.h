// defines: McMetrics, mc_metrics, pairs_accuracy, TaskOptions, evaluate_mc, evaluate_pairs — the scored eval tasks
// Multiple choice (lm-evaluation-harness style), one JSON object per line:
//   {"context": "Question: ...\nAnswer:", "choices": [" yes", " no"], "label": 0}
// Each choice is scored as a continuation of the context (score.h: encode_pair) and
//   acc      = mean over items of [argmax_i loglik_i == label]
//   acc_norm = mean over items of [argmax_i loglik_i / bytes_i == label], bytes_i = UTF-8 length of
//              choice i as written (leading space included), so long choices are not penalised
//              for having more tokens.
// The first maximum wins a tie. Minimal pairs (BLiMP style), one JSON object per line:
//   {"sentence_good": "...", "sentence_bad": "..."}
// Each sentence is scored whole after the start token; acc = share of pairs whose good sentence has
// the strictly higher total log-likelihood. The files are read by task_files.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "eval/task_files.h"
#include "eval/score.h"
#include "model/model.h"

namespace mohge {

struct McMetrics {
  double acc = 0, acc_norm = 0;
  double acc_stderr = 0, acc_norm_stderr = 0;  // sqrt(p(1-p)/(n-1)), 0 when n < 2
  uint64_t n = 0;
};
// loglik[i][j]: log-likelihood of choice j of item i. Checks the shapes against the items.
McMetrics mc_metrics(const std::vector<McItem>& items, const std::vector<std::vector<double>>& loglik);
// Share of pairs with good[i] > bad[i].
double pairs_accuracy(const std::vector<double>& good, const std::vector<double>& bad);

struct TaskOptions {
  int batch_size = 8;
  int start_token = -1;  // prepended to every sequence (start_token_id); -1 = none
};

struct McEval {
  McMetrics metrics;
  std::vector<std::vector<double>> loglik;  // per item, per choice
  ScoreStats stats;
};
McEval evaluate_mc(const Model& model, const Tokenizer& tok, const std::vector<McItem>& items,
                   const TaskOptions& opt);

struct PairsEval {
  double acc = 0, acc_stderr = 0;
  uint64_t n = 0;
  std::vector<double> good, bad;  // log-likelihoods
  ScoreStats stats;
};
PairsEval evaluate_pairs(const Model& model, const Tokenizer& tok, const std::vector<PairItem>& items,
                         const TaskOptions& opt);

}  // namespace mohge
