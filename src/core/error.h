// defines: mohge::Error, mohge::fail, MOHGE_CHECK, mohge::shortened, mohge::single_line
// Every user-facing failure (bad config, data, checkpoint, flags) is a mohge::Error with a one-line
// message naming the problem; the CLI prints it and exits non-zero. Internal invariants use the
// same macro: a clear message beats an abort.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace mohge {

// `s` with every control character written as an escape (\n, \t, \r, \xNN), so a message that
// quotes user input (a parser's "saw 't<newline>'") stays one line on the terminal.
inline std::string single_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += (char)c;
  }
  return out;
}

// The message is made single_line here, once, so no call site can print a multi-line error.
struct Error : std::runtime_error {
  explicit Error(const std::string& message) : std::runtime_error(single_line(message)) {}
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// A value quoted in a message, as written but at most ~40 characters: "1000000… (302 characters)".
// A 300-digit number or a pasted file never floods the one error line.
inline std::string shortened(const std::string& s) {
  constexpr size_t kKeep = 32;
  if (s.size() <= kKeep + 8) return s;
  size_t cut = kKeep;
  while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;  // not inside a UTF-8 character
  return fmt::format("{}… ({} characters)", s.substr(0, cut), s.size());
}

}  // namespace mohge

#define MOHGE_CHECK(cond, ...)                    \
  do {                                            \
    if (!(cond)) ::mohge::fail(__VA_ARGS__);      \
  } while (0)
