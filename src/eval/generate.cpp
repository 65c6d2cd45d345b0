#include "eval/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/finite.h"

namespace mohge {

int32_t sample_token(const float* logits, int V, const SamplingOptions& o, std::mt19937_64& rng) {
  if (o.temperature <= 0) return (int32_t)(std::max_element(logits, logits + V) - logits);
  std::vector<int32_t> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  // candidates sorted by logit (descending, ties to the lower id), truncated by top-k
  int keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), by_logit);
  idx.resize(keep);
  std::vector<double> p(keep);
  double mx = logits[idx[0]], sum = 0.0;
  for (int i = 0; i < keep; i++) sum += (p[i] = std::exp((logits[idx[i]] - mx) / o.temperature));
  // nucleus: the smallest prefix whose probability reaches top_p
  if (o.top_p < 1.0) {
    double c = 0.0;
    int n = 0;
    while (n < keep && c < o.top_p * sum) c += p[n++];
    p.resize(n), idx.resize(n);
  }
  std::discrete_distribution<int> dist(p.begin(), p.end());
  return idx[dist(rng)];
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
