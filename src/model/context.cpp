#include "model/context.h"

#include <algorithm>

#include "core/error.h"
#include "model/model.h"

namespace mohge {

Context::Context(const Model& m, Mode mode, int num_seqs, int max_len) : model_(m), mode_(mode) {
  const ModelConfig& c = m.cfg;
  acts_.resize(mode == Mode::train ? c.num_layers : 1);
  if (mode != Mode::decode) return;
  MOHGE_CHECK(num_seqs >= 1, "a decode context needs at least one sequence (got {})", num_seqs);
  MOHGE_CHECK(max_len >= 1 && max_len <= c.max_seq_len, "KV cache length {} is outside [1, max_seq_len {}]",
              max_len, c.max_seq_len);
  max_len_ = max_len;
  len_.assign(num_seqs, 0);
  logits_row_.assign(num_seqs, -1);
  const size_t n = (size_t)c.num_layers * num_seqs * max_len * c.num_kv_heads * c.head_dim();
  kcache_.zeros(m.backend(), n), vcache_.zeros(m.backend(), n);
}

void Context::ensure(int N, int B, int T) {
  N_ = N, B_ = B, T_ = T;
  const ModelConfig& c = model_.cfg;
  const size_t att = mode_ == Mode::decode ? 0 : (size_t)B * c.num_heads * T;
  if (N <= cap_N_ && att <= cap_att_) return;
  cap_N_ = std::max(N, cap_N_), cap_att_ = std::max(att, cap_att_);
  const size_t n = cap_N_, d = c.hidden_size, V = c.vocab_size;
  const size_t qd = (size_t)c.num_heads * c.head_dim(), kvd = (size_t)c.num_kv_heads * c.head_dim();
  Backend& be = model_.backend();
  for (auto& a : acts_) {
    a.x.ensure(be, n * d), a.ln1.ensure(be, n * d), a.rstd1.ensure(be, n);
    a.q.ensure(be, n * qd), a.k.ensure(be, n * kvd), a.v.ensure(be, n * kvd), a.atty.ensure(be, n * qd);
    if (cap_att_) a.lse.ensure(be, cap_att_);
    a.h.ensure(be, n * d), a.ln2.ensure(be, n * d), a.rstd2.ensure(be, n);
  }
  if (mode_ == Mode::train) resid_.ensure(be, n * d);
  // decode: the head runs on the last row of each sequence only
  const size_t head_rows = mode_ == Mode::decode ? std::min(n, len_.size()) : n;
  lnf_.ensure(be, head_rows * d), rstdf_.ensure(be, head_rows), logits_.ensure(be, head_rows * V);
  inputs_.ensure(be, n), targets_.ensure(be, n), lse_.ensure(be, n);
}

double Context::aux_loss() const {
  double s = 0.0;
  for (int l = 0; l < model_.cfg.num_layers; l++) s += model_.ffn(l).aux_loss();
  return s;
}

std::map<std::string, double> Context::aux_terms() const {
  std::map<std::string, double> m;
  for (int l = 0; l < model_.cfg.num_layers; l++) model_.ffn(l).aux_terms(m);
  return m;
}

double Context::ffn_active_params_per_token() const {
  double s = 0.0;
  for (int l = 0; l < model_.cfg.num_layers; l++) s += model_.ffn(l).active_params_per_token();
  return s;
}

double Context::active_params_per_token() const {
  return model_.dense_params_per_token() + ffn_active_params_per_token();
}

void Context::check_seq(int s) const {
  MOHGE_CHECK(s >= 0 && s < num_seqs(), "sequence {} is outside the KV cache of {} sequences", s, num_seqs());
}

int Context::seq_len(int s) const {
  check_seq(s);
  return len_[s];
}

void Context::clear(int s) {
  check_seq(s);
  len_[s] = 0;
  logits_row_[s] = -1;
}

const float* Context::seq_logits(int s) const {
  check_seq(s);
  MOHGE_CHECK(logits_row_[s] >= 0, "sequence {} had no row in the last decode batch", s);
  const size_t V = model_.cfg.vocab_size, at = (size_t)logits_row_[s] * V;
  if (logits_.backend()->host_accessible()) return logits_.data() + at;
  host_logits_.resize(V);
  logits_.download(host_logits_.data(), V, at);
  return host_logits_.data();
}

}  // namespace mohge
