#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/ops.h"

namespace mohge {

Model::Model(const ModelConfig& c) : cfg(c) {
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
  for (auto& a : acts_) {
    a.x.resize(N * d), a.ln1.resize(N * d), a.rstd1.resize(N);
    a.q.resize(N * qd), a.k.resize(N * kvd), a.v.resize(N * kvd), a.atty.resize(N * qd);
    a.att.resize((size_t)cap_B_ * cfg.num_heads * cap_T_ * cap_T_);
    a.h.resize(N * d), a.ln2.resize(N * d), a.rstd2.resize(N);
  }
  resid_.resize(N * d), lnf_.resize(N * d), rstdf_.resize(N), logits_.resize(N * V);
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
  inputs_.assign(inputs, inputs + N);
  if (targets) targets_.assign(targets, targets + N); else targets_.clear();

  embedding_forward(acts_[0].x.data(), inputs, params.data(embed_id_), N, d);
  for (int l = 0; l < c.num_layers; l++) {
    LayerActs& a = acts_[l];
    const LayerIds& w = layer_ids_[l];
    float* out = l + 1 < c.num_layers ? acts_[l + 1].x.data() : resid_.data();
    rmsnorm_forward(a.ln1.data(), a.rstd1.data(), a.x.data(), params.data(w.ln1), N, d, (float)c.rms_norm_eps);
    matmul_forward(a.q.data(), a.ln1.data(), params.data(w.q), N, d, qd, false, c.matmul_precision);
    matmul_forward(a.k.data(), a.ln1.data(), params.data(w.k), N, d, kvd, false, c.matmul_precision);
    matmul_forward(a.v.data(), a.ln1.data(), params.data(w.v), N, d, kvd, false, c.matmul_precision);
    rope_apply(a.q.data(), B, T, H, hd, (float)c.rope_theta, 0, false);
    rope_apply(a.k.data(), B, T, KVH, hd, (float)c.rope_theta, 0, false);
    attention_forward(a.atty.data(), a.att.data(), a.q.data(), a.k.data(), a.v.data(), B, T, H, KVH, hd);
    std::copy_n(a.x.data(), (size_t)N * d, a.h.data());
    matmul_forward(a.h.data(), a.atty.data(), params.data(w.o), N, qd, d, /*accumulate=*/true, c.matmul_precision);
    rmsnorm_forward(a.ln2.data(), a.rstd2.data(), a.h.data(), params.data(w.ln2), N, d, (float)c.rms_norm_eps);
    ffn_[l]->forward(out, a.ln2.data(), N, step);
    add_inplace(out, a.h.data(), (int64_t)N * d);
  }
  rmsnorm_forward(lnf_.data(), rstdf_.data(), resid_.data(), params.data(norm_id_), N, d, (float)c.rms_norm_eps);
  matmul_forward(logits_.data(), lnf_.data(), params.data(lm_id_), N, d, V, false, c.matmul_precision);
  if (!targets) return 0.0;
  lse_.resize(N);
  return crossentropy_forward(nullptr, lse_.data(), logits_.data(), targets, N, V) / N;
}

void Model::backward(float loss_scale) {
  const ModelConfig& c = cfg;
  MOHGE_CHECK(!targets_.empty(), "backward called without a forward with targets");
  const int B = B_, T = T_, N = B * T, d = c.hidden_size, V = c.vocab_size, H = c.num_heads;
  const int KVH = c.num_kv_heads, hd = c.head_dim(), qd = H * hd, kvd = KVH * hd;
  dres_.assign((size_t)N * d, 0.0f);
  dln_.resize((size_t)N * d), dq_.resize((size_t)N * qd), datty_.resize((size_t)N * qd);
  dk_.resize((size_t)N * kvd), dv_.resize((size_t)N * kvd);

  // logits -> dlogits in place: the [N,V] buffer is the largest activation
  crossentropy_backward(logits_.data(), logits_.data(), lse_.data(), targets_.data(), N, V, loss_scale / N);
  std::fill(dln_.begin(), dln_.end(), 0.0f);
  matmul_backward(dln_.data(), params.grad(lm_id_), logits_.data(), lnf_.data(), params.data(lm_id_), N, d, V, c.matmul_precision);
  rmsnorm_backward(dres_.data(), params.grad(norm_id_), dln_.data(), resid_.data(), params.data(norm_id_), rstdf_.data(), N, d);

  for (int l = c.num_layers - 1; l >= 0; l--) {
    LayerActs& a = acts_[l];
    const LayerIds& w = layer_ids_[l];
    // y = h + ffn(rmsnorm(h)): dres is dy, and becomes dh
    std::fill(dln_.begin(), dln_.end(), 0.0f);
    ffn_[l]->backward(dln_.data(), dres_.data(), a.ln2.data(), N, loss_scale);
    rmsnorm_backward(dres_.data(), params.grad(w.ln2), dln_.data(), a.h.data(), params.data(w.ln2), a.rstd2.data(), N, d);
    // h = x + o_proj(attn(rmsnorm(x))): dres becomes dx
    std::fill(datty_.begin(), datty_.end(), 0.0f);
    matmul_backward(datty_.data(), params.grad(w.o), dres_.data(), a.atty.data(), params.data(w.o), N, qd, d, c.matmul_precision);
    std::fill(dq_.begin(), dq_.end(), 0.0f);
    std::fill(dk_.begin(), dk_.end(), 0.0f);
    std::fill(dv_.begin(), dv_.end(), 0.0f);
    attention_backward(dq_.data(), dk_.data(), dv_.data(), datty_.data(), a.att.data(), a.q.data(), a.k.data(), a.v.data(), B, T, H, KVH, hd);
    rope_apply(dq_.data(), B, T, H, hd, (float)c.rope_theta, 0, true);
    rope_apply(dk_.data(), B, T, KVH, hd, (float)c.rope_theta, 0, true);
    std::fill(dln_.begin(), dln_.end(), 0.0f);
    matmul_backward(dln_.data(), params.grad(w.q), dq_.data(), a.ln1.data(), params.data(w.q), N, d, qd, c.matmul_precision);
    matmul_backward(dln_.data(), params.grad(w.k), dk_.data(), a.ln1.data(), params.data(w.k), N, d, kvd, c.matmul_precision);
    matmul_backward(dln_.data(), params.grad(w.v), dv_.data(), a.ln1.data(), params.data(w.v), N, d, kvd, c.matmul_precision);
    rmsnorm_backward(dres_.data(), params.grad(w.ln1), dln_.data(), a.x.data(), params.data(w.ln1), a.rstd1.data(), N, d);
  }
  embedding_backward(params.grad(embed_id_), dres_.data(), inputs_.data(), N, d);
  targets_.clear();  // logits now hold gradients; a second backward would be wrong
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
    rmsnorm_forward(ln.data(), &rstd, x.data(), params.data(w.ln1), 1, d, (float)c.rms_norm_eps);
    matmul_forward(q.data(), ln.data(), params.data(w.q), 1, d, qd);
    matmul_forward(K + (size_t)pos * kvd, ln.data(), params.data(w.k), 1, d, kvd);
    matmul_forward(Vc + (size_t)pos * kvd, ln.data(), params.data(w.v), 1, d, kvd);
    rope_apply(q.data(), 1, 1, H, hd, (float)c.rope_theta, pos, false);
    rope_apply(K + (size_t)pos * kvd, 1, 1, KVH, hd, (float)c.rope_theta, pos, false);
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
    matmul_forward(h.data(), atty.data(), params.data(w.o), 1, qd, d, true);
    rmsnorm_forward(ln.data(), &rstd, h.data(), params.data(w.ln2), 1, d, (float)c.rms_norm_eps);
    ffn_[l]->forward(y.data(), ln.data(), 1, step_);
    for (int i = 0; i < d; i++) x[i] = h[i] + y[i];
  }
  rmsnorm_forward(ln.data(), &rstd, x.data(), params.data(norm_id_), 1, d, (float)c.rms_norm_eps);
  matmul_forward(logits_out, ln.data(), params.data(lm_id_), 1, d, V);
  cache.pos++;
}

}  // namespace mohge
