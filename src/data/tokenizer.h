// defines: Tokenizer (SentencePiece wrapper), tokenizer_train, TokenizerTrainOptions
// Any SentencePiece .model loads (LLaMA-2's tokenizer.model included). serialized() gives the model
// proto bytes so a checkpoint can embed the exact tokenizer it was trained with.
// encode/decode are const and safe to call from several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/utf8.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace mohge {

inline constexpr size_t kEncodePieceBytes = 1 << 16;

class Tokenizer {
 public:
  // Throws mohge::Error naming the file if it is missing or not a SentencePiece model.
  static Tokenizer load(const std::string& path);
  // From model proto bytes (e.g. stored in a checkpoint). `what` labels error messages.
  static Tokenizer from_serialized(std::string_view bytes, const std::string& what = "<bytes>");

  // No BOS/EOS added. Text longer than kEncodePieceBytes is encoded in pieces of at most that size
  // (cut after a newline, else before a word, else between characters) so time and memory stay
  // linear: SentencePiece needs ~150 bytes per input byte, and minutes, on one 50 MB line. Exact
  // for tokenizers from tokenizer_train when a cut falls on a newline; a tokenizer with a dummy "▁"
  // prefix (LLaMA's) adds one at each piece.
  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int32_t>& ids) const;  // throws on id out of range
  std::string id_to_piece(int32_t id) const;

  int vocab_size() const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  int unk_id() const;
  int pad_id() const;
  std::string serialized() const;  // model proto bytes
  const std::string& source() const { return source_; }

 private:
  // shared so Tokenizer is cheap to copy; the processor is never mutated after loading
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
  std::string source_;
};

struct TokenizerTrainOptions {
  int vocab_size = 8192;
  bool verbose = false;             // SentencePiece's own progress log
  int64_t max_sentences = 300000;  // <= 2 KiB chunks sampled (shuffled) for training
  int num_threads = 2;
  uint32_t seed = 1234;             // SentencePiece's sampling seed, for reproducible models
  InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse;  // refuse: error naming file, line and byte offset
};

// Trains a byte-fallback BPE (the LLaMA recipe: identity normalization, split digits, whitespace
// kept) on files in the document format, plus "\n" as a piece of its own and no dummy "▁" prefix
// (see tokenizer.cpp). Training sentences are runs of lines of one document up to 2 KiB.
// Ids: unk=0, bos=1, eos=2, "\n"=3, no pad. Writes <model_prefix>.model and .vocab atomically.
void tokenizer_train(const std::vector<std::string>& input_files, const std::string& model_prefix,
                     const TokenizerTrainOptions& opt = {});
inline void tokenizer_train(const std::vector<std::string>& input_files,
                            const std::string& model_prefix, int vocab_size, bool verbose = false,
                            InvalidUtf8 invalid_utf8 = InvalidUtf8::refuse) {
  TokenizerTrainOptions opt;
  opt.vocab_size = vocab_size;
  opt.verbose = verbose;
  opt.invalid_utf8 = invalid_utf8;
  tokenizer_train(input_files, model_prefix, opt);
}

}  // namespace mohge
