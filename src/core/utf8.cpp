// defines: utf8_first_invalid, utf8_replace_invalid, utf8_validate
#include "core/utf8.h"

#include <cstring>

#include "core/error.h"

namespace mohge {

namespace {

// Length of the valid sequence starting at s[i], or 0 when the bytes there are not one; `bad` is
// then the length of the maximal invalid subpart (>= 1) to replace with one U+FFFD.
size_t sequence_length(std::string_view s, size_t i, size_t* bad) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) need = 2;
  else if (c >= 0xE0 && c <= 0xEF) need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return *bad = 1, 0;
  size_t k = 1;
  for (; k < need && i + k < s.size(); k++) {
    const unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
    if (b(k) < lo_k || b(k) > hi_k) break;
  }
  if (k == need) return need;
  return *bad = k, 0;
}

}  // namespace

size_t utf8_first_invalid(std::string_view s) {
  size_t i = 0, bad;
  while (i < s.size()) {
    // ASCII fast path: 8 bytes at a time
    while (i + 8 <= s.size()) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const size_t n = sequence_length(s, i, &bad);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string utf8_replace_invalid(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0, bad;
  while (i < s.size()) {
    const size_t n = sequence_length(s, i, &bad);
    if (n) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

void utf8_validate(std::string& text, InvalidUtf8 policy, const std::string& source, uint64_t line,
                   uint64_t line_offset) {
  const size_t at = utf8_first_invalid(text);
  if (at == std::string_view::npos) return;
  if (policy == InvalidUtf8::replace) {
    text = utf8_replace_invalid(text);
    return;
  }
  std::string shown;
  for (size_t k = at; k < text.size() && k < at + 4; k++)
    shown += fmt::format("{}0x{:02X}", shown.empty() ? "" : " ", static_cast<unsigned char>(text[k]));
  fail("{}:{}: invalid UTF-8 at byte offset {} ({}); convert the input to UTF-8 or pass --replace-invalid-utf8 "
       "to replace invalid bytes with U+FFFD",
       source, line, line_offset + at, shown);
}

}  // namespace mohge
