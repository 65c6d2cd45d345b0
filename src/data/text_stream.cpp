#include "data/text_stream.h"

#include <algorithm>

namespace mohge {

// Tokens of context kept for decoding: enough for SentencePiece to see that a "▁" piece is not at
// the start of the text; the decode cost per token stays constant.
static constexpr size_t kWindow = 4;

TextStream::TextStream(const Tokenizer& tok, const std::vector<int32_t>& context) : tok_(tok) {
  window_.assign(context.end() - (ptrdiff_t)std::min(kWindow, context.size()), context.end());
  window_text_ = tok_.decode(window_);
}

// The byte of a byte-fallback piece "<0xAB>", or -1.
static int piece_byte(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

bool TextStream::pending_incomplete() const {
  // the bytes of the byte tokens at the end, in order
  std::string bytes;
  for (size_t i = pending_.size(); i-- > 0;) {
    int b = piece_byte(tok_.id_to_piece(pending_[i]));
    if (b < 0) break;
    bytes.insert(bytes.begin(), (char)b);
    if (bytes.size() == 4) break;  // no UTF-8 character is longer
  }
  // the last lead byte and how many bytes its character needs
  for (size_t k = 0; k < bytes.size(); k++) {
    const unsigned char c = (unsigned char)bytes[bytes.size() - 1 - k];
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    const size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return k + 1 < need;
  }
  return false;  // only continuation bytes: invalid, not incomplete; decode renders them
}

std::string TextStream::emit() {
  std::vector<int32_t> all = window_;
  all.insert(all.end(), pending_.begin(), pending_.end());
  const std::string text = tok_.decode(all);
  std::string out = text.compare(0, window_text_.size(), window_text_) == 0 ? text.substr(window_text_.size()) : text;
  window_.assign(all.end() - (ptrdiff_t)std::min(kWindow, all.size()), all.end());
  window_text_ = tok_.decode(window_);
  pending_.clear();
  return out;
}

std::string TextStream::push(int32_t id) {
  pending_.push_back(id);
  return pending_incomplete() ? std::string() : emit();
}

std::string TextStream::flush() { return pending_.empty() ? std::string() : emit(); }

}  // namespace mohge
