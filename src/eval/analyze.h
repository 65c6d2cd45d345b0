// defines: AnalyzeOptions, RoutingRecorder, wasserstein1, wasserstein_matrix, frequency_bucket_of,
//          token_frequencies, analyze_routing, training_series, write_analysis_csvs,
//          analysis_summary, analyze_checkpoint — `mohge analyze`: what a MoE checkpoint's router does
// (SPEC §6, HMoE figures 7 and 8), as analysis.json, one CSV per chart and a self-contained
// report.html (report_html.h).
//
// The checkpoint runs over `batches` sequential evaluation windows of the data (DataLoader eval
// mode); after each forward every MoE layer's routing (Ffn::routing()) is recorded per token:
// assignments and gate weight by (expert, token id). From these counts:
//  1. activated parameters per token (mean over tokens): per layer via routing_metrics (experts
//     only, and with shared expert + router), summed over layers, and the whole model
//     (Model::active_params_per_token, token-weighted mean over batches);
//  2. activation share of each expert (n_e / Σn) and group, per layer;
//  3. the same quantities over training, read from the run's log.jsonl step records;
//  4. frequency buckets (HMoE fig. 8): token ids are bucketed by their number of occurrences c in
//     the whole data shard, log2 bins: bucket k holds tokens with 2^k ≤ c < 2^(k+1). Per bucket and
//     layer: mean width of the experts used, gate-weighted (Σ w·W_e / Σ w over the bucket's
//     assignments; the headline number) and assignment-weighted (Σ W_e / #assignments), experts per
//     token, activated expert parameters per token, and the expert activation shares;
//  5. Wasserstein distances (HMoE fig. 7): each expert's token distribution is the distribution of
//     the tokens it receives (one unit per assignment, gates ignored), placed on the 1-D axis
//     x = log2(1 + r), r = the token's frequency rank in the shard (0 = most frequent; ties by id).
//     W1 between two experts is the 1-D earth mover's distance on that axis, i.e. the mean over
//     quantile levels of |log2 of the ratio of (1+rank)| — "how many doublings of frequency rank
//     apart" their tokens are. E×E per layer, and the mean over MoE layers;
//  6. FLOP-weighted device load (Σ n_e·W_e per device) under contiguous / pairing / all_size for D
//     devices (routing_metrics), per layer and summed over all MoE layers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "moe/router.h"

namespace mohge {

class Tokenizer;

struct AnalyzeOptions {
  std::string checkpoint;  // checkpoint dir or run dir (its newest checkpoint)
  std::string data;        // token shard, or a prepared data dir (its val.bin)
  std::string out_dir;     // "" → <checkpoint>/analysis
  std::string log;         // "" → <run>/log.jsonl when the checkpoint is <run>/checkpoints/step_*
  int batches = 16;        // evaluation batches (fewer if the shard is shorter)
  int batch_size = 4;
  int seq_len = 0;         // 0 → the model's max_seq_len
  int devices = 4;         // D for the placement loads
  int max_log_records = 300;  // training records kept (evenly subsampled) for the over-training charts
};

// 1-D Wasserstein-1 (earth mover's) distance between two distributions with weights p and q (≥ 0,
// normalised here) on the same support x (ascending): Σ_i |P_i − Q_i|·(x_{i+1} − x_i), P, Q the CDFs.
// NaN when p or q has no mass. Throws mohge::Error on size mismatch, negative weights or unsorted x.
double wasserstein1(const std::vector<double>& x, const std::vector<double>& p, const std::vector<double>& q);
// Support 0, 1, …, n−1.
double wasserstein1(const std::vector<double>& p, const std::vector<double>& q);
// All pairs: dists[k] are weights on x; result [K·K] row-major, symmetric, 0 on the diagonal of every
// distribution with mass, NaN in the rows/columns of empty ones.
std::vector<double> wasserstein_matrix(const std::vector<double>& x, const std::vector<std::vector<double>>& dists);

// log2 frequency bucket of a count c ≥ 1: ⌊log2 c⌋ (c in [2^k, 2^(k+1)) → k).
int frequency_bucket_of(double count);
// Occurrences of every token id in a shard ([V]; ids ≥ V are an error).
std::vector<double> token_frequencies(const std::string& shard_path, int V);

// Routing of every MoE layer over the analyzed tokens, by expert and token id.
class RoutingRecorder {
 public:
  struct Layer {
    int layer = 0;                  // model layer index
    double tokens = 0;              // T (tokens routed)
    std::vector<double> n_e, n_g;   // tokens_per_expert [E], tokens_per_group [Ng] (two-level)
    std::vector<uint32_t> count;    // [E·V] assignments of token id v to expert e (e·V + v)
    std::vector<double> gate;       // [E·V] Σ gate weight of those assignments
  };
  // Throws mohge::Error "no MoE layers to analyze" for a dense model.
  explicit RoutingRecorder(const ModelConfig& cfg);
  // After a forward through ctx on these N = B·T input tokens: records every MoE layer's routing().
  void add(const Context& ctx, const int32_t* tokens, int N);
  // The parts of add(), for synthetic routings: count the analyzed token ids (once per position), and
  // one layer's routing of r.T tokens (slot = index among the MoE layers).
  void add_tokens(const int32_t* tokens, int N);
  void add_layer(int slot, const Routing& r, const int32_t* tokens);

  const ModelConfig& cfg() const { return cfg_; }
  const std::vector<Layer>& layers() const { return layers_; }
  const std::vector<double>& occurrences() const { return occ_; }  // [V] analyzed positions per token id
  double tokens() const { return tokens_; }
  double model_active_params() const { return tokens_ > 0 ? active_sum_ / tokens_ : 0.0; }

 private:
  ModelConfig cfg_;
  std::vector<Layer> layers_;
  std::vector<double> occ_;
  double tokens_ = 0, active_sum_ = 0;
};

// Everything measured from the recorder, as JSON (see analysis.json in the report's definitions):
// model, activated_params, layers (routing_metrics + counts), device_load, frequency_buckets,
// token_examples, wasserstein. freq [V] = occurrences per token id defining buckets and ranks; tok
// (may be null) names tokens in the examples.
nlohmann::json analyze_routing(const RoutingRecorder& rec, const std::vector<double>& freq, int devices,
                               const Tokenizer* tok);

// Over-training series from a run's log.jsonl (step records with "routing"): steps, activated
// params, per-layer activated expert params, expert / group shares and max/mean device load, evenly
// subsampled to at most max_records. Unparseable lines are skipped and counted; a log whose layers do
// not match cfg gives {"note": "..."} only. Throws if the file cannot be read.
nlohmann::json training_series(const std::string& log_path, const ModelConfig& cfg, int max_records);

// One CSV per chart under dir; returns the file names written.
std::vector<std::string> write_analysis_csvs(const std::string& dir, const nlohmann::json& analysis);
// A few lines for stdout: activated params per token, max/mean device loads, frequency trend.
std::string analysis_summary(const nlohmann::json& analysis);

struct AnalyzeResult {
  std::string out_dir, report_html, analysis_json;
  std::vector<std::string> files;  // everything written (names relative to out_dir)
  nlohmann::json analysis;
  std::string summary;
};
// The whole command: load, run, measure, write report.html + analysis.json + CSVs. mohge::Error on
// a missing / bad checkpoint or data, or a dense model.
AnalyzeResult analyze_checkpoint(const AnalyzeOptions& opt);

}  // namespace mohge
