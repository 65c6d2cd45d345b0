#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mohge {

Model::Model(const ModelConfig& c, Backend& be) : cfg(c), params(be), be_(be) {
  cfg.validate();
  const int d = c.hidden_size, hd = c.head_dim(), qd = c.num_heads * hd, kvd = c.num_kv_heads * hd;
  const float std = (float)c.init_std, out_std = std / std::sqrt(2.0f * c.num_layers);
  embed_id_ = params.add("model.embed_tokens.weight", {c.vocab_size, d}, ParamInit::normal, std, false);
  for (int l = 0; l < c.num_layers; l++) {
    std::string p = "model.layers." + std::to_string(l);
    LayerIds ids;
    ids.ln1 = params.add(p + ".input_layernorm.weight", {d}, ParamInit::ones, 0, false);
    ids.q = params.add(p + ".self_attn.q_proj.weight", {qd, d}, ParamInit::normal, std, true);
    ids.k = params.add(p + ".self_attn.k_proj.weight", {kvd, d}, ParamInit::normal, std, true);
    ids.v = params.add(p + ".self_attn.v_proj.weight", {kvd, d}, ParamInit::normal, std, true);
    ids.o = params.add(p + ".self_attn.o_proj.weight", {d, qd}, ParamInit::normal, out_std, true);
    ids.ln2 = params.add(p + ".post_attention_layernorm.weight", {d}, ParamInit::ones, 0, false);
    layer_ids_.push_back(ids);
    ffn_.push_back(make_ffn(cfg, l, params, p + ".mlp"));
  }
  norm_id_ = params.add("model.norm.weight", {d}, ParamInit::ones, 0, false);
  lm_id_ = c.tie_word_embeddings
               ? embed_id_
               : params.add("lm_head.weight", {c.vocab_size, d}, ParamInit::normal, std, true);
  params.allocate();
}

Model::~Model() = default;

void Model::ensure_acts(int B, int T) {
  B_ = B, T_ = T;
  if (B <= cap_B_ && T <= cap_T_) return;
  cap_B_ = std::max(B, cap_B_), cap_T_ = std::max(T, cap_T_);
  const size_t N = (size_t)cap_B_ * cap_T_, d = cfg.hidden_size, V = cfg.vocab_size;
  const size_t qd = (size_t)cfg.num_heads * cfg.head_dim(), kvd = (size_t)cfg.num_kv_heads * cfg.head_dim();
  acts_.resize(cfg.num_layers);
  Backend& be = be_;
  for (auto& a : acts_) {
    a.x.ensure(be, N * d), a.ln1.ensure(be, N * d), a.rstd1.ensure(be, N);
    a.q.ensure(be, N * qd), a.k.ensure(be, N * kvd), a.v.ensure(be, N * kvd), a.atty.ensure(be, N * qd);
    a.lse.ensure(be, (size_t)cap_B_ * cfg.num_heads * cap_T_);
    a.h.ensure(be, N * d), a.ln2.ensure(be, N * d), a.rstd2.ensure(be, N);
  }
  resid_.ensure(be, N * d), lnf_.ensure(be, N * d), rstdf_.ensure(be, N), logits_.ensure(be, N * V);
  inputs_.ensure(be, N), targets_.ensure(be, N), lse_.ensure(be, N);
}

double Model::forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t step) {
  const ModelConfig& c = cfg;
  MOHGE_CHECK(B > 0 && T > 0, "forward: empty batch ({}x{})", B, T);
  MOHGE_CHECK(T <= c.max_seq_len, "sequence length {} exceeds model max_seq_len {}", T, c.max_seq_len);
  const int N = B * T, d = c.hidden_size, V = c.vocab_size, H = c.num_heads, KVH = c.num_kv_heads;
  const int hd = c.head_dim(), qd = H * hd, kvd = KVH * hd;
  for (int n = 0; n < N; n++) {
    MOHGE_CHECK(inputs[n] >= 0 && inputs[n] < V, "token id {} at position {} is outside the vocabulary [0, {})", inputs[n], n, V);
    MOHGE_CHECK(!targets || (targets[n] >= 0 && targets[n] < V), "target id {} at position {} is outside the vocabulary [0, {})", targets ? targets[n] : 0, n, V);
  }
  ensure_acts(B, T);
  step_ = step;
  inputs_.upload(inputs, N);
  has_targets_ = targets != nullptr;
  if (targets) targets_.upload(targets, N);

  be_.embedding_forward(acts_[0].x.data(), inputs_.data(), params.data(embed_id_), N, d);
  for (int l = 0; l < c.num_layers; l++) {
    LayerActs& a = acts_[l];
    const LayerIds& w = layer_ids_[l];
    float* out = l + 1 < c.num_layers ? acts_[l + 1].x.data() : resid_.data();
    be_.rmsnorm_forward(a.ln1.data(), a.rstd1.data(), a.x.data(), params.data(w.ln1), N, d, (float)c.rms_norm_eps);
    be_.matmul_forward(a.q.data(), a.ln1.data(), params.data(w.q), N, d, qd, false, c.matmul_precision);
    be_.matmul_forward(a.k.data(), a.ln1.data(), params.data(w.k), N, d, kvd, false, c.matmul_precision);
    be_.matmul_forward(a.v.data(), a.ln1.data(), params.data(w.v), N, d, kvd, false, c.matmul_precision);
    be_.rope_apply(a.q.data(), B, T, H, hd, (float)c.rope_theta, 0, false);
    be_.rope_apply(a.k.data(), B, T, KVH, hd, (float)c.rope_theta, 0, false);
    be_.attention_forward(a.atty.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, T, H, KVH, hd);
    be_.copy(a.h.data(), a.x.data(), (size_t)N * d * sizeof(float));
    be_.matmul_forward(a.h.data(), a.atty.data(), params.data(w.o), N, qd, d, /*accumulate=*/true, c.matmul_precision);
    be_.rmsnorm_forward(a.ln2.data(), a.rstd2.data(), a.h.data(), params.data(w.ln2), N, d, (float)c.rms_norm_eps);
    ffn_[l]->forward(out, a.ln2.data(), N, step);
    be_.add_inplace(out, a.h.data(), (int64_t)N * d);
  }
  be_.rmsnorm_forward(lnf_.data(), rstdf_.data(), resid_.data(), params.data(norm_id_), N, d, (float)c.rms_norm_eps);
  be_.matmul_forward(logits_.data(), lnf_.data(), params.data(lm_id_), N, d, V, false, c.matmul_precision);
  if (!targets) return 0.0;
  double* sum = loss_sum_.zeros(be_, 1);
  be_.crossentropy_forward(nullptr, lse_.data(), sum, logits_.data(), targets_.data(), N, V);
  return loss_sum_.to_host()[0] / N;
}

void Model::backward(float loss_scale) {
  const ModelConfig& c = cfg;
  MOHGE_CHECK(has_targets_, "backward called without a forward with targets");
  const int B = B_, T = T_, N = B * T, d = c.hidden_size, V = c.vocab_size, H = c.num_heads;
  const int KVH = c.num_kv_heads, hd = c.head_dim(), qd = H * hd, kvd = KVH * hd;
  Backend& be = be_;
  dres_.zeros(be, (size_t)N * d);
  dln_.ensure(be, (size_t)N * d), dq_.ensure(be, (size_t)N * qd), datty_.ensure(be, (size_t)N * qd);
  dk_.ensure(be, (size_t)N * kvd), dv_.ensure(be, (size_t)N * kvd);
  auto zero = [&](Buffer<float>& b) { be.zero(b.data(), b.size() * sizeof(float)); };

  // logits -> dlogits in place: the [N,V] buffer is the largest activation
  be_.crossentropy_backward(logits_.data(), logits_.data(), lse_.data(), targets_.data(), N, V, loss_scale / N);
  zero(dln_);
  be_.matmul_backward(dln_.data(), params.grad(lm_id_), logits_.data(), lnf_.data(), params.data(lm_id_), N, d, V, c.matmul_precision);
  be_.rmsnorm_backward(dres_.data(), params.grad(norm_id_), dln_.data(), resid_.data(), params.data(norm_id_), rstdf_.data(), N, d);

  for (int l = c.num_layers - 1; l >= 0; l--) {
    LayerActs& a = acts_[l];
    const LayerIds& w = layer_ids_[l];
    // y = h + ffn(rmsnorm(h)): dres is dy, and becomes dh
    zero(dln_);
    ffn_[l]->backward(dln_.data(), dres_.data(), a.ln2.data(), N, loss_scale);
    be_.rmsnorm_backward(dres_.data(), params.grad(w.ln2), dln_.data(), a.h.data(), params.data(w.ln2), a.rstd2.data(), N, d);
    // h = x + o_proj(attn(rmsnorm(x))): dres becomes dx
    zero(datty_);
    be_.matmul_backward(datty_.data(), params.grad(w.o), dres_.data(), a.atty.data(), params.data(w.o), N, qd, d, c.matmul_precision);
    zero(dq_);
    zero(dk_);
    zero(dv_);
    be_.attention_backward(dq_.data(), dk_.data(), dv_.data(), datty_.data(), a.atty.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, T, H, KVH, hd);
    be_.rope_apply(dq_.data(), B, T, H, hd, (float)c.rope_theta, 0, true);
    be_.rope_apply(dk_.data(), B, T, KVH, hd, (float)c.rope_theta, 0, true);
    zero(dln_);
    be_.matmul_backward(dln_.data(), params.grad(w.q), dq_.data(), a.ln1.data(), params.data(w.q), N, d, qd, c.matmul_precision);
    be_.matmul_backward(dln_.data(), params.grad(w.k), dk_.data(), a.ln1.data(), params.data(w.k), N, d, kvd, c.matmul_precision);
    be_.matmul_backward(dln_.data(), params.grad(w.v), dv_.data(), a.ln1.data(), params.data(w.v), N, d, kvd, c.matmul_precision);
    be_.rmsnorm_backward(dres_.data(), params.grad(w.ln1), dln_.data(), a.x.data(), params.data(w.ln1), a.rstd1.data(), N, d);
  }
  be.embedding_backward(params.grad(embed_id_), dres_.data(), inputs_.data(), N, d);
  has_targets_ = false;  // logits now hold gradients; a second backward would be wrong
}

double Model::aux_loss() const {
  double s = 0.0;
  for (auto& f : ffn_) s += f->aux_loss();
  return s;
}

std::map<std::string, double> Model::aux_terms() const {
  std::map<std::string, double> m;
  for (auto& f : ffn_) f->aux_terms(m);
  return m;
}

double Model::ffn_active_params_per_token() const {
  double s = 0.0;
  for (auto& f : ffn_) s += f->active_params_per_token();
  return s;
}

double Model::active_params_per_token() const {
  // Everything outside the FFNs is used by every token, except embedding rows (one per token)
  double total = 0.0, ffn_total = 0.0;
  for (auto& p : params.infos()) total += (double)p.numel;
  for (auto& p : params.infos())
    if (p.name.find(".mlp.") != std::string::npos) ffn_total += (double)p.numel;
  double embed = (double)cfg.vocab_size * cfg.hidden_size;
  return total - ffn_total - embed + cfg.hidden_size + ffn_active_params_per_token();
}

KVCache::KVCache(const ModelConfig& c, int max_T_) : max_T(max_T_) {
  size_t n = (size_t)c.num_layers * max_T * c.num_kv_heads * c.head_dim();
  k.assign(n, 0.0f), v.assign(n, 0.0f);
}

// One token: the attention and LM-head matmuls are matrix-vector products bound by reading the
// weights, so they stay fp32 (bf16 would convert every weight for one row); FFNs follow
// model.matmul_precision.
void Model::decode_step(KVCache& cache, int32_t token, float* logits_out) {
  const ModelConfig& c = cfg;
  const int d = c.hidden_size, V = c.vocab_size, H = c.num_heads, KVH = c.num_kv_heads;
  const int hd = c.head_dim(), qd = H * hd, kvd = KVH * hd, rep = H / KVH, pos = cache.pos;
  MOHGE_CHECK(token >= 0 && token < V, "token id {} is outside the vocabulary [0, {})", token, V);
  MOHGE_CHECK(pos < cache.max_T, "KV cache full ({} positions)", cache.max_T);
  std::vector<float> x(d), ln(d), h(d), q(qd), atty(qd), y(d), scores(pos + 1);
  float rstd;
  std::copy_n(params.data(embed_id_) + (size_t)token * d, d, x.data());
  for (int l = 0; l < c.num_layers; l++) {
    const LayerIds& w = layer_ids_[l];
    float* K = cache.k.data() + (size_t)l * cache.max_T * kvd;
    float* Vc = cache.v.data() + (size_t)l * cache.max_T * kvd;
    be_.rmsnorm_forward(ln.data(), &rstd, x.data(), params.data(w.ln1), 1, d, (float)c.rms_norm_eps);
    be_.matmul_forward(q.data(), ln.data(), params.data(w.q), 1, d, qd);
    be_.matmul_forward(K + (size_t)pos * kvd, ln.data(), params.data(w.k), 1, d, kvd);
    be_.matmul_forward(Vc + (size_t)pos * kvd, ln.data(), params.data(w.v), 1, d, kvd);
    be_.rope_apply(q.data(), 1, 1, H, hd, (float)c.rope_theta, pos, false);
    be_.rope_apply(K + (size_t)pos * kvd, 1, 1, KVH, hd, (float)c.rope_theta, pos, false);
    const float scale = 1.0f / std::sqrt((float)hd);
    for (int hh = 0; hh < H; hh++) {
      const float* qh = q.data() + hh * hd;
      const int kvh = hh / rep;
      float mx = -INFINITY;
      for (int t = 0; t <= pos; t++) {
        const float* kt = K + (size_t)t * kvd + kvh * hd;
        float s = 0.0f;
        for (int i = 0; i < hd; i++) s += qh[i] * kt[i];
        scores[t] = s * scale;
        mx = std::max(mx, scores[t]);
      }
      float sum = 0.0f;
      for (int t = 0; t <= pos; t++) sum += (scores[t] = std::exp(scores[t] - mx));
      float* o = atty.data() + hh * hd;
      std::fill(o, o + hd, 0.0f);
      for (int t = 0; t <= pos; t++) {
        const float* vt = Vc + (size_t)t * kvd + kvh * hd;
        for (int i = 0; i < hd; i++) o[i] += scores[t] / sum * vt[i];
      }
    }
    h = x;
    be_.matmul_forward(h.data(), atty.data(), params.data(w.o), 1, qd, d, true);
    be_.rmsnorm_forward(ln.data(), &rstd, h.data(), params.data(w.ln2), 1, d, (float)c.rms_norm_eps);
    ffn_[l]->forward(y.data(), ln.data(), 1, step_);
    for (int i = 0; i < d; i++) x[i] = h[i] + y[i];
  }
  be_.rmsnorm_forward(ln.data(), &rstd, x.data(), params.data(norm_id_), 1, d, (float)c.rms_norm_eps);
  be_.matmul_forward(logits_out, ln.data(), params.data(lm_id_), 1, d, V);
  cache.pos++;
}

}  // namespace mohge
