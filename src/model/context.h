// defines: Context — the per-call state of running a Model: workspace, KV cache and mode
// A Model holds the configuration and the weights (and, for training, their gradients) and is only
// read by inference; what one caller's passes write lives in that caller's Context, so several
// Contexts use one Model. Train and eval contexts hold the activations of Model::forward (those of
// every layer in train mode, for backward; one layer's, reused, in eval); a decode context holds a
// KV cache of S sequences, each with its own length, for Model::decode.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/mode.h"

namespace mohge {

class Model;

class Context {
 public:
  // num_seqs, max_len: the KV cache of a decode context, num_seqs sequences of up to max_len
  // tokens (max_len ≤ the model's max_seq_len); unused otherwise. Errors: sizes out of range.
  Context(const Model& m, Mode mode, int num_seqs = 0, int max_len = 0);
  Mode mode() const { return mode_; }
  const Model& model() const { return model_; }

  // After Model::forward: logits [B·T, V] in backend memory (train: until backward overwrites them
  // with their gradient).
  // Host-readable: downloaded first where the backend's memory is not host memory.
  const float* logits() const { return logits_.host_read(logits_.size(), host_logits_); }
  // Train mode: the weighted auxiliary losses of the last forward (sum over layers), and each term.
  double aux_loss() const;
  std::map<std::string, double> aux_terms() const;
  // Parameters used per token by the last pass: the whole model, and its FFN/expert part.
  double active_params_per_token() const;
  double ffn_active_params_per_token() const;

  // The KV cache (decode mode).
  int num_seqs() const { return (int)len_.size(); }
  int max_len() const { return max_len_; }
  int seq_len(int s) const;  // tokens of sequence s in the cache
  void clear(int s);         // forgets sequence s: its next token is at position 0
  // After Model::decode: logits [V] following the last row of sequence s in that batch, valid
  // until the next pass (or call), host-readable (downloaded where the backend's memory is not
  // host memory). Error if s had no row in it.
  const float* seq_logits(int s) const;

 private:
  friend class Model;
  struct LayerActs {
    Buffer<float> x, ln1, rstd1, q, k, v, lse, atty, h, ln2, rstd2;
  };
  // A run of rows of one sequence at consecutive positions (decode).
  struct Run {
    int seq, pos0, n, row0;
  };
  // Workspace for N rows; attention_forward's log-sum-exps for B sequences of T when B·T = N.
  void ensure(int N, int B, int T);
  LayerActs& acts(int layer) { return acts_[mode_ == Mode::train ? layer : 0]; }
  void check_seq(int s) const;

  const Model& model_;
  Mode mode_;
  int B_ = 0, T_ = 0, N_ = 0, cap_N_ = 0;
  size_t cap_att_ = 0;
  std::vector<LayerActs> acts_;  // train: one per layer; eval / decode: one, reused by each layer
  Buffer<float> resid_, lnf_, rstdf_, logits_, lse_;  // resid_: the last block's output (train)
  Buffer<int32_t> inputs_, targets_;
  Buffer<double> loss_sum_;
  bool has_targets_ = false;
  int64_t step_ = 0;
  Buffer<float> dres_, dln_, dq_, dk_, dv_, datty_;  // backward scratch
  // KV cache: k, v [L, S, max_len, KVH·hd]; len_[s] positions of sequence s are filled
  int max_len_ = 0;
  std::vector<int> len_;
  Buffer<float> kcache_, vcache_;
  // the last decode batch: its runs, each row's (sequence, position), the last row of each run
  std::vector<Run> runs_;
  Buffer<int32_t> row_seq_, row_pos_, last_row_;
  Buffer<float> last_rows_;      // [runs, d]: final hidden state of each run's last row
  mutable std::vector<float> host_logits_;  // logits() / seq_logits() on a device backend
  std::vector<int> logits_row_;  // [S]: row of logits_ holding sequence s's logits, or -1
};

}  // namespace mohge
