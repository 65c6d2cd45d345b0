// defines: SamplingOptions, sample_token, generate — text generation with a KV cache
// The prompt is prefilled as one batch (Model::decode), then each new token is one decode row.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "model/model.h"

namespace mohge {

struct SamplingOptions {
  int max_new_tokens = 128;
  double temperature = 0.8;  // 0 = greedy
  int top_k = 0;             // 0 = off
  double top_p = 1.0;        // nucleus; 1 = off
  uint64_t seed = 0;
  int32_t eos_id = -1;       // stop when generated (-1: never)
  int vocab_limit = 0;       // sample only ids < vocab_limit (the tokenizer's size when the model's
                             // vocabulary is padded beyond it); 0 = the model's whole vocabulary
};

// Picks the next token from logits[V]: greedy when temperature == 0, else a draw from
// softmax(logits / temperature) restricted to the top_k largest logits (ties: the lower id) and
// then to the nucleus, the fewest of those whose probability reaches top_p. O(V) without top-k
// and top-p; a nucleus sorts only its own candidates.
int32_t sample_token(const float* logits, int V, const SamplingOptions& o, std::mt19937_64& rng);

// Feeds the prompt, then samples up to max_new_tokens; on_token is called for each new token.
std::vector<int32_t> generate(const Model& m, const std::vector<int32_t>& prompt, const SamplingOptions& o,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace mohge
