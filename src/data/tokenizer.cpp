// defines: Tokenizer (SentencePiece wrapper), tokenizer_train
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fileio.h"
#include "data/documents.h"

// Exported by libsentencepiece (0.1.9x and 0.2.x) but not declared in its public headers. We use it
// to silence the trainer's INFO log and to restore the previous level afterwards.
namespace sentencepiece::logging {
int GetMinLogLevel();
void SetMinLogLevel(int v);
}  // namespace sentencepiece::logging

namespace mohge {

static_assert(sizeof(int) == sizeof(int32_t), "SentencePiece ids are int");

Tokenizer Tokenizer::load(const std::string& path) {
  std::error_code ec;
  MOHGE_CHECK(std::filesystem::exists(path, ec), "tokenizer model '{}' not found", path);
  MOHGE_CHECK(!std::filesystem::is_directory(path, ec),
              "tokenizer model '{}' is a directory, expected a SentencePiece .model file", path);
  std::ifstream f(path, std::ios::binary);
  MOHGE_CHECK(f.is_open(), "cannot open tokenizer model '{}'", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  MOHGE_CHECK(!f.bad(), "read error in tokenizer model '{}'", path);
  return from_serialized(ss.str(), path);
}

Tokenizer Tokenizer::from_serialized(std::string_view bytes, const std::string& what) {
  MOHGE_CHECK(!bytes.empty(), "tokenizer model '{}' is empty", what);
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  auto st = sp->LoadFromSerializedProto(bytes);
  MOHGE_CHECK(st.ok(), "tokenizer model '{}' is not a valid SentencePiece model: {}", what,
              st.ToString());
  MOHGE_CHECK(sp->GetPieceSize() > 0, "tokenizer model '{}' has an empty vocabulary", what);
  Tokenizer t;
  t.sp_ = std::move(sp);
  t.source_ = what;
  return t;
}

// Where to end the piece of `text` that starts at `from`, at most kEncodePieceBytes long: after the
// last '\n' (exact for our tokenizers: "\n" is a piece no merge crosses), else before the last
// space that follows a non-space (pieces start at a space), else on a UTF-8 character boundary.
static size_t encode_piece_end(std::string_view text, size_t from) {
  const size_t limit = from + kEncodePieceBytes;
  if (limit >= text.size()) return text.size();
  const std::string_view window = text.substr(from, kEncodePieceBytes);
  if (size_t nl = window.rfind('\n'); nl != std::string_view::npos) return from + nl + 1;
  for (size_t sp = window.rfind(' '); sp != std::string_view::npos && sp > 0; sp = window.rfind(' ', sp - 1))
    if (window[sp - 1] != ' ') return from + sp;
  size_t end = limit;
  while (end > from + 1 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) end--;
  return end;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  std::vector<int> piece;
  for (size_t from = 0; from < text.size();) {
    const size_t end = encode_piece_end(text, from);
    auto st = sp_->Encode(text.substr(from, end - from), &piece);
    MOHGE_CHECK(st.ok(), "tokenizer encode failed: {}", st.ToString());
    if (ids.empty()) ids.swap(piece);
    else ids.insert(ids.end(), piece.begin(), piece.end());
    from = end;
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const int n = vocab_size();
  for (size_t i = 0; i < ids.size(); i++)
    MOHGE_CHECK(ids[i] >= 0 && ids[i] < n, "cannot decode token id {} at position {}: vocab size is {}",
                ids[i], i, n);
  std::string out;
  auto st = sp_->Decode(ids, &out);
  MOHGE_CHECK(st.ok(), "tokenizer decode failed: {}", st.ToString());
  return out;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  MOHGE_CHECK(id >= 0 && id < vocab_size(), "token id {} out of range (vocab size {})", id,
              vocab_size());
  return sp_->IdToPiece(id);
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }
int Tokenizer::unk_id() const { return sp_->unk_id(); }
int Tokenizer::pad_id() const { return sp_->pad_id(); }
std::string Tokenizer::serialized() const { return sp_->serialized_model_proto(); }

// ---------------------------------------------------------------------------------------------
// training

namespace {

constexpr size_t kMaxChunkBytes = 2048;  // SentencePiece silently drops sentences > 4192 bytes

// Feeds SentencePiece the training text as it will later be encoded: runs of consecutive lines of
// one document joined by '\n', up to 2 KiB each. Lines longer than that are cut before a space,
// which stays with the next piece (" word" encodes as it would mid-line).
class ChunkIterator : public sentencepiece::SentenceIterator {
 public:
  ChunkIterator(const std::vector<std::string>& files, InvalidUtf8 invalid_utf8)
      : files_(files), invalid_utf8_(invalid_utf8) {
    Next();
  }
  bool done() const override { return done_; }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

  void Next() override {
    value_.clear();
    while (true) {
      if (pos_ < line_.size()) {  // the rest of the current line
        std::string_view rest = std::string_view(line_).substr(pos_);
        size_t room = value_.empty() ? kMaxChunkBytes : kMaxChunkBytes - std::min(kMaxChunkBytes, value_.size() + 1);
        if (rest.size() <= room) {
          if (!value_.empty()) value_ += '\n';
          value_ += rest;
          pos_ = line_.size();
          continue;
        }
        if (!value_.empty()) return;  // emit what we have; the line starts the next chunk
        size_t end = rest.rfind(' ', kMaxChunkBytes);
        if (end == std::string_view::npos || end == 0) {  // no space: cut on a UTF-8 boundary
          end = kMaxChunkBytes;
          while (end > 1 && (static_cast<unsigned char>(rest[end]) & 0xC0) == 0x80) end--;
        }
        value_.assign(rest.substr(0, end));
        pos_ += end;
        return;
      }
      if (!read_line()) {
        done_ = value_.empty();
        return;
      }
      if (line_.find_first_not_of(" \t") == std::string::npos) {  // blank: document boundary
        line_.clear();
        if (!value_.empty()) return;
      }
    }
  }

 private:
  // next line of the input files into line_ (pos_ = 0); false when all files are exhausted
  bool read_line() {
    while (true) {
      if (in_ && std::getline(*in_, line_)) {
        utf8_validate(line_, invalid_utf8_, files_[file_ - 1], ++line_no_, offset_);
        offset_ += line_.size() + 1;
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        pos_ = 0;
        return true;
      }
      if (in_) MOHGE_CHECK(!in_->bad(), "read error in '{}'", files_[file_ - 1]);
      line_.clear();
      pos_ = 0;
      if (file_ == files_.size()) return false;
      in_ = std::make_unique<std::ifstream>(files_[file_], std::ios::binary);
      MOHGE_CHECK(in_->is_open(), "cannot open text file '{}'", files_[file_]);
      file_++;
      line_no_ = offset_ = 0;
      return true;  // an empty line: a new file is a document boundary
    }
  }

  const std::vector<std::string>& files_;
  InvalidUtf8 invalid_utf8_;
  size_t file_ = 0;
  uint64_t line_no_ = 0, offset_ = 0;  // in the current file, for error messages
  std::unique_ptr<std::ifstream> in_;
  std::string line_, value_;
  size_t pos_ = 0;
  bool done_ = false;
};

// restores SentencePiece's log level even when training throws
struct LogLevelGuard {
  int saved;
  explicit LogLevelGuard(int level) : saved(sentencepiece::logging::GetMinLogLevel()) {
    sentencepiece::logging::SetMinLogLevel(level);
  }
  ~LogLevelGuard() { sentencepiece::logging::SetMinLogLevel(saved); }
};

}  // namespace

static void tokenizer_train_impl(const std::vector<std::string>& input_files,
                                 const std::string& model_prefix, const TokenizerTrainOptions& opt) {
  MOHGE_CHECK(!input_files.empty(), "tokenizer train: no input files given");
  MOHGE_CHECK(!model_prefix.empty(), "tokenizer train: empty model prefix");
  MOHGE_CHECK(opt.vocab_size >= 261 && opt.vocab_size <= (1 << 24),
              "tokenizer train: vocab size {} out of range: byte fallback and unk/bos/eos alone "
              "take 260 ids",
              opt.vocab_size);
  for (const auto& f : input_files) {
    std::error_code ec;
    MOHGE_CHECK(std::filesystem::is_regular_file(f, ec), "tokenizer train: input file '{}' not found",
                f);
  }

  // LLaMA's recipe (BPE, byte fallback, split digits, identity normalization, whitespace kept, so
  // decode(encode(x)) == x for any UTF-8) with two changes for multi-line documents: "\n" is its
  // own piece that no merge crosses, and no dummy "▁" is prepended, so a word at the start of a
  // document or of a line is tokenized the same way in training and in use.
  std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"user_defined_symbols", "\n"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"input_sentence_size", std::to_string(opt.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", "4192"},
      {"num_threads", std::to_string(std::max(1, opt.num_threads))},
  };
  sentencepiece::SetRandomGeneratorSeed(opt.seed);
  ChunkIterator it(input_files, opt.invalid_utf8);
  MOHGE_CHECK(!it.done(), "tokenizer train: input files contain no text");
  std::string proto;
  sentencepiece::util::Status st;
  {
    LogLevelGuard quiet(opt.verbose ? 0 : 2);  // 0 = INFO, 2 = ERROR
    st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
  }
  MOHGE_CHECK(st.ok(), "tokenizer train failed: {}", st.ToString());

  // Validate by loading, then write .model and the human-readable .vocab (piece \t score).
  sentencepiece::SentencePieceProcessor sp;
  MOHGE_CHECK(sp.LoadFromSerializedProto(proto).ok(), "tokenizer train: produced model won't load");
  auto dir = std::filesystem::path(model_prefix).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  write_file_atomic(model_prefix + ".model", proto);
  std::string vocab;
  for (int i = 0; i < sp.GetPieceSize(); i++) {
    std::string piece = sp.IdToPiece(i);
    if (piece == "\n") piece = "\\n";  // keep the listing one piece per line
    vocab += fmt::format("{}\t{}\n", piece, sp.GetScore(i));
  }
  write_file_atomic(model_prefix + ".vocab", vocab);
}

void tokenizer_train(const std::vector<std::string>& input_files, const std::string& model_prefix,
                     const TokenizerTrainOptions& opt) {
  try {
    tokenizer_train_impl(input_files, model_prefix, opt);
  } catch (const std::filesystem::filesystem_error& e) {
    fail("tokenizer train '{}': {}", model_prefix, e.what());
  }
}

}  // namespace mohge
