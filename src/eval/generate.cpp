#include "eval/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/finite.h"
#include "kernels/vec_math.h"

namespace mohge {

int32_t sample_token(const float* logits, int V, const SamplingOptions& o, std::mt19937_64& rng) {
  if (o.temperature <= 0) return (int32_t)(std::max_element(logits, logits + V) - logits);
  // Every id's weight exp((logit − max) / T), vectorised: one pass over the vocabulary. A full
  // sort of the vocabulary per token (what a nucleus needs in the worst case) cost more than the
  // decode step itself in the server.
  thread_local std::vector<float> w;
  thread_local std::vector<int32_t> idx;
  w.resize(V);
  const float mx = *std::max_element(logits, logits + V);
  const float inv_t = (float)std::min(1.0 / o.temperature, 1e30);  // a tiny temperature: near greedy, no inf
#pragma omp simd
  for (int i = 0; i < V; i++) w[i] = exp_approx((logits[i] - mx) * inv_t);
  // draws from the candidates cand[0, n) (all ids when cand is null) with their weights
  auto draw = [&](const int32_t* cand, int n, double total) {
    double u = std::uniform_real_distribution<double>(0.0, total)(rng);
    int last = 0;  // the last candidate of nonzero weight: where rounding leaves a tiny u
    for (int j = 0; j < n; j++) {
      const int id = cand ? cand[j] : j;
      if (w[id] > 0) last = id;
      if ((u -= w[id]) < 0) return (int32_t)id;
    }
    return (int32_t)last;
  };
  const int keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  if (keep == V && o.top_p >= 1.0) {
    double total = 0.0;
    for (int i = 0; i < V; i++) total += w[i];
    return draw(nullptr, V, total);
  }
  // Candidates by logit (descending, ties to the lower id), truncated by top-k, then the nucleus:
  // the shortest prefix whose weight reaches top_p of the kept weight. Only that prefix is sorted,
  // found by sorting a growing head of the candidates (64, 256, ... ids).
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  idx.resize(V);
  std::iota(idx.begin(), idx.end(), 0);
  if (keep < V) std::nth_element(idx.begin(), idx.begin() + keep, idx.end(), by_logit);
  double kept = 0.0;
  for (int j = 0; j < keep; j++) kept += w[idx[j]];
  if (o.top_p >= 1.0) {
    std::sort(idx.begin(), idx.begin() + keep, by_logit);
    return draw(idx.data(), keep, kept);
  }
  for (int head = std::min(keep, 64);; head = std::min(keep, head * 4)) {
    std::partial_sort(idx.begin(), idx.begin() + head, idx.begin() + keep, by_logit);
    double c = 0.0;
    int n = 0;
    while (n < head && c < o.top_p * kept) c += w[idx[n++]];
    if (c >= o.top_p * kept || head == keep) return draw(idx.data(), n, c);
  }
}

std::vector<int32_t> generate(const Model& m, const std::vector<int32_t>& prompt, const SamplingOptions& o,
                              const std::function<void(int32_t)>& on_token) {
  MOHGE_CHECK(!prompt.empty(), "generate: empty prompt");
  MOHGE_CHECK(o.temperature >= 0, "--temperature must be >= 0");
  MOHGE_CHECK(o.top_p > 0 && o.top_p <= 1, "--top-p must be in (0, 1]");
  MOHGE_CHECK(o.top_k >= 0, "--top-k must be >= 0");
  const int V = m.cfg.vocab_size;
  const int Vs = o.vocab_limit > 0 ? std::min(o.vocab_limit, V) : V;  // ids a tokenizer can decode
  // 64-bit: prompt + --max-tokens 2147483647 must clamp to the context, not wrap negative
  const int max_T = (int)std::min<int64_t>(m.cfg.max_seq_len, (int64_t)prompt.size() + o.max_new_tokens);
  MOHGE_CHECK((int)prompt.size() < m.cfg.max_seq_len, "prompt of {} tokens does not fit max_seq_len {}",
              prompt.size(), m.cfg.max_seq_len);
  Context ctx(m, Mode::decode, 1, max_T);
  std::mt19937_64 rng(o.seed);
  const int32_t seq = 0;
  m.decode(ctx, prompt.data(), std::vector<int32_t>(prompt.size(), seq).data(), (int)prompt.size());
  std::vector<int32_t> out;
  while ((int)out.size() < o.max_new_tokens) {
    MOHGE_CHECK(first_non_finite(ctx.seq_logits(seq), V) == (size_t)V,
                "generate: non-finite logits at position {} (diverged or corrupt weights)", ctx.seq_len(seq));
    int32_t next = sample_token(ctx.seq_logits(seq), Vs, o, rng);
    if (next == o.eos_id) break;
    out.push_back(next);
    if (on_token) on_token(next);
    if (ctx.seq_len(seq) >= max_T) break;
    m.decode(ctx, &next, &seq, 1);
  }
  return out;
}

}  // namespace mohge
