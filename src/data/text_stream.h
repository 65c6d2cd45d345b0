// defines: TextStream — generated tokens to text, piece by piece, as it becomes final
// Decoding each new token on its own is wrong in two ways (issue 11): a character the tokenizer
// emits as several byte tokens (byte fallback) would come out as U+FFFD pieces, and a tokenizer
// that adds a dummy "▁" prefix (LLaMA-2's) drops the leading space of whatever text it decodes
// first, so "Hello" + "▁world" printed "Helloworld". TextStream holds back the tokens of an
// incomplete UTF-8 sequence until it completes, and decodes new tokens after a few tokens of what
// came before (the prompt's last ones at first), emitting only the difference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace mohge {

class TextStream {
 public:
  // context: the tokens the generated ones follow (the prompt); only its last few are used.
  TextStream(const Tokenizer& tok, const std::vector<int32_t>& context);
  // The text that token `id` completes: "" while it ends an incomplete UTF-8 sequence of byte
  // tokens, then that sequence's whole character. Concatenated, the pieces are the continuation's
  // text as it reads after the context.
  std::string push(int32_t id);
  // Text of held tokens (an incomplete sequence at the end of generation), as decode renders it.
  std::string flush();

 private:
  std::string emit();
  // bytes still missing for the byte tokens at the end of pending_ to form whole characters
  bool pending_incomplete() const;

  const Tokenizer& tok_;
  std::vector<int32_t> window_;   // the last tokens already emitted (or of the context)
  std::string window_text_;       // decode(window_)
  std::vector<int32_t> pending_;  // tokens not yet emitted
};

}  // namespace mohge
