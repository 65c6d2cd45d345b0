// defines: score_continuations, encode_pair, encode_continuation, adds_dummy_prefix, start_token_id
#include "eval/score.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "core/error.h"
#include "core/finite.h"

namespace mohge {

namespace {

// One packed row: the kept tokens and the index of the first token to score.
struct Row {
  std::vector<int32_t> toks;
  size_t first = 0;
  bool truncated = false;
};

}  // namespace

std::vector<ScoreResult> score_continuations(const Model& model, const std::vector<ScoreRequest>& reqs,
                                             int batch_size, ScoreStats* stats) {
  MOHGE_CHECK(batch_size >= 1, "scoring: batch size {} must be >= 1", batch_size);
  const size_t max_len = (size_t)model.cfg.max_seq_len + 1;  // tokens in a row: T inputs + 1
  const int V = model.cfg.vocab_size;
  const size_t n = reqs.size();
  std::vector<Row> rows(n);
  for (size_t i = 0; i < n; i++) {
    const ScoreRequest& q = reqs[i];
    MOHGE_CHECK(!q.context.empty(), "scoring: request {} has an empty context (nothing predicts its first token)", i);
    MOHGE_CHECK(!q.continuation.empty(), "scoring: request {} has an empty continuation", i);
    for (const auto* part : {&q.context, &q.continuation})
      for (int32_t t : *part)
        MOHGE_CHECK(t >= 0 && t < V, "scoring: request {}: token id {} is outside the vocabulary [0, {})", i, t, V);
    Row& r = rows[i];
    r.toks.reserve(q.context.size() + q.continuation.size());
    r.toks.insert(r.toks.end(), q.context.begin(), q.context.end());
    r.toks.insert(r.toks.end(), q.continuation.begin(), q.continuation.end());
    r.first = q.context.size();
    if (r.toks.size() > max_len) {  // keep the last max_len tokens
      const size_t cut = r.toks.size() - max_len;
      r.toks.erase(r.toks.begin(), r.toks.begin() + (ptrdiff_t)cut);
      r.first = std::max<size_t>(1, r.first > cut ? r.first - cut : 0);
      r.truncated = true;
    }
  }
  // longest first: each batch holds rows of similar length
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rows[a].toks.size() > rows[b].toks.size(); });

  std::vector<ScoreResult> out(n);
  ScoreStats st;
  std::vector<int32_t> inputs;
  Context ctx(model, Mode::eval);
  for (size_t b0 = 0; b0 < n; b0 += (size_t)batch_size) {
    const int B = (int)std::min<size_t>((size_t)batch_size, n - b0);
    const int T = (int)rows[order[b0]].toks.size() - 1;  // the longest row of the batch
    inputs.assign((size_t)B * T, 0);  // padding: any valid id, never read back
    for (int b = 0; b < B; b++) {
      const Row& r = rows[order[b0 + b]];
      std::copy(r.toks.begin(), r.toks.end() - 1, inputs.begin() + (ptrdiff_t)b * T);
    }
    model.forward(ctx, inputs.data(), nullptr, B, T);
    const float* logits = ctx.logits();
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
      const size_t idx = order[b0 + b];
      const Row& r = rows[idx];
      ScoreResult& res = out[idx];
      res.greedy = true;
      res.truncated = r.truncated;
      double sum = 0;
      for (size_t i = r.first; i < r.toks.size(); i++) {
        // the logits at input position i-1 predict token i
        const float* z = logits + ((size_t)b * T + (i - 1)) * V;
        float mx = z[0];
        for (int v = 1; v < V; v++) mx = std::max(mx, z[v]);
        double se = 0;
        for (int v = 0; v < V; v++) se += std::exp((double)(z[v] - mx));
        const int32_t tok = r.toks[i];
        sum += (double)(z[tok] - mx) - std::log(se);
        if (z[tok] < mx) res.greedy = false;
      }
      res.logprob = sum;
      res.tokens = (int)(r.toks.size() - r.first);
    }
    st.batches++;
    st.batch_tokens += (uint64_t)B * T;
  }
  for (size_t i = 0; i < n; i++) {
    require_finite(out[i].logprob, fmt::format("the log-likelihood of scored sequence {}", i));  // never acc 1.0 from NaNs
    st.sequences++;
    st.truncated += out[i].truncated;
    st.scored_tokens += (uint64_t)out[i].tokens;
  }
  if (stats) {
    stats->sequences += st.sequences;
    stats->batches += st.batches;
    stats->truncated += st.truncated;
    stats->scored_tokens += st.scored_tokens;
    stats->batch_tokens += st.batch_tokens;
  }
  return out;
}

bool adds_dummy_prefix(const Tokenizer& tok) {
  std::vector<int32_t> ids = tok.encode("a");
  return !ids.empty() && tok.id_to_piece(ids[0]).starts_with("\xE2\x96\x81");  // "▁"
}

std::vector<int32_t> encode_continuation(const Tokenizer& tok, std::string_view text) {
  if (!adds_dummy_prefix(tok)) return tok.encode(text);
  // The dummy "▁" goes in front of the "\n", whose tokens are dropped: what remains is the
  // continuation tokenized as it would be in running text.
  const std::vector<int32_t> pre = tok.encode("\n");
  std::string prefixed(1, '\n');
  prefixed.append(text);
  std::vector<int32_t> all = tok.encode(prefixed);
  if (!pre.empty() && all.size() >= pre.size() && std::equal(pre.begin(), pre.end(), all.begin()))
    return std::vector<int32_t>(all.begin() + (ptrdiff_t)pre.size(), all.end());
  return tok.encode(text);  // "\n" merged with the text (unusual vocabulary): plain encoding
}

EncodedPair encode_pair(const Tokenizer& tok, std::string_view context,
                        std::string_view continuation, int start_token) {
  // trailing whitespace of the context belongs to the continuation's first piece
  const size_t end = context.find_last_not_of(" \t\r\n");
  const size_t keep = end == std::string_view::npos ? 0 : end + 1;
  std::string cont = std::string(context.substr(keep)) + std::string(continuation);
  EncodedPair p;
  if (start_token >= 0) p.context.push_back(start_token);
  if (keep > 0) {
    std::vector<int32_t> c = tok.encode(context.substr(0, keep));
    p.context.insert(p.context.end(), c.begin(), c.end());
  }
  MOHGE_CHECK(!p.context.empty(), "empty context and no start token: the first token cannot be scored");
  p.continuation = encode_continuation(tok, cont);
  MOHGE_CHECK(!p.continuation.empty(), "continuation '{}' encodes to no tokens", cont);
  return p;
}

int start_token_id(const Tokenizer& tok, std::string_view which) {
  MOHGE_CHECK(which == "eos" || which == "bos", "start token '{}': expected 'eos' or 'bos'", which);
  const int first = which == "eos" ? tok.eos_id() : tok.bos_id();
  const int second = which == "eos" ? tok.bos_id() : tok.eos_id();
  const int id = first >= 0 ? first : second;
  MOHGE_CHECK(id >= 0, "tokenizer '{}' has neither a BOS nor an EOS id to start sequences from", tok.source());
  return id;
}

}  // namespace mohge
