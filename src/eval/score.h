// defines: ScoreRequest, ScoreResult, ScoreStats, score_continuations, encode_pair, start_token_id
// Batched log-likelihood scoring, the core of every multiple-choice style eval task:
//   log P(continuation | context) = Σ_i log softmax(logits at the position before token i)[token i]
// Many (context + continuation) sequences are packed into one [B, T] batch: rows left-aligned,
// padded on the right to the longest row (T = its length - 1), one Model::forward per batch. The
// model is causal, so padding after a row's last real token cannot change that row's logits, and
// padded positions are never read. Rows are sorted by length first, so a batch holds rows of
// similar length and little padding is computed. Only the positions whose next token belongs to
// the continuation get a log-softmax.
// A row longer than the model's max_seq_len + 1 tokens keeps its LAST max_seq_len + 1 tokens: the
// context is truncated from the left (lm-evaluation-harness' rule). Should the continuation alone
// be that long, its first tokens have no position left to be predicted from and are not scored;
// ScoreResult::truncated says a row was cut.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "model/model.h"

namespace mohge {

struct ScoreRequest {
  std::vector<int32_t> context;       // must not be empty (start with the start token)
  std::vector<int32_t> continuation;  // the tokens scored; must not be empty
};

struct ScoreResult {
  double logprob = 0;   // Σ log P(continuation token | everything before it), nats
  int tokens = 0;       // continuation tokens scored (fewer than given only if truncated)
  bool greedy = false;  // every scored token was the argmax of its distribution
  bool truncated = false;
};

struct ScoreStats {
  uint64_t sequences = 0, batches = 0, truncated = 0;
  uint64_t scored_tokens = 0;  // continuation tokens
  uint64_t batch_tokens = 0;   // B·T positions run through the model, padding included
};

// Scores every request; results are in request order. batch_size >= 1 rows per forward.
std::vector<ScoreResult> score_continuations(const Model& model, const std::vector<ScoreRequest>& reqs,
                                             int batch_size, ScoreStats* stats = nullptr);

// Tokens of `context` and `continuation` as the model would see the text context + continuation,
// with the continuation's tokens separate so they can be scored on their own:
//  - whitespace at the end of the context moves to the front of the continuation (a separating
//    space belongs to the next word's "▁word" piece, never to the context);
//  - context = [start_token] + encode(context); continuation = encode(continuation), so the
//    boundary between the two is always a token boundary and every choice of a question is
//    scored after exactly the same context tokens;
//  - tokenizers that prepend a dummy "▁" to every input (add_dummy_prefix, LLaMA-2 style) would
//    add a space the text does not have: there the continuation is encoded after a "\n" (which
//    never merges with what follows) and the tokens of that "\n" are dropped.
// start_token < 0: no start token. Throws when the continuation encodes to no tokens.
struct EncodedPair {
  std::vector<int32_t> context, continuation;
};
EncodedPair encode_pair(const Tokenizer& tok, std::string_view context,
                        std::string_view continuation, int start_token);

// Tokens of text that follows other text (see encode_pair): no dummy-prefix "▁" is added.
std::vector<int32_t> encode_continuation(const Tokenizer& tok, std::string_view text);
// True when the tokenizer prepends "▁" to its input (SentencePiece add_dummy_prefix).
bool adds_dummy_prefix(const Tokenizer& tok);

// The token every scored sequence starts from. "eos" (default): mohge's data pipeline ends every
// document with EOS, so EOS is what the model has seen before a document starts; "bos": for models
// trained with BOS at document starts (LLaMA-style imports). Falls back to the other id when the
// tokenizer lacks the one asked for; throws when it has neither.
int start_token_id(const Tokenizer& tok, std::string_view which);

}  // namespace mohge
