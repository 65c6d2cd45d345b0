#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mohge {

Model::Model(const ModelConfig& c, Backend& be, const ParallelGroups* groups, bool allocate)
    : cfg(c), params(be), be_(be) {
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
    ffn_.push_back(make_ffn(cfg, l, params, p + ".mlp", groups));
  }
  norm_id_ = params.add("model.norm.weight", {d}, ParamInit::ones, 0, false);
  lm_id_ = c.tie_word_embeddings
               ? embed_id_
               : params.add("lm_head.weight", {c.vocab_size, d}, ParamInit::normal, std, true);
  if (allocate) params.allocate();
}

Model::~Model() = default;

void Model::check_context(const Context& ctx) const {
  MOHGE_CHECK(&ctx.model() == this, "the context was made for another model");
}

double Model::forward(Context& ctx, const int32_t* inputs, const int32_t* targets, int B, int T,
                      int64_t step) const {
  const ModelConfig& c = cfg;
  check_context(ctx);
  MOHGE_CHECK(ctx.mode() != Mode::decode, "forward needs a train or eval context (decode contexts run Model::decode)");
  MOHGE_CHECK(B > 0 && T > 0, "forward: empty batch ({}x{})", B, T);
  MOHGE_CHECK(T <= c.max_seq_len, "sequence length {} exceeds model max_seq_len {}", T, c.max_seq_len);
  const int N = B * T, d = c.hidden_size, V = c.vocab_size;
  for (int n = 0; n < N; n++) {
    MOHGE_CHECK(inputs[n] >= 0 && inputs[n] < V, "token id {} at position {} is outside the vocabulary [0, {})", inputs[n], n, V);
    MOHGE_CHECK(!targets || (targets[n] >= 0 && targets[n] < V), "target id {} at position {} is outside the vocabulary [0, {})", targets ? targets[n] : 0, n, V);
  }
  ctx.ensure(N, B, T);
  ctx.step_ = step;
  ctx.inputs_.upload(inputs, N);
  ctx.has_targets_ = targets != nullptr;
  if (targets) ctx.targets_.upload(targets, N);

  const bool train = ctx.mode() == Mode::train;
  be_.embedding_forward(ctx.acts(0).x.data(), ctx.inputs_.data(), params.data(embed_id_), N, d);
  for (int l = 0; l < c.num_layers; l++) {
    // train: each layer's input stays for backward; eval: the stream is updated in place
    float* out = !train ? ctx.acts(l).x.data() : l + 1 < c.num_layers ? ctx.acts(l + 1).x.data() : ctx.resid_.data();
    block_forward(ctx, l, out, N);
  }
  head_forward(ctx, train ? ctx.resid_.data() : ctx.acts(0).x.data(), N);
  if (!targets) return 0.0;
  double* sum = ctx.loss_sum_.zeros(be_, 1);
  be_.crossentropy_forward(nullptr, ctx.lse_.data(), sum, ctx.logits_.data(), ctx.targets_.data(), N, V);
  return ctx.loss_sum_.to_host()[0] / N;
}

void Model::decode(Context& ctx, const int32_t* tokens, const int32_t* seqs, int N) const {
  const ModelConfig& c = cfg;
  check_context(ctx);
  MOHGE_CHECK(ctx.mode() == Mode::decode, "decode needs a decode context");
  MOHGE_CHECK(N > 0, "decode: empty batch");
  const int d = c.hidden_size, V = c.vocab_size, S = ctx.num_seqs();
  // the batch as runs of consecutive rows per sequence, checked before anything changes
  std::vector<Context::Run>& runs = ctx.runs_;
  runs.clear();
  std::vector<char> seen(S, 0);
  for (int i = 0; i < N; i++) {
    MOHGE_CHECK(tokens[i] >= 0 && tokens[i] < V, "token id {} is outside the vocabulary [0, {})", tokens[i], V);
    const int s = seqs[i];
    MOHGE_CHECK(s >= 0 && s < S, "sequence {} is outside the KV cache of {} sequences", s, S);
    if (i == 0 || s != seqs[i - 1]) {
      MOHGE_CHECK(!seen[s], "decode: the rows of sequence {} are not one consecutive run", s);
      seen[s] = 1;
      runs.push_back({s, ctx.len_[s], 0, i});
    }
    runs.back().n++;
  }
  for (const auto& r : runs)
    MOHGE_CHECK(r.pos0 + r.n <= ctx.max_len(), "sequence {}: KV cache full ({} positions)", r.seq, ctx.max_len());
  ctx.ensure(N, 0, 0);
  ctx.step_ = 0;
  // each row's (sequence, position) for attention_decode; the last row of each run for the head
  std::vector<int32_t> row_seq(N), row_pos(N), last_row(runs.size());
  for (size_t r = 0; r < runs.size(); r++) {
    for (int j = 0; j < runs[r].n; j++) row_seq[runs[r].row0 + j] = runs[r].seq, row_pos[runs[r].row0 + j] = runs[r].pos0 + j;
    last_row[r] = runs[r].row0 + runs[r].n - 1;
  }
  ctx.row_seq_.ensure(be_, N), ctx.row_pos_.ensure(be_, N), ctx.last_row_.ensure(be_, runs.size());
  ctx.row_seq_.upload(row_seq.data(), N), ctx.row_pos_.upload(row_pos.data(), N);
  ctx.last_row_.upload(last_row.data(), runs.size());
  ctx.inputs_.upload(tokens, N);

  // logits only where a sequence's next token is sampled: after its last row
  const int R = (int)runs.size();
  float* last = ctx.last_rows_.ensure(be_, (size_t)R * d);
  float* x = ctx.acts(0).x.data();
  be_.run_decode_step(N, [&] {
    be_.embedding_forward(x, ctx.inputs_.data(), params.data(embed_id_), N, d);
    for (int l = 0; l < c.num_layers; l++) block_forward(ctx, l, x, N);
    be_.gather_rows(last, x, ctx.last_row_.data(), R, d);
    head_forward(ctx, last, R);
  });
  std::fill(ctx.logits_row_.begin(), ctx.logits_row_.end(), -1);
  for (int r = 0; r < R; r++) {
    ctx.logits_row_[runs[r].seq] = r;
    ctx.len_[runs[r].seq] += runs[r].n;
  }
}

void Model::block_forward(Context& ctx, int l, float* out, int N) const {
  const ModelConfig& c = cfg;
  const int d = c.hidden_size, H = c.num_heads, KVH = c.num_kv_heads;
  const int hd = c.head_dim(), qd = H * hd, kvd = KVH * hd;
  const float eps = (float)c.rms_norm_eps, theta = (float)c.rope_theta;
  const Precision p = c.matmul_precision;
  Context::LayerActs& a = ctx.acts(l);
  const LayerIds& w = layer_ids_[l];
  be_.rmsnorm_forward(a.ln1.data(), a.rstd1.data(), a.x.data(), params.data(w.ln1), N, d, eps);
  const SharedInputProduct qkv[] = {{a.q.data(), params.data(w.q), qd}, {a.k.data(), params.data(w.k), kvd},
                                    {a.v.data(), params.data(w.v), kvd}};
  be_.matmul_forward_shared(a.ln1.data(), qkv, 3, N, d, p);
  if (ctx.mode() != Mode::decode) {
    const int B = ctx.B_, T = ctx.T_;
    be_.rope_apply(a.q.data(), B, T, H, hd, theta, 0, false);
    be_.rope_apply(a.k.data(), B, T, KVH, hd, theta, 0, false);
    be_.attention_forward(a.atty.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, T, H, KVH, hd, p);
  } else {
    // each run at its sequence's positions; its keys and values join that sequence's cache
    const size_t layer = (size_t)l * ctx.num_seqs() * ctx.max_len() * kvd;
    float *kc = ctx.kcache_.data() + layer, *vc = ctx.vcache_.data() + layer;
    for (const auto& r : ctx.runs_) {
      be_.rope_apply(a.q.data() + (size_t)r.row0 * qd, 1, r.n, H, hd, theta, r.pos0, false);
      be_.rope_apply(a.k.data() + (size_t)r.row0 * kvd, 1, r.n, KVH, hd, theta, r.pos0, false);
      const size_t at = ((size_t)r.seq * ctx.max_len() + r.pos0) * kvd;
      const size_t bytes = (size_t)r.n * kvd * sizeof(float);
      be_.copy(kc + at, a.k.data() + (size_t)r.row0 * kvd, bytes);
      be_.copy(vc + at, a.v.data() + (size_t)r.row0 * kvd, bytes);
    }
    be_.attention_decode(a.atty.data(), a.q.data(), kc, vc, ctx.row_seq_.data(), ctx.row_pos_.data(), N,
                     ctx.max_len(), H, KVH, hd);
  }
  be_.copy(a.h.data(), a.x.data(), (size_t)N * d * sizeof(float));
  be_.matmul_forward(a.h.data(), a.atty.data(), params.data(w.o), N, qd, d, /*accumulate=*/true, p);
  be_.rmsnorm_forward(a.ln2.data(), a.rstd2.data(), a.h.data(), params.data(w.ln2), N, d, eps);
  ffn_[l]->forward(out, a.ln2.data(), N, ctx.step_, ctx.mode());
  be_.add_inplace(out, a.h.data(), (int64_t)N * d);
}

void Model::head_forward(Context& ctx, const float* x, int R) const {
  const ModelConfig& c = cfg;
  be_.rmsnorm_forward(ctx.lnf_.data(), ctx.rstdf_.data(), x, params.data(norm_id_), R, c.hidden_size, (float)c.rms_norm_eps);
  be_.matmul_forward(ctx.logits_.data(), ctx.lnf_.data(), params.data(lm_id_), R, c.hidden_size, c.vocab_size, false,
                 c.matmul_precision);
}

void Model::backward(Context& ctx, float loss_scale) {
  const ModelConfig& c = cfg;
  check_context(ctx);
  MOHGE_CHECK(ctx.mode() == Mode::train, "backward needs a train context");
  MOHGE_CHECK(ctx.has_targets_, "backward called without a forward with targets");
  MOHGE_CHECK(params.has_grads(), "backward: the model was loaded for inference (no gradients)");
  const int B = ctx.B_, T = ctx.T_, N = B * T, d = c.hidden_size, V = c.vocab_size, H = c.num_heads;
  const int KVH = c.num_kv_heads, hd = c.head_dim(), qd = H * hd, kvd = KVH * hd;
  Backend& be = be_;
  auto& dres = ctx.dres_, &dln = ctx.dln_, &dq = ctx.dq_, &dk = ctx.dk_, &dv = ctx.dv_, &datty = ctx.datty_;
  dres.zeros(be, (size_t)N * d);
  dln.ensure(be, (size_t)N * d), dq.ensure(be, (size_t)N * qd), datty.ensure(be, (size_t)N * qd);
  dk.ensure(be, (size_t)N * kvd), dv.ensure(be, (size_t)N * kvd);
  auto zero = [&](Buffer<float>& b) { be.zero(b.data(), b.size() * sizeof(float)); };

  // logits -> dlogits in place: the [N,V] buffer is the largest activation
  float* logits = ctx.logits_.data();
  be_.crossentropy_backward(logits, logits, ctx.lse_.data(), ctx.targets_.data(), N, V, loss_scale / N);
  zero(dln);
  be_.matmul_backward(dln.data(), params.grad(lm_id_), logits, ctx.lnf_.data(), params.data(lm_id_), N, d, V, c.matmul_precision);
  be_.rmsnorm_backward(dres.data(), params.grad(norm_id_), dln.data(), ctx.resid_.data(), params.data(norm_id_), ctx.rstdf_.data(), N, d);

  for (int l = c.num_layers - 1; l >= 0; l--) {
    Context::LayerActs& a = ctx.acts(l);
    const LayerIds& w = layer_ids_[l];
    // y = h + ffn(rmsnorm(h)): dres is dy, and becomes dh
    zero(dln);
    ffn_[l]->backward(dln.data(), dres.data(), a.ln2.data(), N, loss_scale);
    be_.rmsnorm_backward(dres.data(), params.grad(w.ln2), dln.data(), a.h.data(), params.data(w.ln2), a.rstd2.data(), N, d);
    // h = x + o_proj(attn(rmsnorm(x))): dres becomes dx
    zero(datty);
    be_.matmul_backward(datty.data(), params.grad(w.o), dres.data(), a.atty.data(), params.data(w.o), N, qd, d, c.matmul_precision);
    zero(dq);
    zero(dk);
    zero(dv);
    be_.attention_backward(dq.data(), dk.data(), dv.data(), datty.data(), a.atty.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, T, H, KVH, hd, c.matmul_precision);
    be_.rope_apply(dq.data(), B, T, H, hd, (float)c.rope_theta, 0, true);
    be_.rope_apply(dk.data(), B, T, KVH, hd, (float)c.rope_theta, 0, true);
    zero(dln);
    be_.matmul_backward(dln.data(), params.grad(w.q), dq.data(), a.ln1.data(), params.data(w.q), N, d, qd, c.matmul_precision);
    be_.matmul_backward(dln.data(), params.grad(w.k), dk.data(), a.ln1.data(), params.data(w.k), N, d, kvd, c.matmul_precision);
    be_.matmul_backward(dln.data(), params.grad(w.v), dv.data(), a.ln1.data(), params.data(w.v), N, d, kvd, c.matmul_precision);
    be_.rmsnorm_backward(dres.data(), params.grad(w.ln1), dln.data(), a.x.data(), params.data(w.ln1), a.rstd1.data(), N, d);
  }
  be_.embedding_backward(params.grad(embed_id_), dres.data(), ctx.inputs_.data(), N, d);
  ctx.has_targets_ = false;  // logits now hold gradients; a second backward would be wrong
}

double Model::dense_params_per_token() const {
  // Everything outside the FFNs is used by every token, except embedding rows (one per token)
  double total = 0.0, ffn_total = 0.0;
  for (auto& p : params.infos()) total += (double)p.numel;
  for (auto& p : params.infos())
    if (p.name.find(".mlp.") != std::string::npos) ffn_total += (double)p.numel;
  double embed = (double)cfg.vocab_size * cfg.hidden_size;
  return total - ffn_total - embed + cfg.hidden_size;
}

}  // namespace mohge
